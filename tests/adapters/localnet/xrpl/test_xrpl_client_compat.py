"""xrpl-py, unchanged, against the node: autofill, reliable submission, faucet, helpers."""

from __future__ import annotations

from xrpl.account import does_account_exist, get_balance, get_next_valid_seq_number
from xrpl.clients import JsonRpcClient
from xrpl.ledger import get_fee
from xrpl.models.requests import AccountTx
from xrpl.models.transactions import Payment
from xrpl.transaction import submit_and_wait
from xrpl.wallet import Wallet, generate_faucet_wallet

from adapters.localnet.xrpl import XrplNode

GENESIS = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"


def test_submit_and_wait_with_autofill_on_a_closing_node() -> None:
    with XrplNode(close_interval_s=0.2) as node:
        client = JsonRpcClient(node.url)
        alice = Wallet.create()
        node.fund(alice.classic_address, 50)
        response = submit_and_wait(
            Payment(account=alice.classic_address, destination=GENESIS, amount="1234"),
            client,
            alice,
        )
        assert response.result["validated"] is True
        assert response.result["meta"]["TransactionResult"] == "tesSUCCESS"
        assert get_balance(alice.classic_address, client) == 50_000_000 - 1234 - 10


def test_faucet_endpoint_works_with_generate_faucet_wallet(node) -> None:
    client = JsonRpcClient(node.url)
    wallet = generate_faucet_wallet(client, faucet_host=node.url)
    assert does_account_exist(wallet.classic_address, client)
    assert get_balance(wallet.classic_address, client) == 1_000 * 1_000_000


def test_account_helpers_and_fee(ledger) -> None:
    alice = ledger.fund()
    assert get_next_valid_seq_number(alice.classic_address, ledger.client) == ledger.next_sequence(
        alice.classic_address
    )
    assert get_fee(ledger.client) == "10"
    assert not does_account_exist(Wallet.create().classic_address, ledger.client)


def test_account_tx_lists_validated_history_newest_first(ledger) -> None:
    alice = ledger.fund()
    first = ledger.submit(
        Payment(account=alice.classic_address, destination=GENESIS, amount="1000"), alice
    )
    second = ledger.submit(
        Payment(account=alice.classic_address, destination=GENESIS, amount="2000"), alice
    )
    result = ledger.request(AccountTx(account=alice.classic_address))
    hashes = [t["hash"] for t in result["transactions"]]
    assert hashes[:2] == [second.tx_hash, first.tx_hash]
    assert len(hashes) == 3  # and the faucet payment that created the account
    assert all(t["validated"] for t in result["transactions"])
    # API v2 (xrpl-py's default) shows a Payment's Amount as DeliverMax only
    assert result["transactions"][0]["tx_json"]["DeliverMax"] == "2000"
    paged = ledger.raw("account_tx", account=alice.classic_address, limit=2, api_version=2)
    assert len(paged["transactions"]) == 2 and "marker" in paged
    rest = ledger.raw(
        "account_tx", account=alice.classic_address, limit=2, marker=paged["marker"], api_version=2
    )
    assert [t["hash"] for t in rest["transactions"]] == hashes[2:]


def test_api_version_1_shapes(ledger) -> None:
    alice = ledger.fund()
    done = ledger.submit(
        Payment(account=alice.classic_address, destination=GENESIS, amount="1000"), alice
    )
    found = ledger.raw("tx", transaction=done.tx_hash, api_version=1)
    assert found["Amount"] == "1000" and found["meta"]["TransactionResult"] == "tesSUCCESS"
    header = ledger.raw("ledger", ledger_index="validated", api_version=1)["ledger"]
    assert isinstance(header["ledger_index"], str)
