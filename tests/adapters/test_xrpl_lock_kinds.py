"""Which lock an XRPL leg gets: an escrow where the ledger can hold the asset in one,
otherwise a custody lock (the token paid into the agent's account and out again).

The local node is started with TokenEscrow on (its default, as on the testnets) or off
(as on mainnet at the time of writing), on a node that closes only when told.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.chain import Asset, LockKind
from adapters.conditions import HashLock
from adapters.errors import TransportError
from adapters.localnet.xrpl import XrplNode
from tests.adapters.test_xrpl_adapter import CountingKeystore, Ledger, World, make_chain

USD_OF_NOBODY = Asset("USD", "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh")


def _world(node: XrplNode, **options: object) -> World:
    keystore = CountingKeystore()
    ledger = Ledger(node, keystore)
    agent, alice, bob = ledger.wallet(), ledger.wallet(), ledger.wallet()
    chain = make_chain(node, keystore, agent.classic_address, **options)
    return World(ledger, chain, agent, alice, bob, HashLock.generate())


@pytest.fixture
def escrow_world() -> Iterator[World]:
    with XrplNode(close_interval_s=0) as node:
        world = _world(node)
        yield world
        world.ledger.http.close()


@pytest.fixture
def custody_world() -> Iterator[World]:
    with XrplNode(close_interval_s=0, amendments={"TokenEscrow": False}) as node:
        world = _world(node)
        yield world
        world.ledger.http.close()


def test_tokens_are_escrowed_where_token_escrow_is_enabled(escrow_world: World) -> None:
    world = escrow_world
    assert world.chain.lock_kind(world.leg("1")) is LockKind.ESCROW
    assert world.chain.lock_kind(world.leg("1", USD_OF_NOBODY)) is LockKind.ESCROW


def test_tokens_are_held_in_custody_without_token_escrow(custody_world: World) -> None:
    world = custody_world
    assert world.chain.lock_kind(world.leg("1")) is LockKind.ESCROW, "XRP needs no amendment"
    assert world.chain.lock_kind(world.leg("1", USD_OF_NOBODY)) is LockKind.CUSTODY


def test_the_amendments_are_asked_once_in_a_while(custody_world: World) -> None:
    world, calls = custody_world, custody_world.ledger.node.rpc.calls
    token_leg = world.leg("1", USD_OF_NOBODY)
    asked = calls["feature"]
    for _ in range(5):
        assert world.chain.lock_kind(token_leg) is LockKind.CUSTODY
    assert calls["feature"] == asked + 1
    world.chain.lock_kind(world.leg("1"))
    assert calls["feature"] == asked + 1, "XRP is escrowed without asking"

    always_asks = make_chain(
        world.ledger.node,
        world.ledger.keystore,
        world.agent.classic_address,
        amendments_fresh_s=0.0,
    )
    for _ in range(3):
        assert always_asks.lock_kind(token_leg) is LockKind.CUSTODY
    assert calls["feature"] == asked + 4


def test_a_ledger_that_cannot_be_asked_raises(custody_world: World) -> None:
    world = custody_world
    world.ledger.node.faults.partition(60)
    try:
        with pytest.raises(TransportError):
            world.chain.lock_kind(world.leg("1", USD_OF_NOBODY))
    finally:
        world.ledger.node.faults.heal()
