"""Which lock an XRPL leg gets: an escrow where the ledger can hold the asset in one,
otherwise a custody lock (the token paid into the agent's account and out again).

The local node is started with TokenEscrow on (its default, as on the testnets) or off
(as on mainnet at the time of writing), on a node that closes only when told.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from xrpl.core.binarycodec import decode
from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.transactions import AccountSet, AccountSetAsfFlag, Payment, TrustSet
from xrpl.wallet import Wallet

from adapters.chain import Applied, Asset, ChainName, LockKind, LockRef, LockState
from adapters.errors import LegInvalid, TransportError
from adapters.localnet.xrpl import XrplNode
from tests.adapters.xrpl.test_xrpl_adapter import (
    World,
    make_chain,
    world_on,
)

USD_OF_NOBODY = Asset("USD", "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh")


@pytest.fixture
def escrow_world() -> Iterator[World]:
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


# --- custody locks ----------------------------------------------------------------------


def custody_token(
    world: World,
    *,
    rate: int | None = None,
    agent_holds: str = "0",
    agent_limit: str | None = "1000",
) -> tuple[Asset, Wallet]:
    """An issuer of USD (DefaultRipple, no escrow permission); alice holds 100, bob and
    the agent trust it (the agent up to ``agent_limit``, None: no line) and the agent
    holds ``agent_holds``; the issuer charges ``rate``."""
    issuer = world.ledger.wallet()
    world.ledger.setup(
        AccountSet(account=issuer.classic_address, set_flag=AccountSetAsfFlag.ASF_DEFAULT_RIPPLE),
        issuer,
    )
    limits = {world.alice: "1000", world.bob: "1000", world.agent: agent_limit}
    for holder, limit in limits.items():
        if limit is not None:
            world.ledger.setup(
                TrustSet(account=holder.classic_address, limit_amount=usd(issuer, limit)), holder
            )
    for holder, value in ((world.alice, "100"), (world.agent, agent_holds)):
        if Decimal(value):
            issue(world, issuer, holder, value)
    if rate is not None:
        world.ledger.setup(AccountSet(account=issuer.classic_address, transfer_rate=rate), issuer)
    return Asset("USD", issuer.classic_address), issuer


def usd(issuer: Wallet, value: str) -> IssuedCurrencyAmount:
    return IssuedCurrencyAmount(currency="USD", issuer=issuer.classic_address, value=value)


def issue(world: World, issuer: Wallet, holder: Wallet, value: str) -> None:
    payment = Payment(
        account=issuer.classic_address,
        destination=holder.classic_address,
        amount=usd(issuer, value),
    )
    world.ledger.setup(payment, issuer)


def tokens(world: World, wallet: Wallet, asset: Asset) -> Decimal:
    assert asset.issuer is not None
    return world.ledger.tokens(wallet.classic_address, asset.issuer)


def test_a_custody_lock_then_commit_moves_exactly_the_amount(custody_world: World) -> None:
    world = custody_world
    usd_token, _ = custody_token(world)
    leg = world.leg("40.125", usd_token)
    world.chain.validate_leg(leg)  # no asfAllowTrustLineLocking needed: nothing is escrowed
    alice_xrp = world.ledger.xrp(world.alice.classic_address)
    sequence = world.ledger.next_sequence(world.alice)

    lock_tx = world.chain.prepare_lock(leg, world.terms())
    fields = decode(lock_tx.blob)
    assert (fields["TransactionType"], fields["Destination"]) == (
        "Payment",
        world.agent.classic_address,
    )
    assert lock_tx.lock_ref == LockRef(ChainName.XRPL, world.alice.classic_address, sequence)
    assert isinstance(world.settle(lock_tx), Applied)
    assert tokens(world, world.alice, usd_token) == Decimal("59.875")
    assert tokens(world, world.agent, usd_token) == Decimal("40.125")
    state = world.chain.lock_state(lock_tx.lock_ref)
    assert isinstance(state, LockState) and not state.exists, "no ledger object holds it"

    commit = world.chain.prepare_commit(
        leg, lock_tx.lock_ref, world.lock_secret.fulfillment_hex, held=True
    )
    assert decode(commit.blob)["Account"] == world.agent.classic_address
    assert isinstance(world.settle(commit), Applied)
    assert tokens(world, world.bob, usd_token) == Decimal("40.125")
    assert tokens(world, world.agent, usd_token) == 0
    assert tokens(world, world.alice, usd_token) == Decimal("59.875")
    lock_fee = world.ledger.fee(lock_tx.tx_hash)
    assert world.ledger.xrp(world.alice.classic_address) == alice_xrp - lock_fee


def test_a_custody_lock_unwinds_at_once_and_returns_everything(custody_world: World) -> None:
    world = custody_world
    usd_token, _ = custody_token(world)
    leg = world.leg("25", usd_token)
    lock, _ = world.lock(leg, cancel_in_s=3600)
    assert tokens(world, world.alice, usd_token) == 75

    # no CancelAfter to wait for: the agent holds the funds and pays them back now
    unwind = world.chain.prepare_unwind(leg, lock, held=True)
    assert decode(unwind.blob)["Destination"] == world.alice.classic_address
    assert isinstance(world.settle(unwind), Applied)
    assert tokens(world, world.alice, usd_token) == 100
    assert tokens(world, world.agent, usd_token) == 0
    assert tokens(world, world.bob, usd_token) == 0


def test_the_agent_pays_the_transfer_fees_of_a_custody_lock(custody_world: World) -> None:
    world = custody_world
    usd_token, issuer = custody_token(world, rate=1_250_000_000, agent_holds="20")
    leg = world.leg("40", usd_token)
    world.chain.validate_leg(leg)

    lock, _ = world.lock(leg)
    assert tokens(world, world.alice, usd_token) == 60, "the sender parts with the amount"
    assert tokens(world, world.agent, usd_token) == 20 + 32, "40 less the 25 % fee"
    commit = world.chain.prepare_commit(leg, lock, world.lock_secret.fulfillment_hex, held=True)
    assert decode(commit.blob)["SendMax"]["value"] == "50"
    assert isinstance(world.settle(commit), Applied)
    assert tokens(world, world.bob, usd_token) == 40, "the receiver gets exactly the amount"
    assert tokens(world, world.agent, usd_token) == 2

    # 8 more: in 6.4, out 10; the agent's 2 do not cover the 3.6 of fees
    small = world.leg("8", usd_token)
    with pytest.raises(LegInvalid, match=f"settlement agent {world.agent.classic_address} holds 2"):
        world.chain.validate_leg(small)
    issue(world, issuer, world.agent, "2")
    world.chain.validate_leg(small)
    second, _ = world.lock(small)
    assert tokens(world, world.alice, usd_token) == 52
    assert tokens(world, world.agent, usd_token) == Decimal("10.4")
    unwind = world.chain.prepare_unwind(small, second, held=True)
    assert isinstance(world.settle(unwind), Applied)
    assert tokens(world, world.alice, usd_token) == 60, "every token of the unwound leg back"
    assert tokens(world, world.agent, usd_token) == Decimal("0.4")


def test_a_custody_leg_needs_an_agent_line_with_room(custody_world: World) -> None:
    world = custody_world
    no_line, _ = custody_token(world, agent_limit=None)
    with pytest.raises(LegInvalid, match="has no trust line"):
        world.chain.validate_leg(world.leg("10", no_line))
    narrow, _ = custody_token(world, agent_limit="5")
    with pytest.raises(LegInvalid, match="limit 5 cannot take 10 more"):
        world.chain.validate_leg(world.leg("10", narrow))
    world.chain.validate_leg(world.leg("5", narrow))


def test_the_xrp_ledger_has_no_claimable_locks(custody_world: World) -> None:
    world = custody_world
    lock = LockRef(ChainName.XRPL, world.alice.classic_address, 5)
    with pytest.raises(ValueError, match="no claimable locks"):
        world.chain.prepare_claim(world.leg("1", USD_OF_NOBODY), lock)


def test_a_lock_follows_the_kind_recorded_for_its_leg(escrow_world: World) -> None:
    """An amendment enabled between instruction and lock must not change a leg's lock:
    the engine's record says how it is committed."""
    world = escrow_world
    usd_token, _ = custody_token(world)
    leg = world.leg("10", usd_token)
    assert world.chain.lock_kind(leg) is LockKind.ESCROW
    recorded = world.chain.prepare_lock(leg, world.terms(), kind=LockKind.CUSTODY)
    assert decode(recorded.blob)["TransactionType"] == "Payment"
    assert isinstance(world.settle(recorded), Applied)
    assert tokens(world, world.agent, usd_token) == 10


def test_an_xrp_leg_the_engine_gives_a_custody_lock(escrow_world: World) -> None:
    """A settlement's second XRPL leg is held in custody even where it could be escrowed
    (one escrow per settlement): XRP moves through the agent like a token."""
    world = escrow_world
    alice, bob = world.alice.classic_address, world.bob.classic_address
    paid, returned = world.leg("30"), world.leg("20")
    world.chain.validate_leg(paid, kind=LockKind.CUSTODY)
    before = {a: world.ledger.xrp(a) for a in (alice, bob)}

    locks = []
    for leg in (paid, returned):
        lock_tx = world.chain.prepare_lock(leg, world.terms(), kind=LockKind.CUSTODY)
        assert decode(lock_tx.blob)["TransactionType"] == "Payment"
        assert isinstance(world.settle(lock_tx), Applied)
        assert lock_tx.lock_ref is not None
        locks.append((lock_tx.lock_ref, world.ledger.fee(lock_tx.tx_hash)))
    fulfillment = world.lock_secret.fulfillment_hex
    commit = world.chain.prepare_commit(paid, locks[0][0], fulfillment, held=True)
    assert isinstance(world.settle(commit), Applied)
    unwind = world.chain.prepare_unwind(returned, locks[1][0], held=True)
    assert isinstance(world.settle(unwind), Applied)

    lock_fees = locks[0][1] + locks[1][1]
    assert world.ledger.xrp(bob) == before[bob] + 30
    assert world.ledger.xrp(alice) == before[alice] - 30 - lock_fees

    world.ledger.setup(
        AccountSet(account=alice, set_flag=AccountSetAsfFlag.ASF_DEPOSIT_AUTH), world.alice
    )
    world.chain.validate_leg(paid)  # an escrow is cancelled back whatever alice accepts
    with pytest.raises(LegInvalid, match=f"sender {alice} requires deposit authorisation"):
        world.chain.validate_leg(paid, kind=LockKind.CUSTODY)
