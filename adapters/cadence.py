"""A chain's latest validated ledger as one adapter sees it, and when the next is due.

Every poll of a transaction first reads the latest validated ledger (its index decides
expiry; its close time is the ledger's clock). Many settlements poll at once, so
``HeadWatch`` lets the threads of one adapter share that read: a head read less than
``fresh_s`` ago is answered from memory. That is sound wherever the head is read
*before* what it is compared with (a transaction looked up afterwards, a deadline judged
on it): an older head is only further before. Heads only move forward: a read that
returns an older ledger (another server behind a balancer) never replaces a newer one.

Each new index seen also teaches the cadence of closes. ``next_ledger_in_s`` says when
the next validated ledger is expected, so a settlement waiting on a ledger is looked at
again just after it closes, instead of on a fixed timer that either wastes polls
(XRPL and Stellar close every 3-6 s) or adds latency.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

H = TypeVar("H")

#: the interval is learned over this many of the latest new ledgers seen
_BASELINE = 16
#: each estimate of when a ledger closed leans this share of an interval early (see
#: ``observe``)
_LEAN = 0.03
#: bounds on a learned interval: no ledger closes faster; slower is a stalled network
MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 60.0


class HeadWatch(Generic[H]):
    def __init__(
        self,
        read: Callable[[], H],
        index_of: Callable[[H], int],
        *,
        fresh_s: float = 0.05,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._index_of = index_of
        self.fresh_s = fresh_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._head: H | None = None
        self._read_at = 0.0
        self._index = -1
        #: (index, when it is estimated to have closed) of the latest new ledgers seen
        self._changes: deque[tuple[int, float]] = deque(maxlen=_BASELINE)
        self._interval_s: float | None = None

    def get(self) -> H:
        """The latest validated head: from memory if read within ``fresh_s``, else read
        now (raising whatever ``read`` raises)."""
        with self._lock:
            if self._head is not None and self._monotonic() - self._read_at < self.fresh_s:
                return self._head
        return self.observe(self._read())

    def observe(self, head: H) -> H:
        """Take a head read elsewhere; return the newest known (this one or a later)."""
        index = self._index_of(head)
        now = self._monotonic()
        with self._lock:
            if index < self._index:
                assert self._head is not None
                return self._head
            if index > self._index:
                self._changes.append((index, self._closed_at(now)))
                self._index = index
                self._interval_s = self._learned_interval()
            self._head = head
            self._read_at = now
            return head

    def _closed_at(self, now: float) -> float:
        """When the ledger just seen closed: after the last read that still saw the one
        before (``_read_at``), and no later than now. A poll timed by
        ``next_ledger_in_s`` comes a margin after the expected close, so the estimate is
        a margin back; it also leans a little early, because a poll that finds the
        ledger cannot tell how late it is, while one that comes too early and finds the
        old one moves the estimate forward (through ``_read_at``): leaning early, the
        estimate keeps finding the closes instead of drifting late with every error."""
        if self._interval_s is None:
            return now
        back = _margin(self._interval_s) + _LEAN * self._interval_s
        return max(self._read_at, now - back)

    def _learned_interval(self) -> float | None:
        if len(self._changes) < 2:
            return None
        (first, first_at), (last, last_at) = self._changes[0], self._changes[-1]
        interval = (last_at - first_at) / (last - first)
        return min(max(interval, MIN_INTERVAL_S), MAX_INTERVAL_S)

    @property
    def interval_s(self) -> float | None:
        """The learned time between validated ledgers; None before two were seen."""
        return self._interval_s

    def next_ledger_in_s(self) -> float | None:
        """Seconds until the next validated ledger is expected (just after it, so that
        a read then finds it), or None while the cadence is unknown. While a close is
        overdue, a short while: it may come at any moment."""
        with self._lock:
            interval = self._interval_s
            if interval is None:
                return None
            elapsed = self._monotonic() - self._changes[-1][1]
        due_s = interval + _margin(interval) - elapsed
        return due_s if due_s > 0 else _margin(interval)


def _margin(interval_s: float) -> float:
    """How long after an expected close to look: the ledger must be validated and
    served by then, and the estimate of when it closed is itself a little off."""
    return 0.05 + 0.1 * interval_s
