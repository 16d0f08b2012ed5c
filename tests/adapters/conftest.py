"""Fixtures for the adapter tests: in-process local networks on ephemeral ports.

One Stellar node serves a whole test module (stopping one takes half a second); tests
stay independent because each creates its own accounts and adapter, reads only ledger
time, and every fault is cleared after each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.localnet.stellar import StellarNode

#: how often the node looks for pending transactions; a submission answers in about this
STELLAR_CLOSE_INTERVAL_S = 0.02
#: Horizon answers 504 after this long without a ledger (30 s on a real Horizon)
STELLAR_SUBMISSION_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def stellar_network() -> Iterator[StellarNode]:
    node = StellarNode(
        close_interval_s=STELLAR_CLOSE_INTERVAL_S,
        submission_timeout_s=STELLAR_SUBMISSION_TIMEOUT_S,
    )
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def stellar_node(stellar_network: StellarNode) -> Iterator[StellarNode]:
    """The module's node, with no fault left over from another test."""
    stellar_network.faults.clear()
    yield stellar_network
    stellar_network.faults.clear()
