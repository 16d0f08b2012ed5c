"""Close timing of the timed closer, and why it matters for ledger time."""

from __future__ import annotations

import time

import pytest

from adapters.localnet.xrpl import XrplNode


def test_idle_ledgers_wait_for_the_idle_interval_busy_ones_close_at_once() -> None:
    # an idle interval far longer than the test: no empty ledger may close during it
    with XrplNode(close_interval_s=0.02, idle_interval_s=3600) as node:
        time.sleep(0.3)
        idle_at = node.chain.last_closed.header.sequence
        time.sleep(0.3)
        assert node.chain.last_closed.header.sequence == idle_at
        node.fund()  # the faucet answers once its payment is in a validated ledger
        busy_at = node.chain.last_closed.header.sequence
        assert busy_at > idle_at
        time.sleep(0.3)
        assert node.chain.last_closed.header.sequence == busy_at


def test_each_close_moves_ledger_time_at_least_a_second() -> None:
    """rippled's effCloseTime: max(rounded close time, parent close time + 1 s). Closing
    empty ledgers on every tick is what pushes ledger time ahead of the wall clock."""
    with XrplNode(close_interval_s=0) as node:
        start = node.chain.last_closed.header.close_time
        for _ in range(40):
            node.close_ledger()
        assert node.chain.last_closed.header.close_time >= start + 40


def test_idle_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_interval_s"):
        XrplNode(close_interval_s=0.05, idle_interval_s=0)
