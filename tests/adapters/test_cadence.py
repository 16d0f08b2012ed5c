"""HeadWatch: one shared read of a chain's validated head, and when the next is due."""

from __future__ import annotations

import math

import pytest

from adapters.cadence import HeadWatch


class Net:
    """A ledger that closes every ``interval_s`` from ``phase_s``, on a manual clock."""

    def __init__(self, interval_s: float, phase_s: float = 0.0) -> None:
        self.now = 0.0
        self.interval_s = interval_s
        self.phase_s = phase_s
        self.reads = 0

    def index(self) -> int:
        return max(0, math.floor((self.now - self.phase_s) / self.interval_s))

    def read(self) -> int:
        self.reads += 1
        return self.index()


def watch(net: Net, fresh_s: float = 0.05) -> HeadWatch[int]:
    return HeadWatch(net.read, lambda index: index, fresh_s=fresh_s, monotonic=lambda: net.now)


def test_a_read_within_fresh_s_is_shared_and_one_after_it_is_not() -> None:
    net = Net(1.0)
    w = watch(net)
    net.now = 10.2
    assert w.get() == 10
    net.now = 10.24
    assert w.get() == 10
    assert net.reads == 1
    net.now = 10.26
    assert w.get() == 10
    assert net.reads == 2


def test_the_head_never_moves_back() -> None:
    net = Net(1.0)
    w = watch(net, fresh_s=0)
    net.now = 5.5
    assert w.get() == 5
    assert w.observe(3) == 5  # a server behind a balancer answered an older ledger
    assert w.get() == 5


def test_no_cadence_before_two_ledgers_were_seen() -> None:
    net = Net(1.0)
    w = watch(net, fresh_s=0)
    net.now = 3.3
    w.get()
    assert w.next_ledger_in_s() is None
    assert w.interval_s is None


@pytest.mark.parametrize("interval_s", [0.5, 1.0, 4.0])
def test_polling_at_the_predicted_times_tracks_the_closes_without_drift(
    interval_s: float,
) -> None:
    """A poller that looks only when told (the worst case: no other reads) finds most
    new ledgers at its first look, shortly after they closed, for hundreds of closes:
    the estimate leans early, so now and then a look comes just too soon and the
    poller looks again (about one close in six here) instead of drifting late."""
    net = Net(interval_s, phase_s=0.37)
    w = watch(net, fresh_s=0)
    # a few reads at arbitrary times to learn from
    for t in (0.4, 0.9 * interval_s + 0.4, 1.7 * interval_s + 0.4, 2.6 * interval_s + 0.4):
        net.now = t
        w.get()
    misses = 0
    lags = []
    for _ in range(300):
        before = w.get()
        wait = w.next_ledger_in_s()
        assert wait is not None and wait > 0
        net.now += wait
        seen = w.get()
        if seen == before:
            misses += 1  # looked too early: the poller asks again shortly
            while w.get() == before:
                net.now += 0.05 * interval_s
        closed_at = net.phase_s + net.index() * interval_s
        lags.append(net.now - closed_at)
    assert w.interval_s == pytest.approx(interval_s, rel=0.05)
    assert misses <= 75
    # found within a small part of an interval after each close, on average and at worst
    assert sum(lags) / len(lags) < 0.15 * interval_s
    assert max(lags[50:]) < 0.3 * interval_s


def test_an_overdue_close_is_looked_for_again_soon() -> None:
    net = Net(1.0)
    w = watch(net, fresh_s=0)
    for t in (0.1, 1.1, 2.1, 3.1):
        net.now = t
        w.get()
    net.now = 3.1 + 5.0  # the network stalled: five closes overdue, no new ledger read
    due = w.next_ledger_in_s()
    assert due is not None
    assert due < 0.5
