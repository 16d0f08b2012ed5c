"""Actors and helpers shared by the tests (importable as ``support``)."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import Engine, text

from settlement.domain import Actor, Role
from settlement.service import CommitmentService
from settlement.states import Event, State

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
        if event in (Event.REJECT, Event.REQUEST_INFO, Event.FORCE_CANCEL)
        else None
    )


def new_commitment(
    service: CommitmentService, state: State = State.DRAFT, amount: str = "1000.00"
) -> UUID:
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
