"""The hash chain: the documented encoding, and detection of tampering by the owner."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from uuid import UUID

import pytest
from sqlalchemy import Engine, create_engine, text

from ledger.audit import AuditEntry, canonical_json, payload_text
from settlement.bootstrap import Services
from settlement.domain.states import State
from tests.support import new_commitment


def test_encoding_matches_its_documentation() -> None:
    """Build the bytes of version 1 (entries before migration 0012) by hand from the
    docstring's rules and compare."""
    entry = AuditEntry(
        commitment_id=UUID("00000000-0000-4000-8000-000000000001"),
        seq=2,
        recorded_at=datetime(2026, 11, 22, 9, 30, 1, 5, tzinfo=UTC),
        actor="key-é",
        key_id=None,
        action="approve",
        from_state="PENDING_REVIEW",
        to_state="VERIFIED",
        commitment_version=3,
        idempotency_key=None,
        payload='{"reason":"ok"}',
        chain=None,
        tx_hash=None,
        ledger_index=None,
        ledger_hash=None,
        prev_hash="ab" * 32,
        entry_hash="",
        encoding_version=1,
    )
    by_hand = (
        b"settlement-audit/v1\n"
        b"36:00000000-0000-4000-8000-000000000001,"
        b"1:2,"
        b"27:2026-11-22T09:30:01.000005Z,"
        + "6:key-é,".encode()  # octets, not characters
        + b'7:approve,14:PENDING_REVIEW,8:VERIFIED,1:3,~,15:{"reason":"ok"},~,~,~,~,'
        + b"64:"
        + b"ab" * 32
        + b","
    )
    assert entry.canonical_bytes() == by_hand
    assert entry.computed_hash() == hashlib.sha256(by_hand).hexdigest()


def test_payloads_refuse_floats_and_sort_keys() -> None:
    assert payload_text({"b": 1, "a": "x"}) == '{"a":"x","b":1}'
    with pytest.raises(TypeError, match="floats"):
        payload_text({"amount": 1.5})
    assert canonical_json({"amount": __import__("decimal").Decimal("1.50")}) == '{"amount":"1.50"}'


def test_python_and_database_agree_on_every_hash(engine: Services) -> None:
    cid = new_commitment(engine.commitments, State.SETTLED)
    trail = engine.commitments.audit_trail(cid)
    assert [e.action for e in trail] == ["create", "submit", "approve", "lock", "settle"]
    for entry in trail:
        assert entry.computed_hash() == entry.entry_hash


def _tamper(owner_url: str, *statements: str) -> None:
    """As the owner, which may switch the append-only trigger off for a moment."""
    eng = create_engine(owner_url)
    with eng.begin() as c:
        c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        for statement in statements:
            c.execute(text(statement))
        c.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))
    eng.dispose()


@pytest.fixture
def chain(fresh_engine: Services) -> tuple[Services, UUID, UUID]:
    service = fresh_engine.commitments
    victim = new_commitment(service, State.SETTLED)
    bystander = new_commitment(service, State.VERIFIED)
    assert service.verify_audit().ok
    return fresh_engine, victim, bystander


def _first_break(engine: Services) -> tuple[UUID, int | None, str]:
    report = engine.commitments.verify_audit()
    assert not report.ok
    assert len(report.breaks) == 1, "only the tampered chain is broken"
    b = report.breaks[0]
    return b.commitment_id, b.seq, b.problem


def test_edited_entry_detected(chain: tuple[Services, UUID, UUID]) -> None:
    engine, victim, _ = chain
    _tamper(
        engine.urls.owner,
        f"UPDATE audit_log SET actor = 'key-mallory' WHERE commitment_id = '{victim}' AND seq = 3",
    )
    assert _first_break(engine) == (victim, 3, "entry_hash does not match its contents (edited)")


def test_edited_payload_with_recomputed_hash_breaks_the_next_link(
    chain: tuple[Services, UUID, UUID],
) -> None:
    engine, victim, _ = chain
    # a careful forger recomputes the edited entry's own hash; the next entry still
    # points at the old one
    _tamper(
        engine.urls.owner,
        'UPDATE audit_log SET payload = \'{"reason":"forged"}\''
        f" WHERE commitment_id = '{victim}' AND seq = 2",
        "UPDATE audit_log SET entry_hash = audit_entry_hash_of(audit_log)"
        f" WHERE commitment_id = '{victim}' AND seq = 2",
    )
    assert _first_break(engine) == (victim, 3, "prev_hash does not match the previous entry's hash")


def test_deleted_entry_detected(chain: tuple[Services, UUID, UUID]) -> None:
    engine, victim, _ = chain
    _tamper(
        engine.urls.owner, f"DELETE FROM audit_log WHERE commitment_id = '{victim}' AND seq = 2"
    )
    commitment, seq, problem = _first_break(engine)
    assert (commitment, seq) == (victim, 3)
    assert "expected seq 2" in problem


def test_deleted_last_entry_detected(chain: tuple[Services, UUID, UUID]) -> None:
    engine, victim, _ = chain
    _tamper(
        engine.urls.owner, f"DELETE FROM audit_log WHERE commitment_id = '{victim}' AND seq = 5"
    )
    commitment, seq, problem = _first_break(engine)
    assert (commitment, seq) == (victim, None)
    assert "at version 5 (SETTLED) but its last audited change is version 4 (ESCROWED)" in problem


def test_reordered_entries_detected(chain: tuple[Services, UUID, UUID]) -> None:
    engine, victim, _ = chain
    where = f"commitment_id = '{victim}'"
    _tamper(
        engine.urls.owner,
        f"UPDATE audit_log SET seq = -2 WHERE {where} AND seq = 2",
        f"UPDATE audit_log SET seq = 2 WHERE {where} AND seq = 3",
        f"UPDATE audit_log SET seq = 3 WHERE {where} AND seq = -2",
    )
    commitment, seq, _ = _first_break(engine)
    assert (commitment, seq) == (victim, 2)


def test_state_changed_behind_the_audit_log_detected(
    chain: tuple[Services, UUID, UUID], owner_engine: Engine
) -> None:
    engine, _, bystander = chain
    eng = create_engine(engine.urls.owner)
    with eng.begin() as c:
        c.execute(text("ALTER TABLE commitments DISABLE TRIGGER ALL"))
        c.execute(text(f"UPDATE commitments SET state = 'ESCROWED' WHERE id = '{bystander}'"))
        c.execute(text("ALTER TABLE commitments ENABLE TRIGGER ALL"))
    eng.dispose()
    commitment, seq, problem = _first_break(engine)
    assert (commitment, seq) == (bystander, None)
    assert "last audited change is version 3 (VERIFIED)" in problem
