"""One resilience mechanism for every chain: a circuit breaker and bounded retries.

Each chain gets one ``ChainGuard``. Only transport failures (``TransportError``:
refused connections, timeouts, 5xx) count against the breaker and are retried; a ledger
that answers with a rejection answered, and that is a result, not a fault. The breaker
is pybreaker's (closed -> open after ``fail_max`` consecutive failures -> half-open
after ``reset_timeout_s`` -> closed on a success); retries are tenacity's, exponential
with jitter. Breaker state is readable for health, metrics and the CLI, and an admin
can reset it.

Calls run side by side. pybreaker holds its lock for the whole of a call it wraps, so
one guard would let one ledger call at a time through a whole process (a Horizon
submit waits about a ledger close): every worker thread queued behind it. The guard
instead asks the breaker's state before a call (open and not yet due for a trial:
``BreakerOpen`` without calling) and then replays the call's outcome through the
breaker, which counts it and opens, half-opens or closes as pybreaker decides. What
this loosens: while half-open, calls that started together may all be trials, not
just one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar, cast

import pybreaker
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from adapters.errors import BreakerOpen, TransportError

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResiliencePolicy:
    #: consecutive transport failures that open the breaker
    fail_max: int = 5
    #: how long the breaker stays open before letting one trial call through
    reset_timeout_s: float = 30.0
    #: attempts per call, the first included
    attempts: int = 4
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0


class _StateLog(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old: Any, new: Any) -> None:
        log.warning("circuit breaker %s: %s -> %s", cb.name, old.name, new.name)


@dataclass(frozen=True)
class BreakerState:
    chain: str
    #: pybreaker's name: ``closed``, ``open`` or ``half-open``
    state: str
    consecutive_failures: int
    #: when the breaker last opened (aware, UTC; the breaker's own clock), if ever
    opened_at: datetime | None = None


class ChainGuard:
    """Runs calls to one chain through its breaker, retrying transport failures."""

    def __init__(
        self,
        chain: str,
        policy: ResiliencePolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.chain = chain
        self.policy = policy or ResiliencePolicy()
        self._sleep = sleep
        # kept to read when the breaker opened; the default storage, made explicit
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=self.policy.fail_max,
            reset_timeout=self.policy.reset_timeout_s,
            # anything but a transport failure is an answer from the ledger
            exclude=[lambda exc: not isinstance(exc, TransportError)],
            listeners=[_StateLog()],
            name=chain,
            throw_new_error_on_trip=False,
            state_storage=self._storage,
        )

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` through the breaker, retrying ``TransportError`` with backoff.

        Raises ``BreakerOpen`` without calling ``fn`` while the breaker is open, and the
        last ``TransportError`` when the attempts are spent. ``fn`` must be safe to
        repeat (a lookup, or resending an already signed transaction).
        """
        retrying = Retrying(
            stop=stop_after_attempt(self.policy.attempts),
            wait=wait_exponential(
                multiplier=self.policy.backoff_initial_s, max=self.policy.backoff_max_s
            )
            + wait_random(0, self.policy.backoff_initial_s),
            retry=retry_if_exception(
                lambda exc: isinstance(exc, TransportError) and not isinstance(exc, BreakerOpen)
            ),
            sleep=self._sleep,
            reraise=True,
        )
        return cast(T, retrying(self._once, fn, *args, **kwargs))

    def call_once(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` through the breaker once, without retries."""
        return self._once(fn, *args, **kwargs)

    def _once(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._refusing():
            raise BreakerOpen(f"{self.chain}: circuit breaker open")
        try:
            result: T = fn(*args, **kwargs)
        except Exception as exc:
            self._record(exc)
            raise
        self._record(None)
        return result

    def _refusing(self) -> bool:
        """Open, and its reset timeout not yet passed (pybreaker's own rule and clock:
        past it, the next call through the breaker is a trial)."""
        if self._breaker.current_state != pybreaker.STATE_OPEN:
            return False
        opened_at = self._storage.opened_at
        if opened_at is None:
            return False
        due = opened_at + timedelta(seconds=self.policy.reset_timeout_s)
        return datetime.now(UTC) < due

    def _record(self, failure: Exception | None) -> None:
        """Count an outcome: pybreaker's lock is held only for this replay. A breaker
        that opened meanwhile refuses the replay (CircuitBreakerError); the outcome is
        the caller's either way."""

        def replay() -> None:
            if failure is not None:
                raise failure

        # out comes the replayed failure itself, or CircuitBreakerError
        with contextlib.suppress(Exception):
            self._breaker.call(replay)

    @property
    def state(self) -> BreakerState:
        return BreakerState(
            chain=self.chain,
            state=str(self._breaker.current_state),
            consecutive_failures=int(self._breaker.fail_counter),
            opened_at=self._storage.opened_at,
        )

    def reset(self) -> None:
        """Close the breaker (an admin action after the ledger is known to be back)."""
        self._breaker.close()
