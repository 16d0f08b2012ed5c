"""A claimable balance's history: GET /claimable_balances/{id}/operations and
/claimable_balances/{id}/transactions.

Horizon links an operation (and its transaction) to every claimable balance whose
ledger entry it changed: the creation, the claim, a clawback. The links outlive the
balance, so who claimed a balance can be read after it is gone, from one answer whose
Latest-Ledger header says which ledger it is consistent with.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import requests
from stellar_sdk import Keypair, Server, StrKey

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import build, failure_codes, sign_all
from tests.adapters.localnet.stellar.test_claimable_balances import lock
from tests.adapters.localnet.stellar.test_streaming import events, open_stream

Fund = Callable[[], Keypair]


def claim(server: Server, node: StellarNode, claimant: Keypair, balance_id: str) -> str:
    envelope = sign_all(
        build(server, node, claimant).append_claim_claimable_balance_op(balance_id).build(),
        claimant,
    )
    assert server.submit_transaction(envelope)["successful"] is True
    return envelope.hash_hex()


def history(node: StellarNode, balance_id: str, kind: str, **params: str) -> requests.Response:
    return requests.get(
        f"{node.base_url}/claimable_balances/{balance_id}/{kind}", params, timeout=10
    )


def records(response: requests.Response) -> list[dict[str, object]]:
    assert response.status_code == 200, response.text
    found = response.json()["_embedded"]["records"]
    assert isinstance(found, list)
    return found


def test_the_operations_that_created_and_claimed_a_balance_outlive_it(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    sender, agent = fund(), fund()
    balance_id = lock(server, node, sender, agent, "12.5", node.clock.now() + 600)
    created = records(history(node, balance_id, "operations"))
    assert [r["type"] for r in created] == ["create_claimable_balance"]
    assert created[0]["amount"] == "12.5000000"
    assert created[0]["source_account"] == sender.public_key

    claimed_by = claim(server, node, agent, balance_id)

    operations = records(history(node, balance_id, "operations"))
    assert operations[0]["type"] == "create_claimable_balance"
    claim_op = operations[1]
    assert (len(operations), claim_op["type"]) == (2, "claim_claimable_balance")
    assert claim_op["claimant"] == agent.public_key
    assert claim_op["balance_id"] == balance_id
    assert claim_op["transaction_hash"] == claimed_by
    claimed_in = server.transactions().transaction(claimed_by).call()["ledger"]
    assert int(str(claim_op["id"])) >> 32 == claimed_in, "the id is the operation's TOID"
    txs = records(history(node, balance_id, "transactions"))
    assert [t["hash"] for t in txs][-1] == claimed_by
    assert len(txs) == 2
    newest_first = records(history(node, balance_id, "operations", order="desc", limit="1"))
    assert [r["type"] for r in newest_first] == ["claim_claimable_balance"]


def test_failed_claims_change_no_entry_and_are_not_linked(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    sender, agent = fund(), fund()
    balance_id = lock(server, node, sender, agent, "3", node.clock.now() + 600)
    early = sign_all(
        build(server, node, sender).append_claim_claimable_balance_op(balance_id).build(), sender
    )
    assert failure_codes(server, early)["operations"] == ["op_cannot_claim"]
    for include_failed in ("false", "true"):
        found = records(history(node, balance_id, "operations", include_failed=include_failed))
        assert [r["type"] for r in found] == ["create_claimable_balance"]
        assert len(records(history(node, balance_id, "transactions"))) == 1


def test_unknown_and_malformed_balance_ids(server: Server, node: StellarNode, fund: Fund) -> None:
    sender, agent = fund(), fund()
    balance_id = lock(server, node, sender, agent, "1", node.clock.now() + 600)
    never = "00000000" + "ab" * 32
    for kind in ("operations", "transactions"):
        missing = history(node, never, kind)
        assert missing.status_code == 404
        assert missing.json()["type"] == "https://stellar.org/horizon-errors/not_found"
        bad = history(node, "not-an-id", kind)
        assert bad.status_code == 400
        assert bad.json()["extras"]["invalid_field"] == "claimable_balance_id"
    # the strkey form names the same balance
    strkey = StrKey.encode_claimable_balance(bytes.fromhex("00" + balance_id[8:]))
    assert len(records(history(node, strkey, "operations"))) == 1


def test_a_lagging_server_answers_from_its_own_ledger_and_says_which(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    """Every answer is consistent with its Latest-Ledger header: the stale server has
    not seen the claim, and its header names a ledger before the claim's."""
    sender, agent = fund(), fund()
    balance_id = lock(server, node, sender, agent, "2", node.clock.now() + 600)
    node.close_ledger()
    claimed_by = claim(server, node, agent, balance_id)
    node.faults.halt_ledgers()
    claimed_in = int(server.transactions().transaction(claimed_by).call()["ledger"])
    latest = node.latest_ledger
    node.faults.lagging_server(latest - claimed_in + 1, every=2)

    fresh = history(node, balance_id, "operations")
    stale = history(node, balance_id, "operations")

    assert int(fresh.headers["Latest-Ledger"]) == latest
    assert [r["type"] for r in records(fresh)][-1] == "claim_claimable_balance"
    assert int(stale.headers["Latest-Ledger"]) == claimed_in - 1
    assert [r["type"] for r in records(stale)] == ["create_claimable_balance"]


def test_a_balance_history_streams_its_claim_when_it_comes(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    """Streamed, the history sends the creation at once and the claim once it is in a
    ledger, then closes after `limit` events."""
    sender, agent = fund(), fund()
    balance_id = lock(server, node, sender, agent, "4", node.clock.now() + 600)
    response = open_stream(node, f"/claimable_balances/{balance_id}/operations", limit="2")
    assert response.status_code == 200
    claimed: list[str] = []
    later = threading.Timer(0.3, lambda: claimed.append(claim(server, node, agent, balance_id)))
    later.start()
    try:
        records = [json.loads(e["data"]) for e in events(response) if "id" in e]
    finally:
        later.join()
        response.close()
    assert [r["type"] for r in records] == ["create_claimable_balance", "claim_claimable_balance"]
    assert records[1]["transaction_hash"] == claimed[0]
