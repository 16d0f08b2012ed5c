"""Claimable balances as the DVP lock uses them (DESIGN.md section 4).

The lock: the sender creates a balance claimable by the agent at once and by itself
only after T_cancel. Commit: the agent claims and pays the receiver in one
transaction. Unwind: the agent claims and pays back, or the sender reclaims later.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
import requests
from stellar_sdk import Asset, Claimant, ClaimPredicate, Keypair, Server
from stellar_sdk.exceptions import NotFoundError

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import (
    build,
    credit_balance,
    failure_codes,
    native_balance,
    sign_all,
)

Fund = Callable[[], Keypair]


def lock(
    server: Server,
    node: StellarNode,
    sender: Keypair,
    agent: Keypair,
    amount: str,
    cancel_at: int,
    asset: Asset | None = None,
) -> str:
    """Create the DVP lock; return the balance id computed locally by the SDK."""
    claimants = [
        Claimant(agent.public_key, ClaimPredicate.predicate_unconditional()),
        Claimant(
            sender.public_key,
            ClaimPredicate.predicate_not(ClaimPredicate.predicate_before_absolute_time(cancel_at)),
        ),
    ]
    envelope = sign_all(
        build(server, node, sender)
        .append_create_claimable_balance_op(asset or Asset.native(), amount, claimants)
        .build(),
        sender,
    )
    response = server.submit_transaction(envelope)
    balance_id = envelope.transaction.get_claimable_balance_id(0)
    assert response["successful"] is True
    return balance_id


def test_create_matches_sdk_id_and_counts_reserve_on_creator(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    sender, agent = fund(), fund()
    before = native_balance(server, sender.public_key)
    cancel_at = node.clock.now() + 600
    balance_id = lock(server, node, sender, agent, "25", cancel_at)
    doc = server.claimable_balances().claimable_balance(balance_id).call()
    assert doc["id"] == balance_id
    assert doc["asset"] == "native"
    assert doc["amount"] == "25.0000000"
    assert doc["sponsor"] == sender.public_key
    assert [c["destination"] for c in doc["claimants"]] == [agent.public_key, sender.public_key]
    assert doc["claimants"][0]["predicate"] == {"unconditional": True}
    assert doc["claimants"][1]["predicate"]["not"]["abs_before_epoch"] == str(cancel_at)
    account = server.accounts().account_id(sender.public_key).call()
    # One base reserve per claimant, carried as a sponsorship, not a subentry.
    assert account["num_sponsoring"] == 2
    assert account["subentry_count"] == 0
    assert native_balance(server, sender.public_key) == before - Decimal("25") - Decimal("0.00001")


def test_filters_by_claimant_sponsor_and_asset(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    sender, agent, other = fund(), fund(), fund()
    first = lock(server, node, sender, agent, "1", node.clock.now() + 600)
    second = lock(server, node, other, agent, "2", node.clock.now() + 600)

    def ids(builder) -> list[str]:  # type: ignore[no-untyped-def]
        return [r["id"] for r in builder.call()["_embedded"]["records"]]

    assert ids(server.claimable_balances().for_claimant(agent.public_key)) == [first, second]
    assert ids(server.claimable_balances().for_claimant(sender.public_key)) == [first]
    assert ids(server.claimable_balances().for_sponsor(other.public_key)) == [second]
    assert ids(server.claimable_balances().for_asset(Asset.native())) == [first, second]
    assert ids(server.claimable_balances().for_asset(Asset("USD", agent.public_key))) == []
    page = server.claimable_balances().for_claimant(agent.public_key).limit(1).call()
    assert [r["id"] for r in page["_embedded"]["records"]] == [first]
    next_page = requests.get(page["_links"]["next"]["href"], timeout=10).json()
    assert [r["id"] for r in next_page["_embedded"]["records"]] == [second]


def test_commit_claim_and_pay_atomically(server: Server, node: StellarNode, fund: Fund) -> None:
    sender, agent, receiver = fund(), fund(), fund()
    balance_id = lock(server, node, sender, agent, "40", node.clock.now() + 600)
    agent_before = native_balance(server, agent.public_key)
    receiver_before = native_balance(server, receiver.public_key)
    commit = sign_all(
        build(server, node, agent)
        .append_claim_claimable_balance_op(balance_id)
        .append_payment_op(receiver.public_key, Asset.native(), "40")
        .build(),
        agent,
    )
    server.submit_transaction(commit)
    assert native_balance(server, receiver.public_key) == receiver_before + 40
    assert native_balance(server, agent.public_key) == agent_before - Decimal("0.00002")
    with pytest.raises(NotFoundError):
        server.claimable_balances().claimable_balance(balance_id).call()
    # The sponsorship is released when the balance goes.
    assert server.accounts().account_id(sender.public_key).call()["num_sponsoring"] == 0
    again = sign_all(
        build(server, node, agent).append_claim_claimable_balance_op(balance_id).build(), agent
    )
    assert failure_codes(server, again)["operations"] == ["op_does_not_exist"]


def test_failed_commit_leaves_the_lock_in_place(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    sender, agent = fund(), fund()
    balance_id = lock(server, node, sender, agent, "40", node.clock.now() + 600)
    ghost = Keypair.random()  # the receiver account does not exist
    commit = sign_all(
        build(server, node, agent)
        .append_claim_claimable_balance_op(balance_id)
        .append_payment_op(ghost.public_key, Asset.native(), "40")
        .build(),
        agent,
    )
    assert failure_codes(server, commit)["operations"] == ["op_success", "op_no_destination"]
    assert (
        server.claimable_balances().claimable_balance(balance_id).call()["amount"] == "40.0000000"
    )


def test_sender_can_reclaim_only_after_cancel_time(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    sender, agent = fund(), fund()
    cancel_at = node.clock.now() + 600
    balance_id = lock(server, node, sender, agent, "40", cancel_at)
    early = sign_all(
        build(server, node, sender).append_claim_claimable_balance_op(balance_id).build(), sender
    )
    assert failure_codes(server, early)["operations"] == ["op_cannot_claim"]
    # In the ledger, failed: fee charged, and the balance is still locked.
    assert (
        server.claimable_balances().claimable_balance(balance_id).call()["amount"] == "40.0000000"
    )

    node.advance_time(600)  # the next ledger closes at (or after) cancel_at
    before = native_balance(server, sender.public_key)
    reclaim = sign_all(
        build(server, node, sender).append_claim_claimable_balance_op(balance_id).build(), sender
    )
    server.submit_transaction(reclaim)
    assert native_balance(server, sender.public_key) == before + 40 - Decimal("0.00001")


def test_relative_predicate_becomes_absolute_at_creation(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    sender, agent = fund(), fund()
    claimants = [Claimant(agent.public_key, ClaimPredicate.predicate_before_relative_time(60))]
    envelope = sign_all(
        build(server, node, sender)
        .append_create_claimable_balance_op(Asset.native(), "3", claimants)
        .build(),
        sender,
    )
    created = server.submit_transaction(envelope)
    balance_id = envelope.transaction.get_claimable_balance_id(0)
    closed_at = server.ledgers().ledger(created["ledger"]).call()["closed_at"]
    predicate = (
        server.claimable_balances()
        .claimable_balance(balance_id)
        .call()["claimants"][0]["predicate"]
    )
    from datetime import datetime

    close_time = int(datetime.fromisoformat(closed_at.replace("Z", "+00:00")).timestamp())
    assert predicate == {
        "abs_before": _iso(close_time + 60),
        "abs_before_epoch": str(close_time + 60),
    }
    node.advance_time(120)
    late = sign_all(
        build(server, node, agent).append_claim_claimable_balance_op(balance_id).build(), agent
    )
    assert failure_codes(server, late)["operations"] == ["op_cannot_claim"]


def _iso(unix_s: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_and_or_predicates(server: Server, node: StellarNode, fund: Fund) -> None:
    sender, agent = fund(), fund()
    now = node.clock.now()
    window = ClaimPredicate.predicate_and(  # claimable between now+100 and now+200
        ClaimPredicate.predicate_not(ClaimPredicate.predicate_before_absolute_time(now + 100)),
        ClaimPredicate.predicate_before_absolute_time(now + 200),
    )
    either = ClaimPredicate.predicate_or(
        window, ClaimPredicate.predicate_before_absolute_time(now - 1)
    )
    envelope = sign_all(
        build(server, node, sender)
        .append_create_claimable_balance_op(
            Asset.native(), "2", [Claimant(agent.public_key, either)]
        )
        .build(),
        sender,
    )
    server.submit_transaction(envelope)
    balance_id = envelope.transaction.get_claimable_balance_id(0)
    too_soon = sign_all(
        build(server, node, agent).append_claim_claimable_balance_op(balance_id).build(), agent
    )
    assert failure_codes(server, too_soon)["operations"] == ["op_cannot_claim"]
    node.advance_time(150)
    in_window = sign_all(
        build(server, node, agent).append_claim_claimable_balance_op(balance_id).build(), agent
    )
    assert server.submit_transaction(in_window)["successful"] is True


def test_credit_asset_balance_needs_a_trust_line_to_claim(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    issuer, sender, agent = fund(), fund(), fund()
    usd = Asset("USD", issuer.public_key)
    server.submit_transaction(
        sign_all(build(server, node, sender).append_change_trust_op(usd).build(), sender)
    )
    server.submit_transaction(
        sign_all(
            build(server, node, issuer).append_payment_op(sender.public_key, usd, "50").build(),
            issuer,
        )
    )
    balance_id = lock(server, node, sender, agent, "50", node.clock.now() + 600, asset=usd)
    assert credit_balance(server, sender.public_key, usd) == Decimal("0")
    assert (
        server.claimable_balances().claimable_balance(balance_id).call()["asset"]
        == f"USD:{issuer.public_key}"
    )
    claim = sign_all(
        build(server, node, agent).append_claim_claimable_balance_op(balance_id).build(), agent
    )
    assert failure_codes(server, claim)["operations"] == ["op_no_trust"]
    server.submit_transaction(
        sign_all(build(server, node, agent).append_change_trust_op(usd).build(), agent)
    )
    claim = sign_all(
        build(server, node, agent).append_claim_claimable_balance_op(balance_id).build(), agent
    )
    server.submit_transaction(claim)
    assert credit_balance(server, agent.public_key, usd) == Decimal("50")


def test_lock_fails_when_underfunded_or_without_trust(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    issuer, sender, agent = fund(), fund(), fund()
    claimants = [Claimant(agent.public_key, ClaimPredicate.predicate_unconditional())]
    too_much = sign_all(
        build(server, node, sender)
        .append_create_claimable_balance_op(Asset.native(), "20000", claimants)
        .build(),
        sender,
    )
    assert failure_codes(server, too_much)["operations"] == ["op_underfunded"]
    no_trust = sign_all(
        build(server, node, sender)
        .append_create_claimable_balance_op(Asset("USD", issuer.public_key), "1", claimants)
        .build(),
        sender,
    )
    assert failure_codes(server, no_trust)["operations"] == ["op_no_trust"]
    # Everything but the reserve for this balance: the amount fits, its reserve does not.
    available = native_balance(server, sender.public_key) - Decimal("1") - Decimal("0.00001")
    no_reserve = sign_all(
        build(server, node, sender)
        .append_create_claimable_balance_op(
            Asset.native(), str(available - Decimal("0.4")), claimants
        )
        .build(),
        sender,
    )
    assert failure_codes(server, no_reserve)["operations"] == ["op_low_reserve"]
    assert (
        server.claimable_balances().for_sponsor(sender.public_key).call()["_embedded"]["records"]
        == []
    )
