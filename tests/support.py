"""Actors and helpers shared by the tests (importable as ``support``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, text

from settlement import bootstrap
from settlement.clock import ManualClock, SystemClock
from settlement.domain.states import Event, State
from settlement.domain.values import Actor, Role
from settlement.services.commitments import CommitmentService
from settlement.services.compliance import ComplianceService

SAMPLES = Path(__file__).resolve().parent.parent / "config" / "sanctions"

ALLOCATOR = Actor("key-alloc-1", Role.ALLOCATOR, party="party-northwind")
OTHER_ALLOCATOR = Actor("key-alloc-2", Role.ALLOCATOR, party="party-southbank")
OFFICER = Actor("key-officer-1", Role.COMPLIANCE_OFFICER)
OFFICER_2 = Actor("key-officer-2", Role.COMPLIANCE_OFFICER)
ADMIN = Actor("key-admin-1", Role.ADMIN)
AUDITOR = Actor("key-auditor-1", Role.AUDITOR)
SYSTEM = Actor("system", Role.SYSTEM)
ALL_ACTORS = (ALLOCATOR, OTHER_ALLOCATOR, OFFICER, ADMIN, AUDITOR, SYSTEM)

#: the actor entitled to cause each event on a commitment owned by ALLOCATOR
ENTITLED = {
    Event.SUBMIT: ALLOCATOR,
    Event.WITHDRAW: ALLOCATOR,
    Event.APPROVE: OFFICER,
    Event.REJECT: OFFICER,
    Event.REQUEST_INFO: OFFICER,
    Event.LOCK: SYSTEM,
    Event.SETTLE: SYSTEM,
    Event.RELEASE: SYSTEM,
    Event.FORCE_CANCEL: ADMIN,
    Event.EXPIRE: SYSTEM,
}

#: a legal path of events from creation to each state
PATH_TO = {
    State.DRAFT: (),
    State.PENDING_REVIEW: (Event.SUBMIT,),
    State.VERIFIED: (Event.SUBMIT, Event.APPROVE),
    State.ESCROWED: (Event.SUBMIT, Event.APPROVE, Event.LOCK),
    State.SETTLED: (Event.SUBMIT, Event.APPROVE, Event.LOCK, Event.SETTLE),
    State.CANCELLED: (Event.WITHDRAW,),
}


def reason_for(event: Event) -> str | None:
    return (
        f"test reason for {event}"
        if event in (Event.REJECT, Event.REQUEST_INFO, Event.FORCE_CANCEL, Event.EXPIRE)
        else None
    )


_seeded: set[str] = set()


def seed_compliance(service: CommitmentService) -> None:
    """Give a database what submit and approve need since screening and the officer
    registry exist (once per database): verified KYC records for the test allocators'
    parties, the test officers, and the invented sample sanctions lists."""
    db = service.database
    if db.url in _seeded:
        return
    compliance = ComplianceService(db, SystemClock())
    registered = {o.officer_id for o in compliance.officers()}
    for officer in (OFFICER, OFFICER_2):
        if officer.id not in registered:
            compliance.register_officer(ADMIN, officer.id, display_name=officer.id)
    known = {r.party for r in compliance.kyc_records()}
    for party, name in (
        ("party-northwind", "Northwind Test Capital"),
        ("party-southbank", "Southbank Test Partners"),
    ):
        if party not in known:
            compliance.create_kyc(
                OFFICER,
                party=party,
                legal_name=name,
                jurisdiction="GB",
                risk_rating="low",
                accredited=True,
                status="verified",
                expires_on=date(2099, 12, 31),
            )
    compliance.load_sanctions(
        ADMIN, SAMPLES / "sample_sdn.csv", aliases_file=SAMPLES / "sample_alt.csv"
    )
    compliance.load_sanctions(ADMIN, SAMPLES / "sample_targets.simple.csv")
    _seeded.add(db.url)


def new_commitment(
    service: CommitmentService, state: State = State.DRAFT, amount: str = "1000.00"
) -> UUID:
    seed_compliance(service)
    created = service.create(ALLOCATOR, deal_ref="DEAL-T", amount=amount, currency="USD")
    for event in PATH_TO[state]:
        service.apply(ENTITLED[event], created.commitment_id, event, reason=reason_for(event))
    assert service.state_of(created.commitment_id) is state
    return created.commitment_id


def snapshot(engine: Engine, commitment_id: UUID) -> tuple[object, ...]:
    """Everything the database holds about one commitment, to prove nothing changed."""
    with engine.connect() as c:
        row = c.execute(
            text("SELECT * FROM commitments WHERE id = :id"), {"id": commitment_id}
        ).one()
        history = c.execute(
            text("SELECT count(*) FROM state_transitions WHERE commitment_id = :id"),
            {"id": commitment_id},
        ).scalar_one()
        entries = c.execute(
            text(
                "SELECT count(*), string_agg(entry_hash, ',' ORDER BY seq) FROM audit_log"
                " WHERE commitment_id = :id"
            ),
            {"id": commitment_id},
        ).one()
    return (tuple(row), history, tuple(entries))


# -- the compliance tests' review desk ------------------------------------------------

C_ALLOCATOR = Actor("key-alloc-c", Role.ALLOCATOR, party="northwind")
ANNA = Actor("key-officer-anna", Role.COMPLIANCE_OFFICER)
BORIS = Actor("key-officer-boris", Role.COMPLIANCE_OFFICER)
SENIOR = Actor("key-officer-senior", Role.COMPLIANCE_OFFICER)


@dataclass
class Desk:
    engine: bootstrap.Services
    clock: ManualClock

    @property
    def commitments(self) -> CommitmentService:
        return self.engine.commitments

    @property
    def compliance(self) -> ComplianceService:
        return self.engine.compliance

    def party(self, party: str, legal_name: str, **overrides: Any) -> None:
        fields: dict[str, Any] = {
            "party": party,
            "legal_name": legal_name,
            "jurisdiction": "GB",
            "risk_rating": "low",
            "accredited": True,
            "status": "verified",
            "expires_on": date(2027, 12, 31),
            **overrides,
        }
        self.compliance.create_kyc(ANNA, **fields)

    def submitted(
        self, amount: str = "1000", counterparty: str | None = "meridian", currency: str = "USD"
    ) -> Any:
        created = self.commitments.create(
            C_ALLOCATOR,
            deal_ref="DEAL-C",
            amount=amount,
            currency=currency,
            counterparty=counterparty,
        )
        self.commitments.submit(C_ALLOCATOR, created.commitment_id, expected_version=1)
        return created.commitment_id


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: Any) -> None:
    """Interrupt a child like Ctrl-C would, kill it if it lingers, close its pipe."""
    import signal
    import subprocess

    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()
