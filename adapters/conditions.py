"""Hash locks: the engine's secret, its PREIMAGE-SHA-256 condition and fulfillment.

A settlement locks every hash-locked leg with one ``condition``; revealing the
``fulfillment`` (which contains the secret) lets anyone finish those legs, so the
secret stays with the engine, encrypted at rest, until the decision is COMMIT.

Binary forms (crypto-conditions, DER) for a preimage of n < 128 bytes, as the XRP Ledger
reads them::

    fulfillment  A0 <n+2> 80 <n> <preimage>
    condition    A0 25 80 20 <sha256(preimage)> 81 01 <n>

Hex is uppercase, as rippled writes it back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

SECRET_BYTES = 32
_PREIMAGE_SHA256 = 0xA0


@dataclass(frozen=True, repr=False)
class HashLock:
    """A secret and the condition it fulfills. ``repr`` never shows the secret."""

    secret: bytes

    def __post_init__(self) -> None:
        if not 0 < len(self.secret) < 128:
            raise ValueError("a preimage must be 1 to 127 bytes")

    @classmethod
    def generate(cls) -> HashLock:
        """A fresh 32-byte secret from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(SECRET_BYTES))

    @property
    def condition_hex(self) -> str:
        return condition_for(self.secret).hex().upper()

    @property
    def fulfillment_hex(self) -> str:
        return fulfillment_for(self.secret).hex().upper()

    def __repr__(self) -> str:
        return f"HashLock(condition={self.condition_hex})"


def fulfillment_for(preimage: bytes) -> bytes:
    return bytes([_PREIMAGE_SHA256, len(preimage) + 2, 0x80, len(preimage)]) + preimage


def condition_for(preimage: bytes) -> bytes:
    digest = hashlib.sha256(preimage).digest()
    return bytes([_PREIMAGE_SHA256, 0x25, 0x80, 0x20]) + digest + bytes([0x81, 0x01, len(preimage)])


def preimage_of(fulfillment: bytes) -> bytes:
    """The preimage inside a PREIMAGE-SHA-256 fulfillment; ValueError if it is not one."""
    if (
        len(fulfillment) < 5
        or fulfillment[0] != _PREIMAGE_SHA256
        or fulfillment[1] != len(fulfillment) - 2
        or fulfillment[2] != 0x80
        or fulfillment[3] != len(fulfillment) - 4
        or fulfillment[3] >= 128
    ):
        raise ValueError("not a PREIMAGE-SHA-256 fulfillment of a preimage under 128 bytes")
    return fulfillment[4:]


def condition_of_fulfillment(fulfillment_hex: str) -> str:
    """The condition (uppercase hex) that ``fulfillment_hex`` fulfills; ValueError if
    the hex or the fulfillment is malformed."""
    return condition_for(preimage_of(bytes.fromhex(fulfillment_hex))).hex().upper()
