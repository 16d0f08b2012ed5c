"""The chain guard: breaker states, what counts as a failure, bounded retries."""

from __future__ import annotations

import threading
import time

import pytest

from adapters.chain import Applied, Expired, Pending, Rejected, Unavailable, is_final
from adapters.errors import BreakerOpen, TransportError
from adapters.resilience import ChainGuard, ResiliencePolicy


class Flaky:
    """A ledger call that fails with a transport error a given number of times."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or TransportError("connection refused")
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def guard(**policy: float) -> tuple[ChainGuard, list[float]]:
    sleeps: list[float] = []
    values = {"fail_max": 3, "reset_timeout_s": 0.2, "attempts": 1, **policy}
    return ChainGuard("xrpl", ResiliencePolicy(**values), sleep=sleeps.append), sleeps  # type: ignore[arg-type]


def test_transport_failures_are_retried_with_growing_backoff() -> None:
    g, sleeps = guard(attempts=4, fail_max=10, backoff_initial_s=0.1)
    call = Flaky(failures=3)
    assert g.call(call) == "ok"
    assert call.calls == 4
    assert len(sleeps) == 3
    assert sleeps[0] < sleeps[2], "backoff grows"


def test_retries_are_bounded() -> None:
    g, _ = guard(attempts=3, fail_max=10)
    call = Flaky(failures=99)
    with pytest.raises(TransportError):
        g.call(call)
    assert call.calls == 3


def test_breaker_opens_after_fail_max_then_fails_fast() -> None:
    g, _ = guard(fail_max=3)
    call = Flaky(failures=99)
    for _ in range(3):
        with pytest.raises(TransportError):
            g.call(call)
    assert g.state.state == "open"
    with pytest.raises(BreakerOpen):
        g.call(call)
    assert call.calls == 3, "an open breaker does not call the ledger"


def test_half_open_success_closes_and_failure_reopens() -> None:
    g, _ = guard(fail_max=2, reset_timeout_s=0.1)
    down = Flaky(failures=99)
    for _ in range(2):
        with pytest.raises(TransportError):
            g.call(down)
    time.sleep(0.15)
    with pytest.raises(TransportError):
        g.call(down)  # the trial call fails: open again
    assert g.state.state == "open"
    time.sleep(0.15)
    assert g.call(Flaky(failures=0)) == "ok"
    assert g.state.state == "closed"
    assert g.state.consecutive_failures == 0


def test_ledger_answers_do_not_count_as_failures() -> None:
    g, _ = guard(fail_max=2, attempts=3)
    rejection = Flaky(failures=99, error=ValueError("tecNO_PERMISSION is an answer"))
    for _ in range(5):
        with pytest.raises(ValueError, match="tecNO_PERMISSION"):
            g.call(rejection)
    assert rejection.calls == 5, "answers are not retried"
    assert g.state.state == "closed"


def test_admin_reset_closes_an_open_breaker() -> None:
    g, _ = guard(fail_max=1, reset_timeout_s=60)
    with pytest.raises(TransportError):
        g.call(Flaky(failures=99))
    assert g.state.state == "open"
    g.reset()
    assert g.call(Flaky(failures=0)) == "ok"


def test_calls_through_one_guard_run_side_by_side() -> None:
    # each call waits for the other to be inside too: one at a time, they never meet
    g, _ = guard(fail_max=2)
    inside = threading.Barrier(2, timeout=5)
    results: list[str] = []

    def call() -> None:
        results.append(g.call(lambda: "ok" if inside.wait() >= 0 else "no"))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == ["ok", "ok"]
    assert not inside.broken


def test_failures_from_concurrent_calls_still_open_the_breaker() -> None:
    g, _ = guard(fail_max=3, reset_timeout_s=60)
    errors: list[Exception] = []

    def failing() -> None:
        try:
            g.call(Flaky(failures=1))
        except TransportError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=failing) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(errors) == 3
    assert g.state.state == "open"
    never = Flaky(failures=0)
    with pytest.raises(BreakerOpen):
        g.call(never)
    assert never.calls == 0, "refused without calling the ledger"


def test_finality_of_outcomes() -> None:
    assert is_final(Applied("h", 5, "L", "tesSUCCESS"))
    assert is_final(Rejected("h", "tecNO_PERMISSION", applied=True))
    assert is_final(Expired("h"))
    assert not is_final(Pending("h"))
    assert not is_final(Unavailable("timeout"))
