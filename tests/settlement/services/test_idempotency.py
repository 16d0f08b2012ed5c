"""Idempotency keys: replay, refusal of a reused key, isolation per actor."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine as SqlEngine
from sqlalchemy import text

from settlement.bootstrap import Services
from settlement.domain import errors
from settlement.domain.states import State
from tests.support import ALLOCATOR, OFFICER, OTHER_ALLOCATOR, new_commitment, snapshot


def test_create_replayed_not_repeated(engine: Services, app_engine: SqlEngine) -> None:
    first = engine.commitments.create(
        ALLOCATOR, deal_ref="IDEM-1", amount="5", currency="USD", idempotency_key="create-idem-1"
    )
    again = engine.commitments.create(
        ALLOCATOR, deal_ref="IDEM-1", amount="5", currency="USD", idempotency_key="create-idem-1"
    )
    assert not first.replayed and again.replayed
    assert again.commitment_id == first.commitment_id
    assert again.entry_hash == first.entry_hash
    with app_engine.connect() as c:
        assert (
            c.execute(
                text("SELECT count(*) FROM commitments WHERE deal_ref = 'IDEM-1'")
            ).scalar_one()
            == 1
        )


def test_same_key_different_request_refused(engine: Services) -> None:
    engine.commitments.create(
        ALLOCATOR, deal_ref="IDEM-2", amount="5", currency="USD", idempotency_key="create-idem-2"
    )
    with pytest.raises(errors.IdempotencyKeyReused):
        engine.commitments.create(
            ALLOCATOR,
            deal_ref="IDEM-2",
            amount="6",
            currency="USD",
            idempotency_key="create-idem-2",
        )


def test_keys_belong_to_their_actor(engine: Services) -> None:
    a = engine.commitments.create(
        ALLOCATOR, deal_ref="IDEM-3", amount="5", currency="USD", idempotency_key="shared-key"
    )
    b = engine.commitments.create(
        OTHER_ALLOCATOR, deal_ref="IDEM-3", amount="5", currency="USD", idempotency_key="shared-key"
    )
    assert a.commitment_id != b.commitment_id
    assert not b.replayed


def test_transition_replayed_after_the_state_moved_on(
    engine: Services, app_engine: SqlEngine
) -> None:
    cid = new_commitment(engine.commitments, State.PENDING_REVIEW)
    first = engine.commitments.approve(
        OFFICER, cid, expected_version=2, idempotency_key="approve-1"
    )
    engine.commitments.withdraw(ALLOCATOR, cid)
    frozen = snapshot(app_engine, cid)
    # a retry of the approval after the commitment was withdrawn replays, it does not fail
    again = engine.commitments.approve(
        OFFICER, cid, expected_version=2, idempotency_key="approve-1"
    )
    assert again.replayed and (again.to_state, again.version) == (first.to_state, first.version)
    assert snapshot(app_engine, cid) == frozen
    with pytest.raises(errors.IdempotencyKeyReused):
        engine.commitments.reject(OFFICER, cid, reason="no", idempotency_key="approve-1")


def test_failed_request_does_not_burn_its_key(engine: Services) -> None:
    cid = new_commitment(engine.commitments, State.DRAFT)
    with pytest.raises(errors.TransitionNotAllowed):
        engine.commitments.approve(OFFICER, cid, idempotency_key="k-fail")  # still DRAFT
    engine.commitments.submit(ALLOCATOR, cid)
    result = engine.commitments.approve(OFFICER, cid, idempotency_key="k-fail")
    assert result.to_state == "VERIFIED" and not result.replayed
