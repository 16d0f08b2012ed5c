"""State survives a restart when the node has a data directory."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import requests
from stellar_sdk import Asset, Keypair, Server
from stellar_sdk.client.requests_client import RequestsClient

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import build, native_balance, sign_all


def test_restart_keeps_accounts_ledgers_and_transactions(tmp_path: Path) -> None:
    alice, bob = Keypair.random(), Keypair.random()
    first = StellarNode(close_interval_s=0.02, data_dir=tmp_path)
    first.start()
    try:
        server = Server(first.base_url, client=RequestsClient(num_retries=0))
        for keypair in (alice, bob):
            assert requests.get(
                f"{first.base_url}/friendbot", {"addr": keypair.public_key}, timeout=10
            ).ok
        envelope = sign_all(
            build(server, first, alice)
            .append_payment_op(bob.public_key, Asset.native(), "12.5")
            .append_manage_data_op("k", b"v")
            .build(),
            alice,
        )
        applied = server.submit_transaction(envelope)
        latest = first.latest_ledger
        server.close()
    finally:
        first.stop()

    second = StellarNode(close_interval_s=0, data_dir=tmp_path)
    second.start()
    try:
        server = Server(second.base_url, client=RequestsClient(num_retries=0))
        assert native_balance(server, bob.public_key) == Decimal("10012.5")
        assert server.accounts().account_id(alice.public_key).call()["data"] == {"k": "dg=="}
        assert (
            server.transactions().transaction(envelope.hash_hex()).call()["ledger"]
            == applied["ledger"]
        )
        assert second.latest_ledger == latest
        assert second.close_ledger() == latest + 1
        older = server.ledgers().ledger(latest).call()
        assert server.ledgers().ledger(latest + 1).call()["prev_hash"] == older["hash"]
        server.close()
    finally:
        second.stop()
