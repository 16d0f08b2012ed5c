"""What an XRPL transaction delivered, as ``lookup`` reads it from the ledger's answer.

Reconciliation compares a payout with its leg only through what the ledger states
arrived: a Payment's ``delivered_amount`` (what reached the destination, not the
Amount asked for nor the SendMax spent), an escrow's amount as its finish or cancel
deletes it. On a node that closes only when told.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.chain import Applied, Asset, Rejected
from adapters.localnet.xrpl import XrplNode
from tests.adapters.xrpl.test_xrpl_adapter import (
    World,
    usd_world,
    world_on,
)
from tests.adapters.xrpl.test_xrpl_lock_kinds import custody_token, tokens
from tests.adapters.xrpl.test_xrpl_lock_release import finish_by_receiver

DELIVERY_KEYS = ("delivered", "delivered_to", "delivered_asset")


@pytest.fixture
def world() -> Iterator[World]:
    with XrplNode(close_interval_s=0) as node:
        world = world_on(node)
        yield world
        world.ledger.http.close()


@pytest.fixture
def custody_world() -> Iterator[World]:
    with XrplNode(close_interval_s=0, amendments={"TokenEscrow": False}) as node:
        world = world_on(node)
        yield world
        world.ledger.http.close()


def delivery(world: World, tx_hash: str) -> dict[str, str]:
    found = world.chain.lookup(tx_hash)
    assert found is not None and found.validated
    return {k: v for k, v in found.extra.items() if k in DELIVERY_KEYS}


def token(asset: Asset) -> str:
    return f"{asset.code}:{asset.issuer}"


def test_a_payout_through_a_transfer_fee_delivers_the_amount_not_the_send_max(
    custody_world: World,
) -> None:
    world = custody_world
    usd, _ = custody_token(world, rate=1_250_000_000, agent_holds="20")
    leg = world.leg("40", usd)
    lock = world.chain.prepare_lock(leg, world.terms())
    assert isinstance(world.settle(lock), Applied) and lock.lock_ref is not None
    commit = world.chain.prepare_commit(
        leg, lock.lock_ref, world.lock_secret.fulfillment_hex, held=True
    )
    assert isinstance(world.settle(commit), Applied)
    assert tokens(world, world.agent, usd) == 20 + 32 - 50, "the agent spent the SendMax"

    assert delivery(world, commit.tx_hash) == {
        "delivered": "40",
        "delivered_to": world.bob.classic_address,
        "delivered_asset": token(usd),
    }
    # the custody lock is a partial payment of 40 through the 25 % fee: 32 arrived
    assert delivery(world, lock.tx_hash) == {
        "delivered": "32",
        "delivered_to": world.agent.classic_address,
        "delivered_asset": token(usd),
    }


def test_an_escrow_finish_and_cancel_deliver_the_escrowed_amount(world: World) -> None:
    paid = world.leg("12.5")
    lock = world.chain.prepare_lock(paid, world.terms())
    assert isinstance(world.settle(lock), Applied) and lock.lock_ref is not None
    created = world.chain.lookup(lock.tx_hash)
    assert created is not None
    assert created.extra == {"result": "tesSUCCESS", "type": "EscrowCreate"}, "moves nothing"
    # a finish with a wrong fulfillment is in the ledger, failed: it delivered nothing
    wrong = world.chain.prepare_commit(paid, lock.lock_ref, "A0228020" + "11" * 32)
    rejected = world.settle(wrong)
    assert isinstance(rejected, Rejected) and rejected.applied, rejected
    assert delivery(world, wrong.tx_hash) == {}

    commit = world.chain.prepare_commit(paid, lock.lock_ref, world.lock_secret.fulfillment_hex)
    assert isinstance(world.settle(commit), Applied)
    assert delivery(world, commit.tx_hash) == {
        "delivered": "12.5",
        "delivered_to": world.bob.classic_address,
        "delivered_asset": "native",
    }

    returned = world.leg("7.000001")
    second, _ = world.lock(returned, cancel_in_s=60)
    world.ledger.node.advance_time(90)
    world.close()
    unwind = world.chain.prepare_unwind(returned, second)
    assert isinstance(world.settle(unwind), Applied)
    assert delivery(world, unwind.tx_hash) == {
        "delivered": "7.000001",
        "delivered_to": world.alice.classic_address,
        "delivered_asset": "native",
    }


def test_a_token_escrow_finished_by_its_receiver_delivers_the_token(world: World) -> None:
    usd = usd_world(world)
    lock, _ = world.lock(world.leg("25.25", usd))
    finished = finish_by_receiver(world, lock)
    assert delivery(world, finished) == {
        "delivered": "25.25",
        "delivered_to": world.bob.classic_address,
        "delivered_asset": token(usd),
    }


def test_a_finish_not_yet_validated_states_nothing(world: World) -> None:
    """Only a validated ledger's word counts: the finish in the open ledger states
    nothing, the same finish validated states what it delivered."""
    leg = world.leg("3")
    lock = world.chain.prepare_lock(leg, world.terms())
    assert isinstance(world.settle(lock), Applied) and lock.lock_ref is not None
    commit = world.chain.prepare_commit(leg, lock.lock_ref, world.lock_secret.fulfillment_hex)
    world.chain.submit(commit)
    found = world.chain.lookup(commit.tx_hash)
    assert found is not None and not found.validated
    assert not any(k in found.extra for k in DELIVERY_KEYS)
    world.close()
    assert delivery(world, commit.tx_hash)["delivered"] == "3"
