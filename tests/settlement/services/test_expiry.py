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
