"""Fault injection: what the node does wrong on purpose, for resilience tests.

One ``FaultPlan`` per node, shared by the HTTP server and the JSON-RPC handlers, and
reachable in process (``node.faults``) or over JSON-RPC (admin method
``localnet_faults``). Every fault is explicit and counted, so a test knows exactly
what it injected:

- ``drop_submit_responses(n)``: the next n ``submit`` calls are applied, then the
  connection is closed without an answer (the "lost response" case).
- ``delay_responses(seconds, count=None)``: answer late (every request, or the next
  ``count``), to exercise client timeouts.
- ``reject_submits(n, code)``: the next n submits are answered with ``code`` and not
  applied, whatever the code's class.
- ``partition(seconds)``: refuse connections (the listening socket is closed, so clients
  see "connection refused") until the period ends or ``heal()``.
- ``stall_closing()`` / ``resume_closing()``: stop closing ledgers, both on the timer and
  through ``ledger_accept`` (which then answers ``notSynced``).
- ``lagging_server(ledgers_behind, share)``: a second server behind the same URL, that
  many validated ledgers behind, answers ``share`` of the reads (``lagging.py``), as
  behind a public endpoint's load balancer. The choice is deterministic: read n goes to
  the lagging server when floor((n + 1) * share) > floor(n * share), so with share 1/2
  every other read is stale, the first one fresh.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from adapters.localnet.xrpl import codes

MAX_LEDGERS_BEHIND = 200  # within the 256 ledger states the node keeps


@dataclass(frozen=True)
class Rejection:
    code: str


@dataclass
class _Lagging:
    ledgers_behind: int
    share: Fraction
    reads: int = 0
    stale_reads: int = 0

    def take(self) -> bool:
        """Whether the next read goes to the lagging server (and count it)."""
        before = math.floor(self.reads * self.share)
        self.reads += 1
        stale = math.floor(self.reads * self.share) > before
        self.stale_reads += stale
        return stale


class FaultPlan:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drop_submit_responses = 0
        self._reject: list[str] = []
        self._delay_s = 0.0
        self._delay_count: int | None = None
        self._partition_until: float | None = None
        self._closing_stalled = False
        self._partition_listeners: list[Any] = []
        self._lagging: _Lagging | None = None

    # --- configuring ----------------------------------------------------------------

    def drop_submit_responses(self, count: int = 1) -> None:
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            self._drop_submit_responses = count

    def reject_submits(self, count: int, code: str) -> None:
        if not codes.is_known(code) or code == "tesSUCCESS":
            raise ValueError(f"not a failure result code: {code}")
        with self._lock:
            self._reject = [code] * count

    def delay_responses(self, seconds: float, count: int | None = None) -> None:
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        with self._lock:
            self._delay_s = seconds
            self._delay_count = count

    def partition(self, seconds: float) -> None:
        """Refuse connections for ``seconds`` from now."""
        if seconds <= 0:
            raise ValueError("partition length must be positive")
        with self._lock:
            self._partition_until = time.monotonic() + seconds
            listeners = list(self._partition_listeners)
        for listener in listeners:
            listener()

    def heal(self) -> None:
        with self._lock:
            self._partition_until = None
            listeners = list(self._partition_listeners)
        for listener in listeners:
            listener()

    def stall_closing(self) -> None:
        with self._lock:
            self._closing_stalled = True

    def resume_closing(self) -> None:
        with self._lock:
            self._closing_stalled = False

    def lagging_server(self, ledgers_behind: int, share: float | Fraction = 1) -> None:
        """Put a server ``ledgers_behind`` validated ledgers behind the URL, answering
        ``share`` (0 < share <= 1) of the reads from now on."""
        if isinstance(ledgers_behind, bool) or not 1 <= ledgers_behind <= MAX_LEDGERS_BEHIND:
            raise ValueError(f"ledgers_behind must be from 1 to {MAX_LEDGERS_BEHIND}")
        fraction = Fraction(str(share)) if isinstance(share, float) else Fraction(share)
        if not 0 < fraction <= 1:
            raise ValueError("share must be above 0 and at most 1")
        with self._lock:
            self._lagging = _Lagging(ledgers_behind, fraction.limit_denominator(1000))

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._lagging = None
            self._drop_submit_responses = 0
            self._reject = []
            self._delay_s = 0.0
            self._delay_count = None
            self._closing_stalled = False
        self.heal()

    # --- consulted by the server ----------------------------------------------------

    def on_partition_change(self, listener: Any) -> None:
        with self._lock:
            self._partition_listeners.append(listener)

    def partition_remaining_s(self) -> float:
        with self._lock:
            if self._partition_until is None:
                return 0.0
            remaining = self._partition_until - time.monotonic()
            if remaining <= 0:
                self._partition_until = None
                return 0.0
            return remaining

    @property
    def closing_stalled(self) -> bool:
        with self._lock:
            return self._closing_stalled

    def take_lagging_read(self) -> int | None:
        """For one read: how many ledgers behind its server is, or None if fresh."""
        with self._lock:
            if self._lagging is None or not self._lagging.take():
                return None
            return self._lagging.ledgers_behind

    def take_rejection(self) -> Rejection | None:
        with self._lock:
            if not self._reject:
                return None
            return Rejection(self._reject.pop(0))

    def take_drop(self) -> bool:
        with self._lock:
            if self._drop_submit_responses <= 0:
                return False
            self._drop_submit_responses -= 1
            return True

    def take_delay_s(self) -> float:
        with self._lock:
            if self._delay_s <= 0:
                return 0.0
            if self._delay_count is not None:
                if self._delay_count <= 0:
                    return 0.0
                self._delay_count -= 1
            return self._delay_s

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "drop_submit_responses": self._drop_submit_responses,
                "reject_submits": list(self._reject),
                "delay_s": self._delay_s,
                "delay_count": self._delay_count,
                "closing_stalled": self._closing_stalled,
                "lagging_server": None
                if self._lagging is None
                else {
                    "ledgers_behind": self._lagging.ledgers_behind,
                    "share": str(self._lagging.share),
                    "stale_reads": self._lagging.stale_reads,
                },
            }
