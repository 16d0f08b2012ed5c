"""XRPL Tickets: one account's transactions in flight side by side, each on its own
ticket, on a local node that closes only when told."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from xrpl.core.binarycodec import decode

from adapters.chain import Applied, Expired, Pending, Purpose
from adapters.xrpl.chain import MAX_TICKETS_PER_ACCOUNT
from settlement.dvp.tickets import TicketKeeper, TicketTopUp, top_up_tickets
from tests.adapters.xrpl.test_xrpl_adapter import (
    World,
    make_chain,
    xrpl_world,
)


@pytest.fixture
def world() -> Iterator[World]:
    """Alice sends, bob receives, the agent commits; ledgers close only when told."""
    with xrpl_world() as w:
        yield w


def top_up(world: World, account: str, target: int) -> TicketTopUp:
    """A top-up on a node that closes only when told: each poll closes a ledger."""
    return top_up_tickets(world.chain, account, target, sleep=lambda _: world.close())


def _fields(blob: str) -> dict[str, object]:
    decoded: dict[str, object] = decode(blob)
    return decoded


def test_two_locks_of_one_sender_signed_before_either_applies_both_apply(world: World) -> None:
    alice = world.alice.classic_address
    assert world.chain.tickets(alice) == []
    report = top_up(world, alice, 3)
    assert isinstance(report.outcome, Applied), report
    assert (report.before, report.after) == (0, 3)
    sequence_after_top_up = world.ledger.next_sequence(world.alice)

    leg = world.leg("10")
    channels = world.chain.submission_channels(leg, Purpose.LOCK)
    tickets = world.chain.tickets(alice)
    assert channels == tuple(f"{alice}:{t}" for t in tickets)
    terms = world.terms()
    first, second = (world.chain.prepare_lock(leg, terms, channel=c) for c in channels[:2])
    for signed, ticket in ((first, tickets[0]), (second, tickets[1])):
        fields = _fields(signed.blob)
        assert (fields["Sequence"], fields["TicketSequence"]) == (0, ticket)
        assert signed.channel == f"{alice}:{ticket}"
        assert signed.lock_ref is not None
        assert signed.lock_ref.sequence == ticket, "the escrow is named by its ticket"
    for signed in (first, second):
        assert isinstance(world.chain.submit(signed), Pending)
    world.close()
    for signed in (first, second):
        assert isinstance(world.chain.status(signed), Applied)
        assert signed.lock_ref is not None
        assert world.ledger.escrow(signed.lock_ref) is not None
    assert world.chain.tickets(alice) == tickets[2:], "each applied lock spent its ticket"
    assert world.ledger.next_sequence(world.alice) == sequence_after_top_up, "Sequence untouched"

    # the agent commits on a ticket of its own; none offered until it holds some
    assert first.lock_ref is not None
    assert world.chain.submission_channels(leg, Purpose.COMMIT) == ()
    top_up(world, world.agent.classic_address, 1)
    (agent_ticket,) = world.chain.submission_channels(leg, Purpose.COMMIT)
    bob_before = world.ledger.xrp(world.bob.classic_address)
    commit = world.chain.prepare_commit(
        leg, first.lock_ref, world.lock_secret.fulfillment_hex, channel=agent_ticket
    )
    assert isinstance(world.settle(commit), Applied)
    assert world.ledger.xrp(world.bob.classic_address) == bob_before + Decimal(10)
    assert world.ledger.escrow(first.lock_ref) is None
    assert world.chain.tickets(world.agent.classic_address) == []


def test_tickets_offered_are_those_of_the_latest_validated_ledger(world: World) -> None:
    """The list is kept while no new ledger validates (asked again it costs a ``ledger``
    call, not a listing), and a ticket spent in a ledger is never offered after it."""
    alice = world.alice.classic_address
    top_up(world, alice, 3)
    leg = world.leg("10")
    offered = world.chain.submission_channels(leg, Purpose.LOCK)
    assert len(offered) == 3
    requests_before = world.ledger.node.rpc.calls["account_objects"]
    assert world.chain.submission_channels(leg, Purpose.LOCK) == offered
    assert world.ledger.node.rpc.calls["account_objects"] == requests_before
    spent = world.chain.prepare_lock(leg, world.terms(), channel=offered[0])
    assert isinstance(world.chain.submit(spent), Pending)
    world.close()
    assert isinstance(world.chain.status(spent), Applied)
    assert world.chain.submission_channels(leg, Purpose.LOCK) == offered[1:]


def test_a_ticket_whose_transaction_expired_is_used_again(world: World) -> None:
    alice = world.alice.classic_address
    top_up(world, alice, 1)
    leg = world.leg("5")
    (channel,) = world.chain.submission_channels(leg, Purpose.LOCK)
    unsent = world.chain.prepare_lock(leg, world.terms(), channel=channel)
    world.ledger.pass_expiry(unsent)
    assert isinstance(world.chain.status(unsent), Expired)
    assert world.chain.submission_channels(leg, Purpose.LOCK) == (channel,), "not spent"
    again = world.chain.prepare_lock(leg, world.terms(), channel=channel)
    assert again.tx_hash != unsent.tx_hash
    assert isinstance(world.settle(again), Applied)
    assert world.chain.submission_channels(leg, Purpose.LOCK) == ()


def test_a_channel_that_is_not_the_signers_ticket_is_refused(world: World) -> None:
    alice = world.alice.classic_address
    top_up(world, alice, 1)
    leg = world.leg("1")
    (alices,) = world.chain.submission_channels(leg, Purpose.LOCK)
    lock = world.lock(leg)[0]
    with pytest.raises(ValueError, match="not a ticket of"):
        # the agent signs a commit: the sender's ticket is not its own
        world.chain.prepare_commit(leg, lock, world.lock_secret.fulfillment_hex, channel=alices)
    for bad in (f"{alice}", f"{alice}:x", f"{alice}:0", "G" * 56):
        with pytest.raises(ValueError, match="not a ticket of"):
            world.chain.prepare_lock(leg, world.terms(), channel=bad)


def test_top_up_bounds_and_an_engine_told_not_to_use_tickets(world: World) -> None:
    alice = world.alice.classic_address
    for target in (0, MAX_TICKETS_PER_ACCOUNT + 1):
        with pytest.raises(ValueError, match="ticket target"):
            top_up(world, alice, target)
    top_up(world, alice, 2)
    again = top_up(world, alice, 2)
    assert (again.before, again.after, again.outcome, again.ok) == (2, 2, None, True)
    with pytest.raises(ValueError, match="can take 1 to 248 more"):
        world.chain.prepare_ticket_create(alice, MAX_TICKETS_PER_ACCOUNT - 1)
    assert world.ledger.node.url is not None
    plain = make_chain(
        world.ledger.node, world.ledger.keystore, world.agent.classic_address, use_tickets=False
    )
    assert plain.submission_channels(world.leg("1"), Purpose.LOCK) == ()


def test_the_keeper_tops_up_below_half_and_never_has_two_top_ups_open(world: World) -> None:
    alice = world.alice.classic_address
    keeper = TicketKeeper(world.chain, [alice, alice], target=4)
    assert (keeper.accounts, keeper.low_water) == ([alice], 2)
    signatures = world.ledger.keystore.signatures
    keeper.tend()
    keeper.tend()  # the first TicketCreate is not final yet: polled, not signed again
    assert world.ledger.keystore.signatures == signatures + 1
    assert world.chain.tickets(alice) == []
    world.close()
    keeper.tend()
    assert isinstance(keeper.last[alice], Applied)
    assert len(world.chain.tickets(alice)) == 4
    keeper.tend()
    assert world.ledger.keystore.signatures == signatures + 1, "at target: nothing to do"

    # spend three: one left, below half of 4, so the keeper asks for 3 more
    leg = world.leg("1")
    spent = [
        world.chain.prepare_lock(leg, world.terms(), channel=c)
        for c in world.chain.submission_channels(leg, Purpose.LOCK)[:3]
    ]
    for signed in spent:
        world.chain.submit(signed)
    world.close()
    assert len(world.chain.tickets(alice)) == 1
    keeper.tend()
    world.close()
    keeper.tend()
    assert len(world.chain.tickets(alice)) == 4
    with pytest.raises(ValueError, match="ticket target"):
        TicketKeeper(world.chain, [alice], target=0)


def test_the_keeper_signs_nothing_when_another_top_up_applied_since_it_counted(
    world: World,
) -> None:
    """Two workers tend one account: this one counted the tickets before the other's
    TicketCreate applied, so the difference it asks for no longer fits under 250."""
    alice = world.alice.classic_address
    top_up(world, alice, 200)

    class CountedEarlier:
        def __init__(self, inner: object) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

        def tickets(self, account: str) -> list[int]:
            return []  # what the ledger held when this worker looked

    keeper = TicketKeeper(CountedEarlier(world.chain), [alice], target=250)  # type: ignore[arg-type]
    signatures = world.ledger.keystore.signatures
    keeper.tend()
    assert world.ledger.keystore.signatures == signatures, "nothing signed"
    assert len(world.chain.tickets(alice)) == 200


def test_a_ticket_transaction_sent_again_after_it_applied_reads_as_applied(world: World) -> None:
    # sent again, the blob finds its own ticket spent (tefNO_TICKET): that must send the
    # engine to the status by hash, never read as a refusal that allows a new signature
    alice = world.alice.classic_address
    top_up(world, alice, 1)
    leg = world.leg("3")
    (channel,) = world.chain.submission_channels(leg, Purpose.LOCK)
    signed = world.chain.prepare_lock(leg, world.terms(), channel=channel)
    assert isinstance(world.chain.submit(signed), Pending)
    world.close()
    raw = world.ledger.raw("submit", tx_blob=signed.blob)
    assert raw["engine_result"] == "tefNO_TICKET", raw
    again = world.chain.submit(signed)
    assert isinstance(again, Applied), again
    assert again.tx_hash == signed.tx_hash
