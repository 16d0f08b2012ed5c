"""PREIMAGE-SHA-256 crypto-conditions (draft-thomas-crypto-conditions), as escrows use them.

Binary forms (DER), for a preimage of n bytes:

- fulfillment: ``A0 <len> 80 <n> <preimage>``
- condition:   ``A0 25 80 20 <sha256(preimage)> 81 <k> <n as k-byte integer>``

rippled caps a serialized fulfillment at 256 bytes and a condition at 128 bytes. Only
the preimage type is accepted: it is the only type the XRP Ledger enables.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAX_FULFILLMENT_BYTES = 256
MAX_CONDITION_BYTES = 128
_PREIMAGE_TYPE_TAG = 0xA0


@dataclass(frozen=True)
class PreimageCondition:
    fingerprint: bytes
    cost: int


def _read_length(data: bytes, at: int) -> tuple[int, int]:
    """DER length at ``at``: (length, offset of the content); ValueError if malformed."""
    if at >= len(data):
        raise ValueError("truncated length")
    first = data[at]
    if first < 0x80:
        return first, at + 1
    count = first & 0x7F
    if count == 0 or count > 2 or at + 1 + count > len(data):
        raise ValueError("unsupported length form")
    return int.from_bytes(data[at + 1 : at + 1 + count], "big"), at + 1 + count


def _read_tlv(data: bytes, at: int, tag: int) -> tuple[bytes, int]:
    if at >= len(data) or data[at] != tag:
        raise ValueError(f"expected tag {tag:#x}")
    length, start = _read_length(data, at + 1)
    end = start + length
    if end > len(data):
        raise ValueError("truncated content")
    return data[start:end], end


def parse_condition(blob: bytes) -> PreimageCondition | None:
    """The condition, or None if it is not a well-formed PREIMAGE-SHA-256 condition."""
    if len(blob) > MAX_CONDITION_BYTES:
        return None
    try:
        body, end = _read_tlv(blob, 0, _PREIMAGE_TYPE_TAG)
        fingerprint, at = _read_tlv(body, 0, 0x80)
        cost_bytes, at = _read_tlv(body, at, 0x81)
    except ValueError:
        return None
    if end != len(blob) or at != len(body) or len(fingerprint) != 32 or not cost_bytes:
        return None
    return PreimageCondition(fingerprint, int.from_bytes(cost_bytes, "big"))


def parse_fulfillment(blob: bytes) -> bytes | None:
    """The preimage, or None if not a well-formed PREIMAGE-SHA-256 fulfillment."""
    if len(blob) > MAX_FULFILLMENT_BYTES:
        return None
    try:
        body, end = _read_tlv(blob, 0, _PREIMAGE_TYPE_TAG)
        preimage, at = _read_tlv(body, 0, 0x80)
    except ValueError:
        return None
    if end != len(blob) or at != len(body):
        return None
    return preimage


def fulfills(fulfillment: bytes, condition: bytes) -> bool:
    """True if ``fulfillment`` is a valid preimage for ``condition``."""
    parsed = parse_condition(condition)
    preimage = parse_fulfillment(fulfillment)
    if parsed is None or preimage is None:
        return False
    return hashlib.sha256(preimage).digest() == parsed.fingerprint and parsed.cost == len(preimage)


def make_preimage_pair(preimage: bytes) -> tuple[bytes, bytes]:
    """(condition, fulfillment) for a preimage shorter than 128 bytes; for tests and tools."""
    if len(preimage) >= 128:
        raise ValueError("preimage must be shorter than 128 bytes")
    fulfillment = bytes([0xA0, len(preimage) + 2, 0x80, len(preimage)]) + preimage
    digest = hashlib.sha256(preimage).digest()
    condition = bytes([0xA0, 0x25, 0x80, 0x20]) + digest + bytes([0x81, 0x01, len(preimage)])
    return condition, fulfillment
