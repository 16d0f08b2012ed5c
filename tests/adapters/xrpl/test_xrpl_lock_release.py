"""Locks released by someone else, read back from the ledger (``lock_release``).

Once the fulfillment is public the receiver may finish an escrow itself, and after
CancelAfter anyone may cancel it back to its owner. The engine must read which it was,
from one validated transaction, and never conclude anything from a stale server's
answer: on a node that closes only when told.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.transactions import (
    AccountSet,
    EscrowCancel,
    EscrowCreate,
    EscrowFinish,
    Payment,
    Transaction,
)
from xrpl.transaction import sign
from xrpl.wallet import Wallet

import adapters.xrpl.chain as xrpl_chain
from adapters.chain import ChainName, LockRef, LockState, Released, Unavailable
from adapters.xrpl.chain import ripple_seconds
from tests.adapters.xrpl.test_xrpl_adapter import (
    World,
    usd_world,
    xrpl_world,
)

GENESIS = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"
#: what an EscrowFinish with a 32-byte preimage's fulfillment costs (33 + 36 // 16 units)
FINISH_FEE_DROPS = "350"


@pytest.fixture
def world() -> Iterator[World]:
    with xrpl_world() as w:
        yield w


def send(world: World, tx: Transaction, wallet: Wallet, fee: str = "10") -> str:
    """Sign ``tx`` for ``wallet`` outside the adapter, submit it, close: it must apply."""
    fields = tx.to_dict() | {"sequence": world.ledger.next_sequence(wallet), "fee": fee}
    signed = sign(type(tx).from_dict(fields), wallet)
    answer = world.ledger.raw("submit", tx_blob=signed.blob())
    assert answer["engine_result"] == "tesSUCCESS", answer
    world.close()
    return str(answer["tx_json"]["hash"])


def finish_by_receiver(world: World, lock: LockRef) -> str:
    """Bob finishes the escrow himself with the (public) fulfillment."""
    assert lock.sequence is not None
    finish = EscrowFinish(
        account=world.bob.classic_address,
        owner=lock.owner,
        offer_sequence=lock.sequence,
        condition=world.lock_secret.condition_hex,
        fulfillment=world.lock_secret.fulfillment_hex,
    )
    return send(world, finish, world.bob, fee=FINISH_FEE_DROPS)


def header_hash(world: World, index: int) -> str:
    return str(world.ledger.raw("ledger", ledger_index=index)["ledger_hash"])


def test_an_escrow_still_on_the_ledger_is_not_released(world: World) -> None:
    lock, _ = world.lock(world.leg("10"))
    assert world.chain.lock_release(lock) is None


def test_the_receiver_finishing_the_escrow_itself_is_read_as_paid(world: World) -> None:
    lock, _ = world.lock(world.leg("12.5"))
    tx_hash = finish_by_receiver(world, lock)
    state = world.chain.lock_state(lock)
    assert isinstance(state, LockState) and not state.exists

    released = world.chain.lock_release(lock)
    assert isinstance(released, Released), released
    index = int(world.ledger.raw("tx", transaction=tx_hash)["ledger_index"])
    assert released == Released(
        lock=lock,
        to=world.bob.classic_address,
        tx_hash=tx_hash,
        ledger_index=index,
        ledger_hash=header_hash(world, index),
        delivered=Decimal("12.5"),
    )


def test_the_sender_cancelling_after_cancel_after_is_read_as_returned(world: World) -> None:
    lock, terms = world.lock(world.leg("7"), cancel_in_s=60)
    world.ledger.node.advance_time(90)
    world.close()
    assert world.ledger.close_time() > ripple_seconds(terms.cancel_after)
    assert lock.sequence is not None
    cancel = EscrowCancel(
        account=world.alice.classic_address, owner=lock.owner, offer_sequence=lock.sequence
    )
    tx_hash = send(world, cancel, world.alice)

    released = world.chain.lock_release(lock)
    assert isinstance(released, Released), released
    assert (released.to, released.tx_hash, released.delivered) == (
        world.alice.classic_address,
        tx_hash,
        Decimal(7),
    )
    assert released.ledger_hash == header_hash(world, released.ledger_index)


def test_a_token_escrow_reports_what_arrived_after_the_transfer_fee(world: World) -> None:
    usd = usd_world(world)
    assert usd.issuer is not None
    issuer = world.ledger.keystore._xrpl[usd.issuer]  # the test's own keystore
    send(world, AccountSet(account=usd.issuer, transfer_rate=1_250_000_000), issuer)
    # an escrow locked under a 25 % fee (which the instruction check refuses), made by hand
    sequence = world.ledger.next_sequence(world.alice)
    create = EscrowCreate(
        account=world.alice.classic_address,
        destination=world.bob.classic_address,
        amount=IssuedCurrencyAmount(currency="USD", issuer=usd.issuer, value="40"),
        condition=world.lock_secret.condition_hex,
        cancel_after=ripple_seconds(world.ledger.now() + timedelta(hours=1)),
    )
    send(world, create, world.alice)
    lock = LockRef(ChainName.XRPL, world.alice.classic_address, sequence)
    finish_by_receiver(world, lock)

    released = world.chain.lock_release(lock)
    assert isinstance(released, Released), released
    assert released.to == world.bob.classic_address
    assert released.delivered == Decimal(32) == world.ledger.tokens(released.to, usd.issuer)


def test_a_lagging_server_never_makes_a_release_look_otherwise(world: World) -> None:
    lock, _ = world.lock(world.leg("10"))
    finish_by_receiver(world, lock)
    for _ in range(2):
        world.close()
    faults = world.ledger.node.faults

    # every read from a server that has not seen the finish: the escrow is still there
    faults.lagging_server(ledgers_behind=3, share=1)
    assert world.chain.lock_release(lock) is None
    # a fresh "absent" then a stale history without the finish: not found yet, never
    # "returned" or "paid" from two servers' answers put together
    faults.lagging_server(ledgers_behind=3, share=Fraction(1, 2))
    for _ in range(4):
        assert world.chain.lock_release(lock) is None
    status = world.ledger.raw("localnet_faults", action="status")["faults"]["lagging_server"]
    assert status["stale_reads"] == 4, "each history read came from the lagging server"
    faults.clear()
    released = world.chain.lock_release(lock)
    assert isinstance(released, Released) and released.to == world.bob.classic_address


def test_the_history_is_read_page_by_page_down_to_the_lock(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xrpl_chain, "HISTORY_PAGE", 2)
    calls = world.ledger.node.rpc.calls
    tip = Payment(account=world.alice.classic_address, destination=GENESIS, amount="1")
    for _ in range(4):  # older history of the owner
        send(world, tip, world.alice)
    lock, _ = world.lock(world.leg("10"))
    assert lock.sequence is not None
    finish_by_receiver(world, lock)
    for _ in range(3):  # newer history: the finish is fourth, on the second page
        send(world, tip, world.alice)

    before = calls["account_tx"]
    released = world.chain.lock_release(lock)
    assert isinstance(released, Released) and released.to == world.bob.classic_address
    assert calls["account_tx"] - before == 2

    # a sequence spent by a plain payment (as a custody lock's): no escrow ever had it;
    # the search stops at that payment instead of reading the whole history
    custody_like = LockRef(ChainName.XRPL, world.alice.classic_address, lock.sequence - 1)
    before = calls["account_tx"]
    assert world.chain.lock_release(custody_like) is None
    assert calls["account_tx"] - before == 3


def test_an_unreachable_ledger_is_unavailable_never_absent(world: World) -> None:
    lock, _ = world.lock(world.leg("10"))
    world.ledger.node.faults.partition(60)
    try:
        answer = world.chain.lock_release(lock)
        assert isinstance(answer, Unavailable), answer
    finally:
        world.ledger.node.faults.heal()
