"""Values the engine accepts from outside, each validated on the way in.

A value that fails validation raises a typed ``InvalidInput`` before anything is
written, so bad input never changes state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from enum import StrEnum

from settlement.domain.errors import InvalidAmount, InvalidInput, InvalidText

#: NUMERIC(38, 18): 20 integer digits, 18 fractional digits
AMOUNT_SCALE = 18
AMOUNT_INTEGER_DIGITS = 20
_AMOUNT_QUANTUM = Decimal(1).scaleb(-AMOUNT_SCALE)
_WIDE = Context(prec=80)
_CURRENCY = re.compile(r"[A-Za-z0-9]{1,12}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: an API key id (migration 0004's CHECK)
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Role(StrEnum):
    ALLOCATOR = "allocator"
    COMPLIANCE_OFFICER = "compliance_officer"
    ADMIN = "admin"
    AUDITOR = "auditor"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """Who causes an action, as the history and the audit logs name them.

    ``id`` is the person acting (an officer id, ``<party>/<user>`` for an allocator, an
    admin's or auditor's name), ``system`` for the engine itself, or the operator of a
    command run on the database host. ``key_id`` is the API key that signed the request,
    when one did: it is recorded beside the person, never instead of them, so a person
    keeps their name across key rotations. Idempotency keys are the person's (DESIGN 6),
    whichever of their keys signed.
    """

    id: str
    role: Role
    party: str | None = None
    key_id: str | None = None

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > 200 or _CONTROL.search(self.id):
            raise InvalidText("actor id must be 1-200 printable characters")
        if self.role is Role.ALLOCATOR and not self.party:
            raise InvalidInput("an allocator acts for a party; party is required")
        if self.key_id is not None and not KEY_ID.fullmatch(self.key_id):
            raise InvalidInput("a key id is 1-64 of A-Z a-z 0-9 . _ -")


SYSTEM = Actor("system", Role.SYSTEM)


def parse_amount(value: object) -> Decimal:
    """A positive amount that fits NUMERIC(38, 18) exactly, as a Decimal.

    Accepts Decimal, int and decimal strings; refuses floats (they cannot hold money
    exactly), booleans, NaN, infinities, zero, negatives, more than 18 fractional digits
    (never rounded) and more than 20 integer digits.
    """
    if isinstance(value, bool | float):
        raise InvalidAmount(
            f"amount must be a decimal string or Decimal, not {type(value).__name__}"
        )
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidAmount(f"amount {value!r} is not a decimal number") from None
    else:
        raise InvalidAmount(
            f"amount must be a decimal string or Decimal, not {type(value).__name__}"
        )
    if not amount.is_finite():
        raise InvalidAmount(f"amount must be finite, got {amount}")
    if amount <= 0:
        raise InvalidAmount(f"amount must be positive, got {amount}")
    if amount.quantize(_AMOUNT_QUANTUM, context=_WIDE) != amount:
        raise InvalidAmount(f"amount {amount} has more than {AMOUNT_SCALE} decimal places")
    if amount.adjusted() + 1 > AMOUNT_INTEGER_DIGITS:
        raise InvalidAmount(f"amount {amount} has more than {AMOUNT_INTEGER_DIGITS} integer digits")
    return amount


def parse_currency(value: str) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise InvalidInput(f"currency {value!r} must be 1-12 letters or digits")
    return value.upper()


def parse_text(value: str | None, *, name: str, max_chars: int, required: bool) -> str | None:
    """A free-text field: stripped, printable (newlines allowed), at most ``max_chars``."""
    if value is None or not value.strip():
        if required:
            raise InvalidText(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise InvalidText(f"{name} must be text")
    text = value.strip()
    if len(text) > max_chars:
        raise InvalidText(f"{name} is {len(text)} characters; at most {max_chars} are allowed")
    if _CONTROL.search(text):
        raise InvalidText(f"{name} contains control characters")
    return text


def parse_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 255 or not value.isprintable():
        raise InvalidInput("idempotency key must be 1-255 printable characters")
    return value
