"""Horizon's effects: what each operation of a successful transaction did, per account.

Checked against Horizon (stellar/stellar-horizon) ingest/processors/effects_processor.go
(each operation type's effects, their order and details: addAccountCreatedEffects,
addPaymentEffects, addSetOptionsEffects with the signer summary diff,
addChangeTrustEffects, addManageDataEffects, addAccountMergeEffects, the claimable
balance effects and the sponsorship effects after them), db2/history EffectType
numbers and resourceadapter/effects.go (id = paging token "<op id>-<order>").
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from stellar_sdk import Asset, Claimant, Keypair, Server, Signer
from stellar_sdk.transaction_envelope import TransactionEnvelope

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import build, failure_codes, sign_all
from tests.adapters.localnet.stellar.issuers import (
    AUTHORIZED,
    CLAWBACK,
    REVOCABLE,
    pay,
    set_issuer_flags,
    trust,
)
from tests.adapters.localnet.stellar.issuers import submit as submit_op

Fund = Callable[[], Keypair]
SKIP = {"_links", "id", "paging_token", "type_i", "created_at"}


def effects_of(server: Server, envelope: TransactionEnvelope) -> list[dict[str, Any]]:
    page = server.effects().for_transaction(envelope.hash_hex()).limit(200).call()
    return [{k: v for k, v in e.items() if k not in SKIP} for e in page["_embedded"]["records"]]


def submit(server: Server, envelope: TransactionEnvelope) -> TransactionEnvelope:
    server.submit_transaction(envelope)
    return envelope


def test_creating_an_account(server: Server, node: StellarNode, fund: Fund) -> None:
    alice = fund()
    created = server.transactions().for_account(alice.public_key).call()["_embedded"]
    tx_hash = created["records"][0]["hash"]
    page = server.effects().for_transaction(tx_hash).call()["_embedded"]["records"]
    root = node.root_keypair.public_key
    assert [(e["type"], e["type_i"], e["account"]) for e in page] == [
        ("account_created", 0, alice.public_key),
        ("account_debited", 3, root),
        ("signer_created", 10, alice.public_key),
    ]
    assert page[0]["starting_balance"] == "10000.0000000"
    assert page[2]["public_key"] == alice.public_key and page[2]["weight"] == 1
    op_id = server.operations().for_transaction(tx_hash).call()["_embedded"]["records"][0]["id"]
    assert [e["id"] for e in page] == [f"{int(op_id):019d}-{n:010d}" for n in (1, 2, 3)]
    assert all(e["paging_token"] == e["id"] for e in page)


def test_a_payment_credits_then_debits(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob = fund(), fund()
    envelope = submit(
        server,
        sign_all(
            build(server, node, alice)
            .append_payment_op(bob.public_key, Asset.native(), "4")
            .build(),
            alice,
        ),
    )
    native = {"amount": "4.0000000", "asset_type": "native"}
    assert effects_of(server, envelope) == [
        {"account": bob.public_key, "type": "account_credited", **native},
        {"account": alice.public_key, "type": "account_debited", **native},
    ]


def test_a_failed_transaction_has_no_effects(server: Server, node: StellarNode, fund: Fund) -> None:
    alice = fund()
    envelope = sign_all(
        build(server, node, alice)
        .append_payment_op(Keypair.random().public_key, Asset.native(), "1")
        .build(),
        alice,
    )
    failure_codes(server, envelope)
    assert effects_of(server, envelope) == []


def test_set_options_signers_thresholds_and_flags(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, extra = fund(), Keypair.random()
    added = submit(
        server,
        sign_all(
            build(server, node, alice)
            .append_set_options_op(
                home_domain="example.org",
                low_threshold=1,
                signer=Signer.ed25519_public_key(extra.public_key, 2),
            )
            .build(),
            alice,
        ),
    )
    assert effects_of(server, added) == [
        {
            "account": alice.public_key,
            "type": "account_home_domain_updated",
            "home_domain": "example.org",
        },
        {"account": alice.public_key, "type": "account_thresholds_updated", "low_threshold": 1},
        {
            "account": alice.public_key,
            "type": "signer_created",
            "public_key": extra.public_key,
            "weight": 2,
        },
    ]
    removed = submit(
        server,
        sign_all(
            build(server, node, alice)
            .append_set_options_op(signer=Signer.ed25519_public_key(extra.public_key, 0))
            .build(),
            alice,
        ),
    )
    assert effects_of(server, removed) == [
        {"account": alice.public_key, "type": "signer_removed", "public_key": extra.public_key}
    ]


def test_trust_lines_and_data_entries(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, issuer = fund(), fund()
    usd = Asset("USD", issuer.public_key)
    asset = {
        "asset_type": "credit_alphanum4",
        "asset_code": "USD",
        "asset_issuer": issuer.public_key,
    }
    first = submit(
        server,
        sign_all(
            build(server, node, alice)
            .append_change_trust_op(usd, limit="100")
            .append_manage_data_op("k", b"one")
            .build(),
            alice,
        ),
    )
    assert effects_of(server, first) == [
        {"account": alice.public_key, "type": "trustline_created", "limit": "100.0000000", **asset},
        {"account": alice.public_key, "type": "data_created", "name": "k", "value": "b25l"},
    ]
    second = submit(
        server,
        sign_all(
            build(server, node, alice)
            .append_change_trust_op(usd, limit="0")
            .append_manage_data_op("k", b"two")
            .append_manage_data_op("k", None)
            .build(),
            alice,
        ),
    )
    assert [e["type"] for e in effects_of(server, second)] == [
        "trustline_removed",
        "data_updated",
        "data_removed",
    ]


def test_claimable_balances_and_a_merge(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob = fund(), fund()
    created = submit(
        server,
        sign_all(
            build(server, node, alice)
            .append_create_claimable_balance_op(Asset.native(), "3", [Claimant(bob.public_key)])
            .build(),
            alice,
        ),
    )
    made = effects_of(server, created)
    assert [(e["type"], e["account"]) for e in made] == [
        ("claimable_balance_created", alice.public_key),
        ("claimable_balance_claimant_created", bob.public_key),
        ("account_debited", alice.public_key),
        ("claimable_balance_sponsorship_created", alice.public_key),
    ]
    balance_id = made[0]["balance_id"]
    assert made[1]["predicate"] == {"unconditional": True}
    claimed = submit(
        server,
        sign_all(
            build(server, node, bob).append_claim_claimable_balance_op(balance_id).build(), bob
        ),
    )
    assert [(e["type"], e["account"]) for e in effects_of(server, claimed)] == [
        ("claimable_balance_claimed", bob.public_key),
        ("account_credited", bob.public_key),
        ("claimable_balance_sponsorship_removed", alice.public_key),
    ]
    merged = submit(
        server,
        sign_all(build(server, node, alice).append_account_merge_op(bob.public_key).build(), alice),
    )
    effects = effects_of(server, merged)
    assert [(e["type"], e["account"]) for e in effects] == [
        ("account_debited", alice.public_key),
        ("account_credited", bob.public_key),
        ("account_removed", alice.public_key),
    ]
    assert effects[0]["amount"] == effects[1]["amount"]


def test_an_accounts_effects_stream(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob = fund(), fund()
    latest = server.effects().for_account(bob.public_key).call()["_embedded"]["records"][-1]
    for _ in range(2):
        submit(
            server,
            sign_all(
                build(server, node, alice)
                .append_payment_op(bob.public_key, Asset.native(), "1")
                .build(),
                alice,
            ),
        )
    stream = server.effects().for_account(bob.public_key).cursor(latest["paging_token"]).stream()
    got = list(itertools.islice(stream, 2))
    assert [(e["type"], e["account"]) for e in got] == [("account_credited", bob.public_key)] * 2


def test_operation_and_ledger_effects(server: Server, node: StellarNode, fund: Fund) -> None:
    alice = fund()
    tx = server.transactions().for_account(alice.public_key).call()["_embedded"]["records"][0]
    op = server.operations().for_transaction(tx["hash"]).call()["_embedded"]["records"][0]
    of_op = server.effects().for_operation(op["id"]).call()["_embedded"]["records"]
    of_ledger = server.effects().for_ledger(tx["ledger"]).call()["_embedded"]["records"]
    assert [e["id"] for e in of_op] == [e["id"] for e in of_ledger][: len(of_op)]
    assert len(of_op) == 3


def test_effects_survive_a_restart(tmp_path: Path) -> None:
    alice = Keypair.random()
    with StellarNode(close_interval_s=0.02, data_dir=tmp_path) as first:
        funded = requests.get(f"{first.base_url}/friendbot", {"addr": alice.public_key}, timeout=10)
        assert funded.status_code == 200
    with (
        StellarNode(close_interval_s=0, data_dir=tmp_path) as second,
        Server(second.base_url) as server,
    ):
        found = server.effects().for_account(alice.public_key).call()["_embedded"]["records"]
        assert [e["type"] for e in found] == ["account_created", "signer_created"]


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/effects?cursor=abc", 400, "cursor"),
        ("/effects?cursor=12-x", 400, "cursor"),
        ("/effects?limit=500", 400, "limit"),
        ("/accounts/GBAD/effects", 400, "account_id"),
        ("/transactions/nothex/effects", 400, "tx_id"),
        ("/operations/zero/effects", 400, "op_id"),
        ("/ledgers/-2/effects", 400, "ledger_id"),
    ],
)
def test_malformed_effect_requests(node: StellarNode, path: str, status: int, field: str) -> None:
    reply = requests.get(f"{node.base_url}{path}", timeout=5)
    assert reply.status_code == status
    assert reply.json()["extras"]["invalid_field"] == field


def test_a_clawback_and_a_trust_line_flag_change_through_the_routes(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    """The issuer-control operations' own details and effects (operations.horizon_details)
    served by /operations and /effects."""
    holder, issuer = fund(), fund()
    set_issuer_flags(server, node, issuer, REVOCABLE | CLAWBACK)
    usd = Asset("USD", issuer.public_key)
    trust(server, node, holder, usd)
    pay(server, node, issuer, holder.public_key, usd, "100")
    clawed = submit_op(
        server, node, issuer, lambda b: b.append_clawback_op(usd, holder.public_key, "30")
    )
    ops = server.operations().for_transaction(clawed["hash"]).call()["_embedded"]["records"]
    assert (ops[0]["type"], ops[0]["type_i"]) == ("clawback", 19)
    assert (ops[0]["from"], ops[0]["amount"]) == (holder.public_key, "30.0000000")
    effects = server.effects().for_transaction(clawed["hash"]).call()["_embedded"]["records"]
    assert [(e["type"], e["account"]) for e in effects] == [
        ("account_credited", issuer.public_key),
        ("account_debited", holder.public_key),
    ]
    frozen = submit_op(
        server,
        node,
        issuer,
        lambda b: b.append_set_trust_line_flags_op(holder.public_key, usd, clear_flags=AUTHORIZED),
    )
    flagged = server.effects().for_transaction(frozen["hash"]).call()["_embedded"]["records"]
    assert [(e["type"], e["type_i"], e["trustor"]) for e in flagged] == [
        ("trustline_flags_updated", 26, holder.public_key)
    ]
    assert flagged[0]["authorized_flag"] is False
