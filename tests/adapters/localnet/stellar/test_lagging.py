"""The lagging-server fault: a second Horizon, some ledgers behind, behind the same URL.

A public Horizon endpoint is several servers behind a load balancer, and one may be
behind the others (its ingestion lags). Each answer is then internally consistent,
but two reads in a row may come from different ledgers. Horizon serves every read
from its own database as of its latest ingested ledger (actions: root, account,
transaction; `history_latest_ledger` on the root and the Latest-Ledger header say
which), which is what the stale server reproduces here.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
import requests
from stellar_sdk import Asset, Keypair, Server
from stellar_sdk.exceptions import NotFoundError
from stellar_sdk.transaction_envelope import TransactionEnvelope

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import build, sign_all

Fund = Callable[[], Keypair]


def pay(server: Server, node: StellarNode, source: Keypair, dest: Keypair) -> TransactionEnvelope:
    envelope = sign_all(
        build(server, node, source).append_payment_op(dest.public_key, Asset.native(), "7").build(),
        source,
    )
    server.submit_transaction(envelope)
    return envelope


def native(doc: dict[str, object]) -> Decimal:
    balances = doc["balances"]
    assert isinstance(balances, list)
    return next(Decimal(b["balance"]) for b in balances if b["asset_type"] == "native")


def test_a_stale_answer_follows_a_fresh_one(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob = fund(), fund()
    before = server.accounts().account_id(alice.public_key).call()
    envelope = pay(server, node, alice, bob)
    node.faults.halt_ledgers()  # hold the ledger still while reading
    latest = node.latest_ledger
    applied_in = server.transactions().transaction(envelope.hash_hex()).call()["ledger"]
    # Just behind the payment's ledger (an empty ledger may have closed since).
    behind = latest - applied_in + 1
    node.faults.lagging_server(behind, every=2)  # reads 2, 4, 6... are stale

    fresh_tx = server.transactions().transaction(envelope.hash_hex()).call()
    assert fresh_tx["ledger"] == applied_in
    with pytest.raises(NotFoundError):  # the lagging server has not seen that ledger
        server.transactions().transaction(envelope.hash_hex()).call()

    fresh = server.accounts().account_id(alice.public_key).call()
    stale = server.accounts().account_id(alice.public_key).call()
    assert int(fresh["sequence"]) == int(before["sequence"]) + 1
    assert stale["sequence"] == before["sequence"], "the old sequence"
    assert native(stale) == native(before) and native(fresh) < native(before)

    fresh_root = server.root().call()
    stale_root = server.root().call()
    assert fresh_root["history_latest_ledger"] == latest
    assert stale_root["history_latest_ledger"] == latest - behind
    assert stale_root["core_latest_ledger"] == latest - behind


def test_a_stale_server_is_consistent_with_itself(node: StellarNode, fund: Fund) -> None:
    fund()
    node.faults.halt_ledgers()
    latest = node.latest_ledger
    node.faults.lagging_server(2, every=1)  # every read is stale
    reply = requests.get(f"{node.base_url}/ledgers", params={"order": "desc"}, timeout=5)
    newest = reply.json()["_embedded"]["records"][0]
    assert newest["sequence"] == latest - 2
    assert reply.headers["Latest-Ledger"] == str(latest - 2)
    missing = requests.get(f"{node.base_url}/ledgers/{latest}", timeout=5)
    assert missing.status_code == 404
    transactions = requests.get(
        f"{node.base_url}/transactions", params={"order": "desc"}, timeout=5
    ).json()["_embedded"]["records"]
    assert all(t["ledger"] <= latest - 2 for t in transactions)
    stats = requests.get(f"{node.base_url}/fee_stats", timeout=5).json()
    assert stats["last_ledger"] == str(latest - 2)


def test_submissions_go_to_the_fresh_server(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob = fund(), fund()
    envelope = sign_all(
        build(server, node, alice).append_payment_op(bob.public_key, Asset.native(), "1").build(),
        alice,
    )
    node.faults.lagging_server(3, every=1)  # every read is stale from now on
    form = {"tx": envelope.to_xdr()}
    reply = requests.post(f"{node.base_url}/transactions", data=form, timeout=10)
    assert reply.status_code == 200, reply.text  # applied on the fresh server
    assert reply.json()["hash"] == envelope.hash_hex()
    # ...while a read right after still comes from the server three ledgers behind.
    stale = requests.get(f"{node.base_url}/transactions/{envelope.hash_hex()}", timeout=5)
    assert stale.status_code == 404


def test_a_seeded_share_is_reproducible(node: StellarNode) -> None:
    def pattern() -> list[bool]:
        node.faults.lagging_server(1, share=0.5, seed=7)
        return [node.faults.take_lagging_read() is not None for _ in range(40)]

    first, second = pattern(), pattern()
    assert first == second
    assert any(first) and not all(first)


def test_the_admin_route_sets_describes_and_clears_it(node: StellarNode) -> None:
    url = f"{node.base_url}/_admin/faults"
    command = {"action": "lagging_server", "ledgers_behind": 2, "every": 3}
    described = requests.post(url, json=command, timeout=5).json()
    assert described["lagging_server"] == {
        "ledgers_behind": 2,
        "every": 3,
        "share": None,
        "seed": None,
        "reads": 0,
    }
    assert requests.post(url, json={"action": "clear"}, timeout=5).json()["lagging_server"] is None


@pytest.mark.parametrize(
    "command",
    [
        {"action": "lagging_server", "ledgers_behind": 0},
        {"action": "lagging_server", "ledgers_behind": "x"},
        {"action": "lagging_server", "ledgers_behind": 1, "every": 0},
        {"action": "lagging_server", "ledgers_behind": 1, "share": 1.5},
        {"action": "lagging_server", "ledgers_behind": 1, "every": 2, "share": 0.5},
        {"action": "lagging_server", "ledgers_behind": 1, "seed": [1]},
    ],
)
def test_a_malformed_lagging_command_is_refused(
    node: StellarNode, command: dict[str, object]
) -> None:
    reply = requests.post(f"{node.base_url}/_admin/faults", json=command, timeout=5)
    assert reply.status_code == 400
    assert reply.json()["extras"]["invalid_field"] == "action"
    assert (
        requests.get(f"{node.base_url}/_admin/faults", timeout=5).json()["lagging_server"] is None
    )
