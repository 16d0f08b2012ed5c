"""Stellar amounts: integer stroops inside, Horizon's 7-decimal strings outside.

1 XLM (and one unit of any credit asset) is 10,000,000 stroops; Horizon renders
every amount with exactly seven decimal places ("10.0000000").
"""

from __future__ import annotations

from decimal import Decimal

STROOPS_PER_UNIT = 10_000_000
INT64_MAX = 2**63 - 1


def format_stroops(stroops: int) -> str:
    """Render an integer number of stroops the way Horizon does ("-1.5000000")."""
    sign = "-" if stroops < 0 else ""
    units, fraction = divmod(abs(stroops), STROOPS_PER_UNIT)
    return f"{sign}{units}.{fraction:07d}"


def parse_amount(text: str) -> int:
    """Parse a decimal amount string into stroops; raises ValueError if it is not exact."""
    value = Decimal(text)
    stroops = value * STROOPS_PER_UNIT
    if stroops != stroops.to_integral_value():
        raise ValueError(f"{text!r} has more than 7 decimal places")
    return int(stroops)
