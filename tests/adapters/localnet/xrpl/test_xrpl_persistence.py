"""State survives a restart when the node has a data directory."""

from __future__ import annotations

from xrpl.account import get_balance
from xrpl.clients import JsonRpcClient
from xrpl.models.requests import Ledger, Tx
from xrpl.models.transactions import Payment
from xrpl.transaction import sign
from xrpl.wallet import Wallet

from adapters.localnet.xrpl import XrplNode

GENESIS = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"


def test_restart_keeps_ledgers_accounts_and_transactions(tmp_path) -> None:
    alice = Wallet.create()
    with XrplNode(data_dir=tmp_path) as node:
        node.fund(alice.classic_address, 100)
        client = JsonRpcClient(node.url)
        payment = sign(
            Payment(
                account=alice.classic_address,
                destination=GENESIS,
                amount="1000",
                fee="10",
                sequence=node.chain.open_sequence - 1,
            ),
            alice,
        )
        outcome = node.chain.submit(payment.blob())
        assert outcome.engine_result == "tesSUCCESS"
        node.advance_time(500)
        closed = node.close_ledger()
        header_before = client.request(Ledger(ledger_index="validated")).result["ledger"]
    assert (tmp_path / "ledger.json").exists()

    with XrplNode(data_dir=tmp_path) as node:
        client = JsonRpcClient(node.url)
        header = client.request(Ledger(ledger_index="validated")).result["ledger"]
        assert header == header_before
        assert node.chain.last_closed.header.hash == closed.header.hash
        found = client.request(Tx(transaction=payment.get_hash())).result
        assert found["validated"] and found["meta"]["TransactionResult"] == "tesSUCCESS"
        assert get_balance(alice.classic_address, client) == 100_000_000 - 1_010
        nxt = node.close_ledger()
        assert nxt.header.parent_hash == closed.header.hash
        assert nxt.header.close_time > closed.header.close_time
