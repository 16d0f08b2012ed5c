"""Amounts: XRP as integer drops, issued tokens as ``Decimal`` in the protocol's range.

An issued amount on the XRP Ledger is a 16-digit mantissa (10^15 .. 10^16-1) and an
exponent (-96 .. 80). Arithmetic here is exact ``Decimal`` arithmetic followed by
rounding to 16 significant digits, half to even, as rippled's ``Number`` does; values
below the smallest representable magnitude become zero and values above the largest
are refused (``AmountError``). No float is used anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Context, Decimal, InvalidOperation
from typing import Any

from adapters.localnet.xrpl import protocol

_EXACT = Context(prec=400)
_SIXTEEN_DIGITS = Context(prec=16, rounding=ROUND_HALF_EVEN)
_SIXTEEN_UP = Context(prec=16, rounding=ROUND_UP)
_SIXTEEN_DOWN = Context(prec=16, rounding=ROUND_DOWN)
_RATE_ONE = Decimal(protocol.TRANSFER_RATE_PARITY)
_MIN_EXPONENT = -96
_MAX_EXPONENT = 80
_XRP_MAX_DROPS = protocol.TOTAL_SUPPLY_DROPS
_DROPS_PATTERN = re.compile(r"^\d{1,18}$")
_HEX_CURRENCY = re.compile(r"^[0-9A-Fa-f]{40}$")
_ISO_CURRENCY = re.compile(r"^[A-Za-z0-9?!@#$%^&*<>(){}\[\]|]{3}$")


class AmountError(ValueError):
    """An amount that the protocol cannot represent or that is malformed."""


@dataclass(frozen=True)
class IssuedAmount:
    """A quantity of the token ``currency`` issued by ``issuer``."""

    currency: str
    issuer: str
    value: Decimal

    def with_value(self, value: Decimal) -> IssuedAmount:
        return IssuedAmount(self.currency, self.issuer, normalize(value))

    def to_json(self) -> dict[str, str]:
        return {"currency": self.currency, "issuer": self.issuer, "value": text(self.value)}


Amount = int | IssuedAmount  # int: XRP in drops


def normalize(value: Decimal) -> Decimal:
    """Round to the protocol's 16 significant digits; AmountError if out of range."""
    if value.is_zero():
        return Decimal(0)
    rounded = _SIXTEEN_DIGITS.plus(value)
    mantissa_exponent = rounded.adjusted() - 15
    if mantissa_exponent < _MIN_EXPONENT:
        return Decimal(0)
    if mantissa_exponent > _MAX_EXPONENT:
        raise AmountError(f"issued amount {value} is too large")
    return rounded


def add(a: Decimal, b: Decimal) -> Decimal:
    return normalize(_EXACT.add(a, b))


def subtract(a: Decimal, b: Decimal) -> Decimal:
    return normalize(_EXACT.subtract(a, b))


def text(value: Decimal) -> str:
    """The value as rippled prints it (``STAmount::getText``).

    Plain decimal notation while the mantissa exponent lies in -25..-5, otherwise
    ``<16-digit mantissa>e<exponent>``; so 100 prints as ``100`` but 10^11 prints as
    ``1000000000000000e-4``.
    """
    if value.is_zero():
        return "0"
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    exponent = magnitude.adjusted() - 15
    mantissa = int(magnitude.scaleb(-exponent, _EXACT))
    if exponent != 0 and (exponent < -25 or exponent > -5):
        return f"{sign}{mantissa}e{exponent}"
    plain = format(magnitude.normalize(_EXACT), "f")
    if "." in plain:
        plain = plain.rstrip("0").rstrip(".")
    return sign + plain


def apply_rate(value: Decimal, rate: int, *, round_up: bool) -> Decimal:
    """``value`` × ``rate``/10^9 (a transfer rate), rounded to 16 digits in one direction.

    rippled's payment engine rounds what a sender must put in up and what a receiver
    gets down (``mulRatio``/``divideRound`` with an explicit direction), so the issuer
    never issues more than it was paid for.
    """
    exact = _EXACT.divide(_EXACT.multiply(value, Decimal(rate)), _RATE_ONE)
    return normalize((_SIXTEEN_UP if round_up else _SIXTEEN_DOWN).plus(exact))


def remove_rate(value: Decimal, rate: int, *, round_up: bool) -> Decimal:
    """``value`` ÷ (``rate``/10^9): what is left of ``value`` once the fee is taken."""
    exact = _EXACT.divide(_EXACT.multiply(value, _RATE_ONE), Decimal(rate))
    return normalize((_SIXTEEN_UP if round_up else _SIXTEEN_DOWN).plus(exact))


def parse_drops(raw: object) -> int:
    """XRP drops from their JSON form (a string of digits); AmountError otherwise."""
    if not isinstance(raw, str) or not _DROPS_PATTERN.match(raw):
        raise AmountError(f"not an XRP amount in drops: {raw!r}")
    drops = int(raw)
    if drops > _XRP_MAX_DROPS:
        raise AmountError(f"XRP amount {drops} exceeds the total supply")
    return drops


def parse_value(raw: object) -> Decimal:
    if not isinstance(raw, str):
        raise AmountError(f"issued value must be a string: {raw!r}")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise AmountError(f"not a number: {raw!r}") from exc
    if not value.is_finite():
        raise AmountError(f"not a finite number: {raw!r}")
    return normalize(value)


def parse_amount(raw: object) -> Amount:
    """An ``Amount`` from its JSON form; AmountError if malformed."""
    if isinstance(raw, str):
        return parse_drops(raw)
    if isinstance(raw, dict) and {"currency", "issuer", "value"} <= raw.keys():
        currency = raw["currency"]
        if not isinstance(currency, str) or not (
            _ISO_CURRENCY.match(currency) or _HEX_CURRENCY.match(currency)
        ):
            raise AmountError(f"malformed currency: {currency!r}")
        issuer = raw["issuer"]
        if not isinstance(issuer, str):
            raise AmountError(f"malformed issuer: {issuer!r}")
        return IssuedAmount(canonical_currency(currency), issuer, parse_value(raw["value"]))
    raise AmountError(f"not an amount: {raw!r}")


def canonical_currency(currency: str) -> str:
    return currency.upper() if len(currency) == 40 else currency


def is_bad_currency(currency: str) -> bool:
    """rippled's ``badCurrency``: the ISO code "XRP" is reserved and cannot be issued."""
    return currency == "XRP" or currency.upper() == "0" * 40


def amount_to_json(amount: Amount) -> Any:
    if isinstance(amount, int):
        return str(amount)
    return amount.to_json()


def is_positive(amount: Amount) -> bool:
    if isinstance(amount, int):
        return amount > 0
    return amount.value > 0
