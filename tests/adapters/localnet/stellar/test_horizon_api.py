"""Horizon's REST surface: paging, lookups, fee stats, and bad input."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from stellar_sdk import Asset, Keypair, Server
from stellar_sdk.exceptions import BadRequestError, NotFoundError

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import build, native_balance, sign_all

Fund = Callable[[], Keypair]
PROBLEM = "https://stellar.org/horizon-errors/"


def test_ledgers_paging_order_limit_cursor(server: Server, node: StellarNode) -> None:
    for _ in range(4):
        node.close_ledger()
    latest = node.latest_ledger
    newest = server.ledgers().order(desc=True).limit(2).call()
    assert [r["sequence"] for r in newest["_embedded"]["records"]] == [latest, latest - 1]
    following = requests.get(newest["_links"]["next"]["href"], timeout=10).json()
    assert [r["sequence"] for r in following["_embedded"]["records"]] == [latest - 2, latest - 3]
    oldest = server.ledgers().limit(3).call()["_embedded"]["records"]
    assert [r["sequence"] for r in oldest] == [1, 2, 3]
    assert oldest[1]["prev_hash"] == oldest[0]["hash"]
    after = server.ledgers().cursor(oldest[1]["paging_token"]).limit(1).call()
    assert [r["sequence"] for r in after["_embedded"]["records"]] == [3]
    one = server.ledgers().ledger(2).call()
    assert one["hash"] == oldest[1]["hash"]
    assert one["base_fee_in_stroops"] == 100 and one["base_reserve_in_stroops"] == 5_000_000
    with pytest.raises(NotFoundError):
        server.ledgers().ledger(latest + 10).call()


def test_ledger_close_times_strictly_increase(server: Server, node: StellarNode) -> None:
    for _ in range(3):
        node.close_ledger()  # faster than the clock ticks: close times still grow
    records = server.ledgers().order(desc=True).limit(3).call()["_embedded"]["records"]
    times = [r["closed_at"] for r in reversed(records)]
    assert times == sorted(set(times))


def test_account_transactions_and_unknown_hash(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    envelope = sign_all(
        build(server, node, alice).append_payment_op(bob.public_key, Asset.native(), "3").build(),
        alice,
    )
    server.submit_transaction(envelope)
    for account in (alice, bob):  # the payer and the payee both see it
        hashes = [
            r["hash"]
            for r in server.transactions()
            .for_account(account.public_key)
            .call()["_embedded"]["records"]
        ]
        assert envelope.hash_hex() in hashes
    with pytest.raises(NotFoundError) as missing:
        server.transactions().transaction("00" * 32).call()
    assert missing.value.type == PROBLEM + "not_found"
    with pytest.raises(NotFoundError):
        server.accounts().account_id(Keypair.random().public_key).call()


def test_fee_stats_and_base_fee(server: Server, node: StellarNode, fund: Fund) -> None:
    fund()
    stats = server.fee_stats().call()
    assert stats["last_ledger_base_fee"] == "100"
    assert stats["fee_charged"]["min"] == "100"
    assert int(stats["last_ledger"]) == node.latest_ledger
    assert server.fetch_base_fee() == 100


def test_bad_input_gets_problems_and_leaves_state_alone(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice = fund()
    before = native_balance(server, alice.public_key)
    base = node.base_url
    bad_xdr = requests.post(f"{base}/transactions", data={"tx": "not-xdr!"}, timeout=10)
    assert bad_xdr.status_code == 400
    assert bad_xdr.headers["Content-Type"].startswith("application/problem+json")
    assert bad_xdr.json()["type"] == PROBLEM + "transaction_malformed"
    assert (
        requests.post(f"{base}/transactions", data={}, timeout=10).json()["type"]
        == PROBLEM + "transaction_malformed"
    )
    huge = requests.post(f"{base}/transactions", data={"tx": "A" * 300_000}, timeout=10)
    assert huge.status_code == 400
    unknown = requests.get(f"{base}/no/such/route", timeout=10)
    assert (unknown.status_code, unknown.json()["type"]) == (404, PROBLEM + "not_found")
    bad_limit = requests.get(f"{base}/ledgers", params={"limit": "500"}, timeout=10)
    assert bad_limit.status_code == 400
    assert bad_limit.json()["extras"]["invalid_field"] == "limit"
    with pytest.raises(BadRequestError):
        server.claimable_balances().for_claimant("not-an-account").call()
    json_body = requests.post(f"{base}/transactions", json={"tx": "x"}, timeout=10)
    assert json_body.status_code == 415
    # The node is still serving and nothing moved.
    assert native_balance(server, alice.public_key) == before
    assert server.root().call()["history_latest_ledger"] == node.latest_ledger


def test_memo_required_check_reads_account_data(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    """stellar-sdk's submit_transaction reads destination data (SEP-29) before sending."""
    from stellar_sdk.sep.exceptions import AccountRequiresMemoError

    alice, exchange = fund(), fund()
    server.submit_transaction(
        sign_all(
            build(server, node, exchange)
            .append_manage_data_op("config.memo_required", b"1")
            .build(),
            exchange,
        )
    )
    envelope = sign_all(
        build(server, node, alice)
        .append_payment_op(exchange.public_key, Asset.native(), "1")
        .build(),
        alice,
    )
    with pytest.raises(AccountRequiresMemoError):
        server.submit_transaction(envelope)
