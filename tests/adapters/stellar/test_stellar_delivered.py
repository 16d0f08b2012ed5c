"""What a Stellar transaction delivered, as ``lookup`` reads it from Horizon.

A payout from the settlement agent is a plain payment: it delivers its amount exactly,
or fails with its transaction. ``lookup`` states the payment operation's amount,
destination and asset (GET /transactions/{hash}/operations), and nothing for a claim,
whose operation names no amount, nor when the server asked for the operations has not
ingested the transaction's ledger. On the local network.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.localnet.stellar import StellarNode
from tests.adapters.contract import applied, settle
from tests.adapters.stellar.test_stellar_adapter import (
    StellarHarness,
    halted,
    local_harness,
    locked_leg,
)

DELIVERY_KEYS = ("delivered", "delivered_to", "delivered_asset")


@pytest.fixture
def credit(stellar_node: StellarNode) -> Iterator[StellarHarness]:
    h = local_harness(stellar_node, credit=True)
    yield h
    h.close()


@pytest.fixture
def native(stellar_node: StellarNode) -> Iterator[StellarHarness]:
    h = local_harness(stellar_node, credit=False)
    yield h
    h.close()


def delivery(h: StellarHarness, tx_hash: str) -> dict[str, str]:
    found = h.chain.lookup(tx_hash)
    assert found is not None and found.validated and found.successful
    return {k: v for k, v in found.extra.items() if k in DELIVERY_KEYS}


def test_a_payment_from_the_agent_states_what_it_delivered(credit: StellarHarness) -> None:
    h = credit
    leg, lock, _ = locked_leg(h)
    claim = h.chain.prepare_claim(leg, lock)
    applied(settle(h, claim))
    commit = h.chain.prepare_commit(leg, lock, "", held=True)
    applied(settle(h, commit))

    assert delivery(h, commit.tx_hash) == {
        "delivered": "25.1234567",
        "delivered_to": leg.receiver,
        "delivered_asset": f"USDC:{h.asset.issuer}",
    }
    # the claim's operation names no amount: what the balance held is lock_release's
    assert delivery(h, claim.tx_hash) == {}
    # the lock names an amount, but delivers nothing to anyone yet
    assert delivery(h, lock_hash(h, lock.balance_id)) == {}


def lock_hash(h: StellarHarness, balance_id: str | None) -> str:
    """The hash of the transaction that created the balance ``balance_id``."""
    assert balance_id is not None
    records = h.horizon.operations().for_claimable_balance(balance_id).call()
    return str(records["_embedded"]["records"][0]["transaction_hash"])


def test_a_claim_and_pay_back_in_one_transaction_states_the_payment(
    native: StellarHarness,
) -> None:
    h = native
    leg, lock, _ = locked_leg(h)
    unwind = h.chain.prepare_unwind(leg, lock)
    applied(settle(h, unwind))

    assert delivery(h, unwind.tx_hash) == {
        "delivered": "25.1234567",
        "delivered_to": leg.sender,
        "delivered_asset": "native",
    }


def test_operations_from_a_server_behind_state_nothing(credit: StellarHarness) -> None:
    """The transaction and its ledger from a fresh server, its operations from one that
    has not ingested that ledger: an empty list, which states nothing (never a guess),
    until a fresh server answers."""
    h = credit
    leg, lock, _ = locked_leg(h)
    applied(settle(h, h.chain.prepare_claim(leg, lock)))
    commit = h.chain.prepare_commit(leg, lock, "", held=True)
    paid_in = applied(settle(h, commit)).ledger_index
    with halted(h) as node:
        # reads in a lookup: the transaction, its ledger, its operations (the third)
        node.faults.lagging_server(node.latest_ledger - paid_in + 1, every=3)
        stale = h.chain.lookup(commit.tx_hash)
        lagging = node.faults.snapshot()["lagging_server"]
        assert lagging["reads"] == 3, "one read each, the operations' from the server behind"
        node.faults.clear()
        fresh = h.chain.lookup(commit.tx_hash)

    assert stale is not None and stale.successful and stale.ledger_index == paid_in
    assert not any(k in stale.extra for k in DELIVERY_KEYS), stale.extra
    assert fresh is not None and fresh.extra["delivered"] == "25.1234567"
