"""Stale commitments expire: the system cancels them, with a reason and an audit entry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from settlement.bootstrap import Services
from settlement.clock import ManualClock
from settlement.domain import errors
from settlement.domain.states import State
from tests.support import ALLOCATOR, ENTITLED, OFFICER, PATH_TO, reason_for, seed_compliance


def _expiring(engine: Services, clock: ManualClock, state: State, hours: int = 24) -> object:
    seed_compliance(engine.commitments)
    created = engine.commitments.create(
        ALLOCATOR,
        deal_ref="EXPIRING",
        amount="10",
        currency="USD",
        expires_at=clock.now() + timedelta(hours=hours),
    )
    for event in PATH_TO[state]:
        engine.commitments.apply(
            ENTITLED[event], created.commitment_id, event, reason=reason_for(event)
        )
    return created.commitment_id


@pytest.mark.parametrize("state", [State.DRAFT, State.PENDING_REVIEW, State.VERIFIED])
def test_past_expiry_the_system_cancels(
    fresh_engine: Services, clock: ManualClock, state: State
) -> None:
    cid = _expiring(fresh_engine, clock, state)
    assert fresh_engine.commitments.expire_due() == [], "not yet"
    clock.advance(timedelta(hours=24))
    expired = fresh_engine.commitments.expire_due()
    assert [(e.commitment_id, e.event, e.to_state) for e in expired] == [
        (cid, "expire", "CANCELLED")
    ]
    last = fresh_engine.commitments.history(cid)[-1]  # type: ignore[arg-type]
    assert (last.event, last.actor) == ("expire", "system")
    assert last.reason is not None and last.reason.startswith("expired at ")
    entry = fresh_engine.commitments.audit_trail(cid)[-1]  # type: ignore[arg-type]
    assert (entry.action, entry.actor, entry.to_state) == ("expire", "system", "CANCELLED")
    assert fresh_engine.commitments.expire_due() == [], "idempotent"
    assert fresh_engine.commitments.verify_audit().ok


def test_terminal_and_undated_commitments_never_expire(
    fresh_engine: Services, clock: ManualClock
) -> None:
    seed_compliance(fresh_engine.commitments)
    undated = fresh_engine.commitments.create(ALLOCATOR, deal_ref="U", amount="1", currency="USD")
    withdrawn = _expiring(fresh_engine, clock, State.DRAFT, hours=1)
    fresh_engine.commitments.withdraw(ALLOCATOR, withdrawn)  # type: ignore[arg-type]
    clock.advance(timedelta(days=30))
    assert fresh_engine.commitments.expire_due() == []
    assert fresh_engine.commitments.state_of(undated.commitment_id) is State.DRAFT


def test_only_the_system_expires(fresh_engine: Services, clock: ManualClock) -> None:
    cid = _expiring(fresh_engine, clock, State.DRAFT)
    clock.advance(timedelta(hours=25))
    for actor in (ALLOCATOR, OFFICER):
        with pytest.raises(errors.NotAuthorised):
            fresh_engine.commitments.apply(actor, cid, "expire", reason="x")  # type: ignore[arg-type]


def test_the_worker_runs_the_expiry_sweep(fresh_engine: Services, clock: ManualClock) -> None:
    from settlement.dvp.worker import Worker

    cid = _expiring(fresh_engine, clock, State.PENDING_REVIEW)
    clock.advance(timedelta(hours=25))
    worker = Worker(
        fresh_engine.db,
        coordinator=None,  # type: ignore[arg-type]
        clock=clock,
        expire=fresh_engine.commitments.expire_due,
    )
    worker.run_once()
    assert fresh_engine.commitments.state_of(cid) is State.CANCELLED  # type: ignore[arg-type]


def test_one_sweep_one_transaction_a_savepoint_each(
    fresh_engine: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three commitments are due; one moves on between the sweep's read and its write.
    The database refuses that one (stale version) inside its savepoint: its rows roll
    back alone, the other two expire in the same transaction, and every chain verifies."""
    from ledger import commitments as commitment_records
    from settlement.domain.states import Event

    first, moving, last = (_expiring(fresh_engine, clock, State.DRAFT) for _ in range(3))
    clock.advance(timedelta(hours=25))
    read_due = commitment_records.expired

    def read_then_move(*args: object, **kwargs: object) -> object:
        due = read_due(*args, **kwargs)  # type: ignore[arg-type]
        fresh_engine.commitments.apply(ALLOCATOR, moving, Event.SUBMIT)  # type: ignore[arg-type]
        return due

    monkeypatch.setattr(commitment_records, "expired", read_then_move)
    savepoints = _count_savepoints(fresh_engine, monkeypatch)
    expired = fresh_engine.commitments.expire_due()

    assert sorted(str(e.commitment_id) for e in expired) == sorted([str(first), str(last)])
    assert savepoints == [3], "one savepoint per due commitment, in one transaction"
    assert fresh_engine.commitments.state_of(moving) is State.PENDING_REVIEW  # type: ignore[arg-type]
    for cid in (first, last):
        assert fresh_engine.commitments.state_of(cid) is State.CANCELLED  # type: ignore[arg-type]
    moved_trail = fresh_engine.commitments.audit_trail(moving)  # type: ignore[arg-type]
    assert [e.action for e in moved_trail] == ["create", "submit"], "no expire entry kept"
    assert fresh_engine.commitments.verify_audit().ok


def _count_savepoints(engine: Services, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch ``Database.statements`` to count, per transaction it runs, the savepoints
    opened inside it."""
    from ledger.database import DriverUnitOfWork

    counts: list[int] = []
    real_statements = type(engine.db).statements
    real_savepoint = DriverUnitOfWork.savepoint

    def statements(self: object, work: object, **kw: object) -> object:
        def counted(uow: DriverUnitOfWork) -> object:
            counts.append(0)
            return work(uow)  # type: ignore[operator]

        return real_statements(self, counted, **kw)  # type: ignore[arg-type]

    def savepoint(self: DriverUnitOfWork) -> object:
        counts[-1] += 1
        return real_savepoint(self)

    monkeypatch.setattr(type(engine.db), "statements", statements)
    monkeypatch.setattr(DriverUnitOfWork, "savepoint", savepoint)
    return counts
