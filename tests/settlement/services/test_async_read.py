"""The event-loop read of one commitment answers as the unit-of-work read does."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from settlement.bootstrap import Services
from settlement.domain import errors
from settlement.domain.states import State
from tests.support import new_commitment


@pytest.mark.parametrize("state", [State.DRAFT, State.PENDING_REVIEW, State.CANCELLED])
def test_get_async_returns_the_record_get_returns(engine: Services, state: State) -> None:
    service = engine.commitments
    cid = new_commitment(service, state)
    record = asyncio.run(service.get_async(cid))
    assert record == service.get(cid)
    assert record.id == cid and record.state == state.value
    assert record.created_at.utcoffset() is not None  # aware, as the blocking read's


def test_get_async_of_a_missing_commitment_is_not_found(engine: Services) -> None:
    missing = uuid.uuid4()
    with pytest.raises(errors.CommitmentNotFound) as blocking:
        engine.commitments.get(missing)
    with pytest.raises(errors.CommitmentNotFound) as on_loop:
        asyncio.run(engine.commitments.get_async(missing))
    assert type(on_loop.value) is type(blocking.value)
    assert on_loop.value.code == blocking.value.code
