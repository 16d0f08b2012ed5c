"""Ledger time and time bounds, in whole Unix seconds, without floats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from stellar_sdk import TransactionEnvelope

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """A transaction's time bounds, in Unix seconds (0 = unbounded)."""

    min_time: int
    max_time: int


def time_window(envelope_xdr: str, passphrase: str) -> Window:
    transaction = TransactionEnvelope.from_xdr(envelope_xdr, passphrase).transaction
    preconditions = transaction.preconditions
    bounds = preconditions.time_bounds if preconditions is not None else None
    if bounds is None:
        return Window(0, 0)
    return Window(bounds.min_time, bounds.max_time)


def ceil_seconds(moment: datetime) -> int:
    """Unix seconds, rounded up, in integers (no float on the way)."""
    delta = moment - EPOCH
    whole = delta.days * 86_400 + delta.seconds
    return whole + (1 if delta.microseconds else 0)


def to_datetime(unix_s: int) -> datetime:
    return EPOCH + timedelta(seconds=unix_s)
