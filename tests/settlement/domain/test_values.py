"""Validation of values that come from outside."""

from __future__ import annotations

from decimal import Decimal

import pytest

from settlement.domain.errors import InvalidAmount, InvalidInput, InvalidText
from settlement.domain.values import Actor, Role, parse_amount, parse_currency, parse_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", Decimal("1")),
        ("0.000000000000000001", Decimal("0.000000000000000001")),
        (
            "99999999999999999999.999999999999999999",
            Decimal("99999999999999999999.999999999999999999"),
        ),
        (Decimal("2500000.50"), Decimal("2500000.50")),
        (7, Decimal(7)),
        ("1.500000000000000000000", Decimal("1.5")),  # trailing zeros are not precision
    ],
)
def test_amounts_accepted_exactly(raw: object, expected: Decimal) -> None:
    assert parse_amount(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("-5", "positive"),
        ("0", "positive"),
        ("0.0", "positive"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("0.0000000000000000001", "more than 18 decimal places"),
        ("100000000000000000000", "more than 20 integer digits"),
        ("1e30", "more than 20 integer digits"),
        ("12,5", "not a decimal number"),
        ("", "not a decimal number"),
        (1.5, "not float"),
        (True, "not bool"),
        (None, "not NoneType"),
    ],
)
def test_malformed_amounts_refused(raw: object, message: str) -> None:
    with pytest.raises(InvalidAmount, match=message):
        parse_amount(raw)


def test_currency_and_text() -> None:
    assert parse_currency("usd") == "USD"
    with pytest.raises(InvalidInput):
        parse_currency("US D")
    assert parse_text("  why  ", name="reason", max_chars=10, required=True) == "why"
    assert parse_text("   ", name="reason", max_chars=10, required=False) is None
    with pytest.raises(InvalidText, match="reason is required"):
        parse_text(" ", name="reason", max_chars=10, required=True)
    with pytest.raises(InvalidText, match="at most 10"):
        parse_text("x" * 11, name="reason", max_chars=10, required=True)
    with pytest.raises(InvalidText, match="control characters"):
        parse_text("a\x00b", name="reason", max_chars=10, required=True)


def test_allocator_needs_a_party() -> None:
    with pytest.raises(InvalidInput, match="party is required"):
        Actor("k", Role.ALLOCATOR)
