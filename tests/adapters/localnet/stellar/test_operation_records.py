"""Horizon's operation and payment resources, and their streams.

Checked against Horizon (stellar/stellar-horizon): actions/operation.go
(GetOperationsHandler, GetOperationByIDHandler; failed transactions' operations only
with include_failed, or for one transaction), resourceadapter/operations.go and
protocols/horizon/operations (common fields, per-type fields), db2 TOID paging, and
httpx/router.go (/payments = create_account, payment, path payments, account_merge;
every page also streams).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import requests
from stellar_sdk import Asset, AuthorizationFlag, Keypair, Server, TransactionBuilder
from stellar_sdk.transaction_envelope import TransactionEnvelope

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import build, failure_codes, sign_all

Fund = Callable[[], Keypair]


def records(page: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page["_embedded"]["records"]
    return found


def three_ops(
    server: Server, node: StellarNode, alice: Keypair, bob: Keypair
) -> TransactionEnvelope:
    envelope = sign_all(
        build(server, node, alice)
        .append_payment_op(bob.public_key, Asset.native(), "5")
        .append_manage_data_op("note", b"dvp")
        .append_set_options_op(
            set_flags=AuthorizationFlag.AUTHORIZATION_REQUIRED
            | AuthorizationFlag.AUTHORIZATION_REVOCABLE,
            low_threshold=1,
        )
        .build(),
        alice,
    )
    server.submit_transaction(envelope)
    return envelope


def test_a_transactions_operations_in_order_with_their_fields(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    envelope = three_ops(server, node, alice, bob)
    tx = server.transactions().transaction(envelope.hash_hex()).call()

    ops = records(server.operations().for_transaction(envelope.hash_hex()).call())

    assert [o["type"] for o in ops] == ["payment", "manage_data", "set_options"]
    assert [o["type_i"] for o in ops] == [1, 10, 5]
    first_id = int(tx["paging_token"]) + 1  # TOID: the operation index counts from 1
    assert [o["id"] for o in ops] == [str(first_id + i) for i in range(3)]
    assert all(o["paging_token"] == o["id"] for o in ops)
    assert all(o["transaction_hash"] == envelope.hash_hex() for o in ops)
    assert all(o["transaction_successful"] is True for o in ops)
    assert ops[0]["from"] == alice.public_key and ops[0]["to"] == bob.public_key
    assert (ops[0]["amount"], ops[0]["asset_type"]) == ("5.0000000", "native")
    assert (ops[1]["name"], ops[1]["value"]) == ("note", "ZHZw")
    assert ops[2]["set_flags_s"] == ["auth_required", "auth_revocable"]
    assert ops[2]["low_threshold"] == 1
    one = server.operations().operation(ops[1]["id"]).call()
    assert one["id"] == ops[1]["id"] and one["type"] == "manage_data"


def test_payments_are_the_paying_operations_of_an_account(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    three_ops(server, node, alice, bob)

    paid = records(server.payments().for_account(bob.public_key).call())

    assert [p["type"] for p in paid] == ["create_account", "payment"]
    assert paid[0]["account"] == bob.public_key
    assert paid[0]["funder"] == node.root_keypair.public_key
    assert paid[0]["starting_balance"] == "10000.0000000"
    assert paid[1]["to"] == bob.public_key
    everything = records(server.operations().for_account(alice.public_key).call())
    assert [o["type"] for o in everything] == [
        "create_account",
        "payment",
        "manage_data",
        "set_options",
    ]


def test_failed_transactions_operations_only_when_asked(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice = fund()
    nobody = Keypair.random()
    envelope = sign_all(
        build(server, node, alice)
        .append_payment_op(nobody.public_key, Asset.native(), "1")
        .build(),
        alice,
    )
    failure_codes(server, envelope)  # op_no_destination: in the ledger, failed

    shown = records(server.operations().for_account(alice.public_key).call())
    assert [o["type"] for o in shown] == ["create_account"]
    with_failed = records(
        server.operations().for_account(alice.public_key).include_failed(True).call()
    )
    assert with_failed[-1]["transaction_successful"] is False
    of_tx = records(server.operations().for_transaction(envelope.hash_hex()).call())
    assert len(of_tx) == 1 and of_tx[0]["transaction_successful"] is False


def test_a_fee_bumps_operations_are_its_inner_ones(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob, sponsor = fund(), fund(), fund()
    inner = sign_all(
        build(server, node, alice).append_payment_op(bob.public_key, Asset.native(), "2").build(),
        alice,
    )
    bump = TransactionBuilder.build_fee_bump_transaction(
        sponsor.public_key, 200, inner, node.network_passphrase
    )
    bump.sign(sponsor)
    server.submit_transaction(bump)
    for tx_hash in (bump.hash_hex(), inner.hash_hex()):
        ops = records(server.operations().for_transaction(tx_hash).call())
        assert [(o["type"], o["source_account"]) for o in ops] == [("payment", alice.public_key)]


def test_the_sdk_streams_an_accounts_payments(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    start = records(server.payments().for_account(bob.public_key).call())[-1]["paging_token"]
    for _ in range(2):
        three_ops(server, node, alice, bob)
    stream = server.payments().for_account(bob.public_key).cursor(start).stream()
    got = list(itertools.islice(stream, 2))
    assert [(p["type"], p["to"]) for p in got] == [("payment", bob.public_key)] * 2


def test_ledger_operations_and_payments(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob = fund(), fund()
    envelope = three_ops(server, node, alice, bob)
    ledger = server.transactions().transaction(envelope.hash_hex()).call()["ledger"]
    in_ledger = records(server.operations().for_ledger(ledger).call())
    assert {o["transaction_hash"] for o in in_ledger} == {envelope.hash_hex()}
    assert [p["type"] for p in records(server.payments().for_ledger(ledger).call())] == ["payment"]


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/operations/abc", 400, "op_id"),
        ("/operations/0", 400, "op_id"),
        ("/operations/-4", 400, "op_id"),
        ("/operations/99999999999999", 404, None),
        ("/transactions/XYZ/operations", 400, "tx_id"),
        ("/accounts/GBAD/payments", 400, "account_id"),
        ("/ledgers/x/operations", 400, "ledger_id"),
        ("/operations?cursor=abc", 400, "cursor"),
        ("/payments?limit=0", 400, "limit"),
    ],
)
def test_malformed_operation_requests(
    node: StellarNode, path: str, status: int, field: str | None
) -> None:
    reply = requests.get(f"{node.base_url}{path}", timeout=5)
    assert reply.status_code == status
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    if field is not None:
        assert reply.json()["extras"]["invalid_field"] == field
