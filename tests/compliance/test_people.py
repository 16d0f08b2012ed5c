"""Compliance audit entries name the person with the key that signed beside them
(migration 0012): the key is hashed alike in SQL and in Python, and only the person's
own key may stand beside them."""

from __future__ import annotations

from datetime import date

import pytest

from compliance import records
from compliance.kyc import KycRecord, parse_record
from ledger.errors import ConstraintViolation
from settlement.domain.values import Role
from settlement.services.keys import KeyService
from tests.support import ANNA, BORIS, Desk


def _kyc(party: str) -> KycRecord:
    return parse_record(
        party=party,
        legal_name=f"{party} Holdings Ltd",
        jurisdiction="GB",
        risk_rating="low",
        accredited=True,
        status="verified",
        expires_on=date(2099, 12, 31),
    )


def test_a_keyed_compliance_entry_hashes_alike_in_sql_and_python(desk: Desk) -> None:
    engine = desk.engine
    key = KeyService(engine.db, desk.clock).create(
        role=Role.COMPLIANCE_OFFICER, party=None, person=ANNA.id, created_by="test"
    )
    with engine.db.unit_of_work() as uow:
        records.save_kyc(
            uow,
            _kyc("keyed-party"),
            prior_version=None,
            actor=ANNA.id,
            at=desk.clock.now(),
            key_id=key.record.key_id,
        )
        uow.commit()
    (entry,) = engine.compliance.audit_entries(subject_kind="kyc", subject="keyed-party")
    assert (entry.actor, entry.key_id, entry.encoding_version) == (
        ANNA.id,
        key.record.key_id,
        2,
    )
    assert entry.computed_hash() == entry.entry_hash
    with engine.db.unit_of_work() as uow:
        in_sql = uow.execute(
            "SELECT compliance_audit_hash_of(c) FROM compliance_audit c WHERE seq = :seq",
            {"seq": entry.seq},
        ).scalar_one()
    assert in_sql == entry.entry_hash
    assert engine.compliance.verify_audit().ok
    # Anna's key beside Boris is refused: the key says whose act it was
    with engine.db.unit_of_work() as uow, pytest.raises(ConstraintViolation, match="not a key of"):
        records.save_kyc(
            uow,
            _kyc("forged-party"),
            prior_version=None,
            actor=BORIS.id,
            at=desk.clock.now(),
            key_id=key.record.key_id,
        )
