"""The webhook outbox as the database keeps it: events written with the change that
caused them (and never for one that rolled back), the vocabulary the trigger uses, the
order rule of the claim, and what the application role may not do to the rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine, create_engine, text

from ledger import webhooks as records
from ledger.database import Statements
from ledger.errors import AuditAppendOnly, PermissionRefused
from settlement.bootstrap import Services
from settlement.clock import ManualClock
from settlement.domain import errors
from settlement.domain.states import Event, State
from tests.ledger.test_enforcement import attempt
from tests.support import ALLOCATOR, OFFICER, new_commitment


def _endpoint(engine: Services, party: str | None, types: list[str] | None = None) -> UUID:
    endpoint_id = uuid4()
    engine.db.statements(
        lambda uow: records.add_endpoint(
            uow,
            endpoint_id=endpoint_id,
            party=party,
            url="http://127.0.0.1:9/hook",
            event_types=types or [t.value for t in records.EventType],
            created_by="test",
            key_id=None,
            at=engine.clock.now(),
        )
    )
    return endpoint_id


def _events(engine: Services, commitment_id: UUID) -> list[tuple[str, int, dict[str, Any]]]:
    rows = engine.db.statements(
        lambda uow: uow.execute(
            "SELECT type, audit_seq, payload FROM webhook_events WHERE commitment_id = :id"
            " ORDER BY audit_seq",
            {"id": commitment_id},
        ).all()
    )
    return [(r[0], r[1], r[2]) for r in rows]


def test_the_vocabulary_is_the_databases(fresh_engine: Services) -> None:
    table = fresh_engine.db.statements(records.event_type_table)
    assert table == {action: kind.value for action, kind in records.ACTIONS.items()}
    # every transition event of the state machine is reported
    assert {e.value for e in Event} <= set(records.ACTIONS)


def test_no_endpoint_no_event(fresh_engine: Services) -> None:
    commitment = new_commitment(fresh_engine.commitments, State.VERIFIED)
    assert _events(fresh_engine, commitment) == []


def test_events_follow_the_changes_of_the_endpoints_party(fresh_engine: Services) -> None:
    _endpoint(fresh_engine, "party-northwind")
    _endpoint(fresh_engine, "party-southbank")
    commitment = new_commitment(fresh_engine.commitments, State.VERIFIED)
    events = _events(fresh_engine, commitment)
    assert [e[0] for e in events] == [
        "commitment.created",
        "commitment.submitted",
        "review.approved",
    ]
    assert events[2][2]["from_state"] == "PENDING_REVIEW"
    assert events[2][2]["to_state"] == "VERIFIED"
    with fresh_engine.db.unit_of_work() as uow:
        parties = uow.execute(
            "SELECT p.party FROM webhook_deliveries d JOIN webhook_endpoints p"
            " ON p.id = d.endpoint_id WHERE d.commitment_id = :id",
            {"id": commitment},
        ).all()
    # the southbank endpoint hears nothing of a northwind commitment
    assert {r[0] for r in parties} == {"party-northwind"}


def test_only_the_types_asked_for(fresh_engine: Services) -> None:
    _endpoint(fresh_engine, None, ["review.approved"])
    commitment = new_commitment(fresh_engine.commitments, State.VERIFIED)
    assert [e[0] for e in _events(fresh_engine, commitment)] == ["review.approved"]


def test_a_rolled_back_change_reports_nothing(fresh_engine: Services) -> None:
    _endpoint(fresh_engine, None)
    commitment = new_commitment(fresh_engine.commitments, State.DRAFT)
    before = _events(fresh_engine, commitment)
    with pytest.raises(errors.StaleVersion):
        fresh_engine.commitments.apply(ALLOCATOR, commitment, Event.SUBMIT, expected_version=7)
    with pytest.raises(errors.TransitionNotAllowed):
        fresh_engine.commitments.apply(OFFICER, commitment, Event.APPROVE)
    assert _events(fresh_engine, commitment) == before


def _deliver_all(engine: Services, clock: ManualClock) -> list[tuple[UUID, int]]:
    """Claim and deliver whatever is due, round by round; (commitment, seq) in order."""
    order: list[tuple[UUID, int]] = []
    while True:
        claimed = engine.db.statements(lambda uow: _claim(uow, clock))
        if not claimed:
            return order
        for c in claimed:
            order.append((c.commitment_id, c.audit_seq))
            engine.db.statements(lambda uow, c=c: _delivered(uow, c, clock))  # type: ignore[misc]


def _claim(uow: Statements, clock: ManualClock) -> list[records.ClaimedDelivery]:
    now = clock.now()
    return records.claim_due(uow, now=now, lease_until=now + timedelta(seconds=30), limit=100)


def _delivered(uow: Statements, claim: records.ClaimedDelivery, clock: ManualClock) -> bool:
    return records.record_delivered(
        uow, claim.id, attempts=claim.attempts, status_code=200, at=clock.now()
    )


def test_claims_keep_each_commitments_order(fresh_engine: Services, clock: ManualClock) -> None:
    _endpoint(fresh_engine, None)
    first = new_commitment(fresh_engine.commitments, State.VERIFIED)
    second = new_commitment(fresh_engine.commitments, State.PENDING_REVIEW)
    now = clock.now()
    claimed = fresh_engine.db.statements(
        lambda uow: records.claim_due(uow, now=now, lease_until=now, limit=100)
    )
    # one event per commitment at a time: the earliest
    assert sorted((c.commitment_id, c.audit_seq) for c in claimed) == sorted(
        [(first, 1), (second, 1)]
    )
    clock.advance(timedelta(seconds=1))  # the leases ran out: the same ones again
    order = _deliver_all(fresh_engine, clock)
    for commitment in (first, second):
        seqs = [s for c, s in order if c == commitment]
        assert seqs == sorted(seqs) and seqs[0] == 1


def test_a_dead_event_holds_back_the_later_ones(fresh_engine: Services, clock: ManualClock) -> None:
    endpoint = _endpoint(fresh_engine, None)
    commitment = new_commitment(fresh_engine.commitments, State.PENDING_REVIEW)
    now = clock.now()
    (claim,) = fresh_engine.db.statements(
        lambda uow: records.claim_due(uow, now=now, lease_until=now, limit=100)
    )
    fresh_engine.db.statements(
        lambda uow: records.record_failed(
            uow, claim.id, attempts=claim.attempts, status_code=500, error="x", retry_at=None
        )
    )
    assert _deliver_all(fresh_engine, clock) == []
    replayed = fresh_engine.db.statements(
        lambda uow: records.replay_dead(uow, endpoint, delivery_ids=None, at=now)
    )
    assert replayed == [claim.id]
    assert _deliver_all(fresh_engine, clock) == [(commitment, 1), (commitment, 2)]


def test_the_app_role_cannot_rewrite_history(fresh_engine: Services, clock: ManualClock) -> None:
    _endpoint(fresh_engine, None)
    commitment = new_commitment(fresh_engine.commitments, State.DRAFT)
    _deliver_all(fresh_engine, clock)
    app: Engine = create_engine(fresh_engine.urls.app, isolation_level="AUTOCOMMIT")
    try:
        params: dict[str, object] = {"id": commitment}
        assert isinstance(
            attempt(app, "UPDATE webhook_events SET type = 'x' WHERE commitment_id = :id", params),
            PermissionRefused,
        )
        assert isinstance(
            attempt(app, "DELETE FROM webhook_deliveries WHERE commitment_id = :id", params),
            PermissionRefused,
        )
        assert isinstance(
            attempt(
                app,
                "INSERT INTO webhook_events (id, type, commitment_id, party, audit_seq,"
                " occurred_at, payload) VALUES (gen_random_uuid(), 'x', :id, 'p', 99, now(),"
                " '{}')",
                params,
            ),
            PermissionRefused,
        )
        assert isinstance(
            attempt(
                app,
                "UPDATE webhook_deliveries SET status = 'pending', delivered_at = NULL"
                " WHERE commitment_id = :id",
                params,
            ),
            AuditAppendOnly,
        )
        assert isinstance(
            attempt(
                app,
                "UPDATE webhook_deliveries SET event_id = gen_random_uuid()"
                " WHERE commitment_id = :id",
                params,
            ),
            PermissionRefused,
        )
        with app.connect() as c:
            statuses = c.execute(
                text("SELECT DISTINCT status FROM webhook_deliveries WHERE commitment_id = :id"),
                params,
            ).all()
        assert statuses == [("delivered",)]
    finally:
        app.dispose()


def test_counts_leave_out_what_waits_for_a_disabled_endpoint(
    fresh_engine: Services, clock: ManualClock
) -> None:
    endpoint = _endpoint(fresh_engine, None, ["commitment.created"])
    new_commitment(fresh_engine.commitments, State.DRAFT)
    assert fresh_engine.db.statements(records.delivery_counts) == {"pending": 1, "dead": 0}
    fresh_engine.db.statements(
        lambda uow: records.disable_endpoint(uow, endpoint, by="test", at=clock.now())
    )
    assert fresh_engine.db.statements(records.delivery_counts) == {"pending": 0, "dead": 0}
    # and nothing is claimed for it
    assert _deliver_all(fresh_engine, clock) == []
