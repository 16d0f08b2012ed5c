"""Bad input gets a clear, typed error and changes nothing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
from sqlalchemy import Engine as SqlEngine
from sqlalchemy import text

from settlement.bootstrap import Services
from settlement.clock import ManualClock
from settlement.domain import errors
from settlement.domain.states import State
from settlement.services.translate import translated
from tests.support import ALLOCATOR, AUDITOR, OFFICER, new_commitment, snapshot


def _commitment_count(app_engine: SqlEngine) -> int:
    with app_engine.connect() as c:
        return int(c.execute(text("SELECT count(*) FROM commitments")).scalar_one())


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        ("-1", "positive"),
        ("0", "positive"),
        ("NaN", "finite"),
        ("sNaN", "finite"),
        ("1.0000000000000000001", "18 decimal places"),
        ("1" + "0" * 20, "20 integer digits"),
        (0.1, "not float"),
        ("ten", "not a decimal"),
    ],
)
def test_malformed_amounts_create_nothing(
    engine: Services, app_engine: SqlEngine, amount: object, error: str
) -> None:
    before = _commitment_count(app_engine)
    with pytest.raises(errors.InvalidAmount, match=error):
        engine.commitments.create(ALLOCATOR, deal_ref="D", amount=amount, currency="USD")  # type: ignore[arg-type]
    assert _commitment_count(app_engine) == before


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"currency": "US$"}, errors.InvalidInput),
        ({"deal_ref": ""}, errors.InvalidText),
        ({"deal_ref": "x" * 201}, errors.InvalidText),
        ({"idempotency_key": ""}, errors.InvalidInput),
        ({"idempotency_key": "k" * 256}, errors.InvalidInput),
    ],
)
def test_other_bad_create_input(
    engine: Services, app_engine: SqlEngine, kwargs: dict[str, str], error: type[Exception]
) -> None:
    before = _commitment_count(app_engine)
    args = {"deal_ref": "D", "amount": "10", "currency": "USD", **kwargs}
    with pytest.raises(error):
        engine.commitments.create(ALLOCATOR, **args)  # type: ignore[arg-type]
    assert _commitment_count(app_engine) == before


def test_expiry_in_the_past_refused(engine: Services, clock: ManualClock) -> None:
    with pytest.raises(errors.InvalidInput, match="expires_at"):
        engine.commitments.create(
            ALLOCATOR,
            deal_ref="D",
            amount="1",
            currency="USD",
            expires_at=clock.now() - timedelta(seconds=1),
        )


def test_only_allocators_create(engine: Services) -> None:
    for actor in (OFFICER, AUDITOR):
        with pytest.raises(errors.NotAuthorised):
            engine.commitments.create(actor, deal_ref="D", amount="1", currency="USD")


def test_unknown_event_and_unknown_commitment(engine: Services, app_engine: SqlEngine) -> None:
    cid = new_commitment(engine.commitments)
    frozen = snapshot(app_engine, cid)
    with pytest.raises(errors.UnknownEvent):
        engine.commitments.apply(ALLOCATOR, cid, "teleport")
    with pytest.raises(errors.CommitmentNotFound):
        engine.commitments.submit(ALLOCATOR, uuid4())
    assert snapshot(app_engine, cid) == frozen


def test_stale_version_is_a_clean_conflict(engine: Services, app_engine: SqlEngine) -> None:
    cid = new_commitment(engine.commitments, State.DRAFT)
    engine.commitments.submit(ALLOCATOR, cid, expected_version=1)
    frozen = snapshot(app_engine, cid)
    with pytest.raises(errors.StaleVersion, match="at version 2, not 1"):
        engine.commitments.apply(OFFICER, cid, "approve", expected_version=1)
    assert snapshot(app_engine, cid) == frozen
    for bad in (0, -3, True):
        with pytest.raises(errors.InvalidInput):
            engine.commitments.approve(OFFICER, cid, expected_version=bad)


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        (None, "reason is required"),
        ("   ", "reason is required"),
        ("x" * 2001, "at most 2000"),
        ("bad\x07bell", "control characters"),
    ],
)
def test_reasons_checked(
    engine: Services, app_engine: SqlEngine, reason: str | None, error: str
) -> None:
    cid = new_commitment(engine.commitments, State.PENDING_REVIEW)
    frozen = snapshot(app_engine, cid)
    with pytest.raises(errors.InvalidText, match=error):
        engine.commitments.reject(OFFICER, cid, reason=reason)
    assert snapshot(app_engine, cid) == frozen


def test_amount_stored_exactly(engine: Services) -> None:
    created = engine.commitments.create(
        ALLOCATOR, deal_ref="D", amount="12345678901234567890.123456789012345678", currency="usd"
    )
    record = engine.commitments.get(created.commitment_id)
    assert record.amount == Decimal("12345678901234567890.123456789012345678")
    assert record.currency == "USD"


@pytest.mark.parametrize(
    ("sql", "value"),
    [
        ("SELECT length(%(v)s::text)", "a\x00b"),  # refused by psycopg before it is sent
        ("SELECT %(v)s::text::integer", "ten"),  # refused by the server: SQLSTATE 22P02
    ],
)
def test_a_value_the_database_refuses_is_invalid_input(
    engine: Services, sql: str, value: str
) -> None:
    with pytest.raises(errors.InvalidInput, match="refused a value"), translated():
        engine.db.call_one(sql, {"v": value})
