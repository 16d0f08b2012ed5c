"""Amounts as the XRP Ledger holds them, checked before anything is signed.

- XRP: integer drops (1 XRP = 1,000,000 drops), so at most 6 decimal places; at most
  the total supply of 100 billion XRP.
- Issued tokens: a decimal with at most 15 significant digits (the ledger's documented
  precision) whose normalised form (16-digit mantissa, exponent -96..80) is in range.
- Currency codes: three characters (not "XRP"), or 40 hex digits; a longer name of up
  to 20 ASCII characters is written as 40 hex digits, as wallets and explorers do.
- Transfer fees: an issuer's ``TransferRate`` (billionths; 1,000,000,000 or unset is no
  fee) is charged when its token moves from one holder to another through it. What a
  holder must spend is rounded up, what arrives rounded down, at the 15 digits a
  transaction can state, so a figure the engine signs never asks the ledger for less
  than it needs nor promises more than arrives.

Every check raises ``LegInvalid`` with the reason; nothing here is float.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Any, Final

from xrpl.models.amounts import IssuedCurrencyAmount

from adapters.chain import Asset
from adapters.errors import LegInvalid

DROPS_PER_XRP: Final = 1_000_000
MAX_DROPS: Final = 100_000_000_000 * DROPS_PER_XRP
TOKEN_SIGNIFICANT_DIGITS: Final = 15
_MANTISSA_DIGITS: Final = 16
_MIN_EXPONENT: Final = -96
_MAX_EXPONENT: Final = 80
_ISO_CHARS: Final = frozenset(string.ascii_letters + string.digits + "?!@#$%^&*<>(){}[]|")
#: a TransferRate that charges nothing (rippled's QUALITY_ONE)
TRANSFER_RATE_PARITY: Final = 1_000_000_000


def xrp_to_drops(amount: Decimal) -> int:
    """``amount`` XRP as whole drops; LegInvalid if not positive, not whole drops, or
    more than exist."""
    if not amount.is_finite() or amount <= 0:
        raise LegInvalid(f"XRP amount must be positive, got {amount}")
    drops = amount * DROPS_PER_XRP
    if drops != drops.to_integral_value():
        raise LegInvalid(f"XRP amount {amount} is not a whole number of drops (6 decimals)")
    if drops > MAX_DROPS:
        raise LegInvalid(f"XRP amount {amount} exceeds the total supply")
    return int(drops)


def token_value(amount: Decimal) -> str:
    """``amount`` as the ledger's token value string; LegInvalid if not positive, more
    than 15 significant digits, or outside the ledger's token range."""
    if not amount.is_finite() or amount <= 0:
        raise LegInvalid(f"token amount must be positive, got {amount}")
    sign, digits, exponent = amount.normalize().as_tuple()
    assert sign == 0
    assert isinstance(exponent, int)
    if len(digits) > TOKEN_SIGNIFICANT_DIGITS:
        raise LegInvalid(
            f"token amount {amount} has {len(digits)} significant digits; "
            f"the XRP Ledger keeps {TOKEN_SIGNIFICANT_DIGITS}"
        )
    ledger_exponent = exponent - (_MANTISSA_DIGITS - len(digits))
    if not _MIN_EXPONENT <= ledger_exponent <= _MAX_EXPONENT:
        raise LegInvalid(f"token amount {amount} is outside the XRP Ledger's token range")
    return format(amount.normalize(), "f")


def currency_code(code: str) -> str:
    """The ledger's form of a token's currency code; LegInvalid if it has none."""
    if len(code) == 3 and set(code) <= _ISO_CHARS:
        if code.upper() == "XRP":
            raise LegInvalid("XRP is the native asset, not an issued currency code")
        return code
    if len(code) == 40 and all(c in string.hexdigits for c in code):
        if code.startswith("00"):
            raise LegInvalid(f"currency {code}: a hex code may not start with 00")
        return code.upper()
    if 3 < len(code) <= 20 and code.isascii() and code.isprintable():
        return code.encode("ascii").hex().upper().ljust(40, "0")
    raise LegInvalid(f"currency {code!r} is not an XRP Ledger currency code")


def issued_amount(asset: Asset, amount: Decimal) -> IssuedCurrencyAmount:
    assert asset.issuer is not None, "an issued amount needs an issuer"
    return IssuedCurrencyAmount(
        currency=currency_code(asset.code), issuer=asset.issuer, value=token_value(amount)
    )


def transfer_rate(issuer_root: Mapping[str, Any]) -> int:
    """The issuer's TransferRate in billionths, from its AccountRoot; parity when unset
    (rippled removes the field for 0 and for parity)."""
    return int(issuer_root.get("TransferRate", 0)) or TRANSFER_RATE_PARITY


def with_transfer_fee(amount: Decimal, rate: int) -> Decimal:
    """What a holder spends for ``amount`` to arrive through the issuer at ``rate``:
    amount x rate, rounded up to 15 significant digits (at least what the ledger asks,
    which rounds its own figure up at 16)."""
    with localcontext() as exact:
        exact.prec = 60
        return _significant(amount * rate / TRANSFER_RATE_PARITY, ROUND_CEILING)


def after_transfer_fee(amount: Decimal, rate: int) -> Decimal:
    """What arrives when a holder spends ``amount`` through the issuer at ``rate``:
    amount / rate, rounded down to 15 significant digits (at most what the ledger
    delivers, which rounds its own figure down at 16)."""
    with localcontext() as exact:
        exact.prec = 60
        return _significant(amount * TRANSFER_RATE_PARITY / rate, ROUND_FLOOR)


def _significant(value: Decimal, rounding: str) -> Decimal:
    quantum = Decimal(1).scaleb(value.adjusted() - TOKEN_SIGNIFICANT_DIGITS + 1)
    with localcontext() as context:
        context.prec = 60
        return value.quantize(quantum, rounding=rounding).normalize()
