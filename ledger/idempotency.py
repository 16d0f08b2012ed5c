"""Idempotency keys (DESIGN section 6).

A mutating request carries a key chosen by its sender. The pair (actor, key) is unique;
its fingerprint is SHA-256 over actor, method, path and body, so the same key reused
for a different request is recognised and refused rather than replayed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ledger.errors import IdempotencyInFlight, IdempotencyKeyReused

MAX_KEY_LENGTH = 255


def fingerprint(actor: str, method: str, path: str, body: bytes) -> str:
    """Lowercase hex SHA-256 of the request identity, fields length-prefixed."""
    digest = hashlib.sha256()
    for part in (actor.encode(), method.upper().encode(), path.encode(), body):
        digest.update(str(len(part)).encode() + b":" + part + b",")
    return digest.hexdigest()


def resolve(
    outcome: str, response: str | None, *, actor: str, key: str | None
) -> tuple[bool, dict[str, Any]]:
    """Turn the outcome of a keyed server-side call into (replayed, response) or an error."""
    match outcome:
        case "applied":
            return False, _load(response)
        case "replay":
            return True, _load(response)
        case "in_flight":
            raise IdempotencyInFlight(
                f"a request with idempotency key {key!r} of {actor} is in flight"
            )
        case "mismatch":
            raise IdempotencyKeyReused(
                f"idempotency key {key!r} of {actor} was already used for a different request"
            )
        case _:
            raise AssertionError(f"unknown idempotency outcome {outcome!r}")


def _load(response: str | None) -> dict[str, Any]:
    assert response is not None, "an applied or replayed call always has a response"
    loaded = json.loads(response)
    assert isinstance(loaded, dict)
    return loaded
