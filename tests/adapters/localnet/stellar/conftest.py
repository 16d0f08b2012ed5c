"""Fixtures for the local Stellar network tests.

Every test gets a fresh node on an ephemeral port, driven by stellar-sdk's `Server`
exactly as a client of real Horizon would drive it. The node closes a ledger as soon
as a transaction is pending (close_interval_s is a short polling period), so a
submission answers in tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests
from stellar_sdk import Keypair, Server
from stellar_sdk.client.requests_client import RequestsClient

from adapters.localnet.stellar import StellarNode

POLL_INTERVAL_S = 0.02


@pytest.fixture
def node() -> Iterator[StellarNode]:
    stellar = StellarNode(close_interval_s=POLL_INTERVAL_S, submission_timeout_s=5.0)
    stellar.start()
    try:
        yield stellar
    finally:
        stellar.stop()


@pytest.fixture
def server(node: StellarNode) -> Iterator[Server]:
    # No client-side retries: a test must see exactly what the node answered.
    with Server(node.base_url, client=RequestsClient(num_retries=0)) as horizon:
        yield horizon


@pytest.fixture
def fund(server: Server, node: StellarNode) -> Callable[[], Keypair]:
    """Create a new account holding friendbot's 10,000 XLM."""

    def _fund() -> Keypair:
        keypair = Keypair.random()
        response = requests.get(
            f"{node.base_url}/friendbot", {"addr": keypair.public_key}, timeout=10
        )
        assert response.status_code == 200, response.text
        return keypair

    return _fund
