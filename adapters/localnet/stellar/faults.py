"""Fault injection for the local Stellar network.

The handle is shared by the in-process API (`node.faults`) and the admin endpoint
(POST /_admin/faults). Each fault imitates something a Horizon client really meets:

- drop_responses(n): the next n submissions are taken, then the connection is closed
  without an answer (a lost response): on POST /transactions once the transaction is
  in a ledger, on POST /transactions_async once it is in the queue (PENDING or
  DUPLICATE; a refused one is answered);
- timeout_responses(n): the next n synchronous submissions (POST /transactions) are
  applied, then answered 504 ("timed out", although the transaction is in a ledger);
  the asynchronous route never waits for a ledger and is not affected;
- reject_submissions(n, code): the next n submissions, on either route, are refused
  without being queued: a Horizon result code such as "tx_insufficient_fee" gives a
  400 transaction_failed (POST /transactions) or a 400 ERROR carrying that result
  (POST /transactions_async), an HTTP status (429, 500, 502, 503) the matching problem;
- delay(seconds, n): the next n requests (all, if n is None) wait before being handled;
- partition(seconds): every request (except /_admin) is refused by resetting the
  connection, for `seconds` or until heal();
- halt_ledgers() / resume_ledgers(): the close timer stops and starts (explicit
  close_ledger() calls still work, so a test stays in control);
- lagging_server(ledgers_behind, every=k | share=p, seed): a second Horizon behind the
  same URL, `ledgers_behind` ledgers behind the first, answers some reads (GET, not
  streams, not friendbot): every k-th one, or each with probability p from a seeded
  RNG. A client can then read a stale answer right after a fresh one, as behind a
  public endpoint's load balancer. Submissions always reach the fresh server.
Partitions and delays are measured on the monotonic wall clock, not ledger time.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

from adapters.localnet.stellar.codes import TX_CODES_BY_NAME

REJECT_HTTP_STATUSES = (429, 500, 502, 503)


class AfterApply(Enum):
    """What happens to the answer of a submission that was applied."""

    ANSWER = "answer"
    DROP = "drop"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Lagging:
    ledgers_behind: int
    every: int | None  # every k-th read is stale, or
    share: float | None  # each read is stale with this probability
    seed: int | None


@dataclass(frozen=True)
class Rejection:
    code: str | int  # a Horizon tx result code name, or an HTTP status


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drop = 0
        self._timeout = 0
        self._rejections: list[Rejection] = []
        self._delay_s = 0.0
        self._delay_count: int | None = 0
        self._partition_until: float | None = None
        self._ledgers_halted = False
        self._lagging: Lagging | None = None
        self._reads = 0
        self._rng = random.Random()  # noqa: S311 - picks stale reads, not keys

    # -- configuring ---------------------------------------------------------------

    def drop_responses(self, count: int = 1) -> None:
        with self._lock:
            self._drop += _positive(count)

    def timeout_responses(self, count: int = 1) -> None:
        with self._lock:
            self._timeout += _positive(count)

    def reject_submissions(self, count: int, code: str | int) -> None:
        if isinstance(code, int):
            if code not in REJECT_HTTP_STATUSES:
                raise ValueError(f"HTTP status must be one of {REJECT_HTTP_STATUSES}")
        elif code not in TX_CODES_BY_NAME or code in ("tx_success", "tx_failed"):
            raise ValueError(f"unknown or unsuitable transaction result code {code!r}")
        with self._lock:
            self._rejections.extend([Rejection(code)] * _positive(count))

    def delay(self, seconds: float, count: int | None = None) -> None:
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        with self._lock:
            self._delay_s = seconds
            self._delay_count = count

    def partition(self, seconds: float | None = None) -> None:
        """Refuse requests for `seconds` (None: until heal())."""
        with self._lock:
            self._partition_until = float("inf") if seconds is None else time.monotonic() + seconds

    def heal(self) -> None:
        with self._lock:
            self._partition_until = None

    def halt_ledgers(self) -> None:
        with self._lock:
            self._ledgers_halted = True

    def resume_ledgers(self) -> None:
        with self._lock:
            self._ledgers_halted = False

    def lagging_server(
        self,
        ledgers_behind: int,
        *,
        every: int | None = None,
        share: float | None = None,
        seed: int | None = None,
    ) -> None:
        """Put a lagging server behind the URL (see the module docstring). Without
        `every` or `share`, every second read goes to it."""
        if ledgers_behind < 1:
            raise ValueError("ledgers_behind must be >= 1")
        if every is not None and share is not None:
            raise ValueError("give every or share, not both")
        if every is None and share is None:
            every = 2
        if every is not None and every < 1:
            raise ValueError("every must be >= 1")
        if share is not None and not 0.0 <= share <= 1.0:
            raise ValueError("share must be between 0 and 1")
        with self._lock:
            self._lagging = Lagging(ledgers_behind, every, share, seed)
            self._reads = 0
            self._rng = random.Random(seed)  # noqa: S311 - a reproducible test fault

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._lagging = None
            self._drop = self._timeout = 0
            self._rejections.clear()
            self._delay_s, self._delay_count = 0.0, 0
            self._partition_until = None
            self._ledgers_halted = False

    # -- consulted by the node -----------------------------------------------------------

    @property
    def partitioned(self) -> bool:
        with self._lock:
            return self._partition_until is not None and time.monotonic() < self._partition_until

    @property
    def ledgers_halted(self) -> bool:
        with self._lock:
            return self._ledgers_halted

    def take_delay(self) -> float:
        with self._lock:
            if self._delay_count is not None:
                if self._delay_count <= 0:
                    return 0.0
                self._delay_count -= 1
            return self._delay_s

    def take_lagging_read(self) -> int | None:
        """For a read: how many ledgers behind the server answering it is (None: fresh)."""
        with self._lock:
            lag = self._lagging
            if lag is None:
                return None
            self._reads += 1
            if lag.every is not None:
                stale = self._reads % lag.every == 0
            else:
                stale = self._rng.random() < (lag.share or 0.0)
            return lag.ledgers_behind if stale else None

    def take_rejection(self) -> Rejection | None:
        with self._lock:
            return self._rejections.pop(0) if self._rejections else None

    def take_after_apply(self) -> AfterApply:
        with self._lock:
            if self._drop:
                self._drop -= 1
                return AfterApply.DROP
            if self._timeout:
                self._timeout -= 1
                return AfterApply.TIMEOUT
            return AfterApply.ANSWER

    def take_drop(self) -> bool:
        """Whether to drop this answer (the asynchronous route: no 504 there)."""
        with self._lock:
            if self._drop:
                self._drop -= 1
                return True
            return False

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            remaining = None
            if self._partition_until is not None:
                remaining = max(0.0, self._partition_until - time.monotonic())
            return {
                "drop_responses": self._drop,
                "timeout_responses": self._timeout,
                "rejections": [r.code for r in self._rejections],
                "delay_s": self._delay_s,
                "delay_count": self._delay_count,
                "partition_remaining_s": None if remaining == float("inf") else remaining,
                "partitioned": remaining is not None and remaining > 0,
                "ledgers_halted": self._ledgers_halted,
                "lagging_server": None
                if self._lagging is None
                else {
                    "ledgers_behind": self._lagging.ledgers_behind,
                    "every": self._lagging.every,
                    "share": self._lagging.share,
                    "seed": self._lagging.seed,
                    "reads": self._reads,
                },
            }

    def configure(self, command: dict[str, Any]) -> None:
        """Apply one admin command: {"action": "...", ...}; raises ValueError if malformed."""
        action = command.get("action")
        count = int(command.get("count", 1))
        match action:
            case "drop_responses":
                self.drop_responses(count)
            case "timeout_responses":
                self.timeout_responses(count)
            case "reject_submissions":
                code = command.get("code")
                if not isinstance(code, (str, int)):
                    raise ValueError("reject_submissions needs a code")
                self.reject_submissions(count, code)
            case "delay":
                raw_count = command.get("count")
                self.delay(
                    float(command.get("seconds", 0)), None if raw_count is None else int(raw_count)
                )
            case "partition":
                seconds = command.get("seconds")
                self.partition(None if seconds is None else float(seconds))
            case "heal":
                self.heal()
            case "halt_ledgers":
                self.halt_ledgers()
            case "resume_ledgers":
                self.resume_ledgers()
            case "lagging_server":
                self.lagging_server(
                    int(command.get("ledgers_behind", 1)),
                    every=_optional_int(command.get("every")),
                    share=None if command.get("share") is None else float(command["share"]),
                    seed=_optional_int(command.get("seed")),
                )
            case "clear":
                self.clear()
            case _:
                raise ValueError(f"unknown fault action {action!r}")


def _positive(count: int) -> int:
    if count < 1:
        raise ValueError("count must be >= 1")
    return count


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)
