"""No partial settlement, whatever the ledgers do: the review's findings on the local
networks, with the ledger rules and faults that make a payout fail.

Each test drives a real settlement (real adapters, real HTTP, real PostgreSQL) into the
failure the review reproduced, and checks the ledgers' balances: every leg moved, or
none did, or the funds wait with the agent for a person. Never one side paid and the
other returned.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from xrpl.models.transactions import AccountSet, AccountSetAsfFlag

from ledger.settlements import LegRow, settlements_of
from settlement.domain import errors
from settlement.domain.states import State
from settlement.domain.values import SYSTEM
from settlement.dvp import Progress, StepResult
from tests.support import ADMIN

from .conftest import Dvp

BOND = Decimal(10)
PRICE = Decimal(400)

PAID = {"BND:seller": -BOND, "BND:buyer": BOND, "USDC:buyer": -PRICE, "USDC:seller": PRICE}


def _moved(before: dict[str, Decimal], after: dict[str, Decimal]) -> dict[str, Decimal]:
    return {k: after[k] - before[k] for k in before if after[k] != before[k]}


def _legs(dvp: Dvp, sid: UUID) -> list[LegRow]:
    return dvp.coordinator.settlement(sid)[1]


def _leg_state(dvp: Dvp, sid: UUID, leg_no: int, state: str) -> Callable[[], bool]:
    return lambda: _legs(dvp, sid)[leg_no].state == state


def _instruct(dvp: Dvp, deadline_s: int = 600) -> tuple[UUID, UUID]:
    cid = dvp.verified_commitment(str(PRICE))
    sid = dvp.coordinator.instruct(
        SYSTEM,
        cid,
        dvp.world.legs(BOND, PRICE),
        commit_deadline=dvp.world.clock.now() + timedelta(seconds=deadline_s),
    )
    return cid, sid


def test_a_receiver_refusing_the_finish_after_commit_returns_every_leg(dvp: Dvp) -> None:
    """Finding 2: the buyer sets deposit authorisation after the lock, so the agent's
    EscrowFinish is refused for good (tecNO_PERMISSION). Nothing has been paid: the USDC
    waits with the agent until the escrow is back with the seller after CancelAfter,
    then goes back to the buyer. Before, the USDC was paid to the seller in the same
    pass and the bond went back too."""
    world = dvp.world
    before = world.holdings()
    cid, sid = _instruct(dvp)
    assert dvp.drive(sid, until=_leg_state(dvp, sid, 0, "HELD")).progress is Progress.WAITING
    world.xrpl.send(
        AccountSet(
            account=world.buyer_xrpl.classic_address, set_flag=AccountSetAsfFlag.ASF_DEPOSIT_AUTH
        ),
        world.buyer_xrpl,
    )
    result = dvp.drive(sid, timeout_s=20)
    assert result.progress is Progress.NEEDS_REVIEW, result
    assert [leg.state for leg in _legs(dvp, sid)] == ["HELD", "REFUSED"]
    settlement = dvp.coordinator.settlement(sid)[0]
    assert "returning every leg" in (settlement.review_reason or "") or "refused" in (
        settlement.review_reason or ""
    )
    assert _moved(before, world.holdings()) == {
        "BND:seller": -BOND,
        "USDC:buyer": -PRICE,
        "USDC:agent": PRICE,
    }, "nothing paid out while the escrow could still be finished"

    dvp.past_cancel_after(sid)
    result = dvp.to_rest(sid)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    assert [leg.state for leg in _legs(dvp, sid)] == ["UNWOUND", "UNWOUND"]
    assert _moved(before, world.holdings()) == {}, "every leg back with its sender"
    assert dvp.engine.commitments.state_of(cid) is State.VERIFIED
    assert dvp.coordinator.settlement(sid)[0].decision == "COMMIT"
    dvp.verify_audit()


def test_the_xrpl_partitioned_past_cancel_after_returns_every_leg(dvp: Dvp) -> None:
    """Finding 2, the other way: the XRP Ledger is unreachable from COMMIT until past
    CancelAfter. No finish can be signed in time; the USDC, already with the agent, goes
    back once the escrow is cancelled."""
    world = dvp.world
    assert world.xrpl_node is not None
    before = world.holdings()
    cid, sid = _instruct(dvp)
    assert dvp.drive(sid, until=_leg_state(dvp, sid, 0, "HELD")).progress is Progress.WAITING
    world.xrpl_node.faults.partition(3600)
    try:
        dvp.drive(sid, timeout_s=3)
        dvp.past_cancel_after(sid)
        # the ledger goes on closing while the engine cannot reach it
        world.xrpl_node.close_ledger()
        world.xrpl_node.close_ledger()
        dvp.drive(sid, timeout_s=3)
        assert _legs(dvp, sid)[0].state == "HELD", "never paid back while the ledger is away"
    finally:
        world.xrpl_node.faults.heal()
    result = dvp.to_rest(sid)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    assert _moved(before, world.holdings()) == {}
    assert dvp.engine.commitments.state_of(cid) is State.VERIFIED
    dvp.verify_audit()


def test_a_payee_refusing_the_payout_after_the_claim_leaves_the_funds_with_the_agent(
    dvp: Dvp,
) -> None:
    """Finding 3: the seller lowers its USDC trust line after the agent claimed the
    balance. The payout is refused, but the claim stands (it was a transaction of its
    own): the bond is delivered, the USDC waits with the agent, and a person is told;
    once the line is back, an admin's retry pays it."""
    world = dvp.world
    before = world.holdings()
    cid, sid = _instruct(dvp)
    assert dvp.drive(sid, until=_leg_state(dvp, sid, 0, "HELD")).progress is Progress.WAITING
    world.stellar.trust(world.seller_stellar, world.usdc, Decimal(1))
    result = dvp.drive(sid, timeout_s=20)
    assert result.progress is Progress.NEEDS_REVIEW, result
    assert [leg.state for leg in _legs(dvp, sid)] == ["REFUSED", "COMMITTED"]
    assert _moved(before, world.holdings()) == {
        "BND:seller": -BOND,
        "BND:buyer": BOND,
        "USDC:buyer": -PRICE,
        "USDC:agent": PRICE,
    }
    assert dvp.engine.commitments.state_of(cid) is State.ESCROWED

    world.stellar.trust(world.seller_stellar, world.usdc)
    dvp.engine.settlements.retry(ADMIN, sid, "the seller restored its USDC trust line")
    result = dvp.drive(sid, timeout_s=20)
    assert (result.progress, result.status) == (Progress.DONE, "SETTLED"), result
    assert _moved(before, world.holdings()) == PAID
    dvp.verify_audit()


def test_a_receiver_finishing_the_escrow_itself_is_read_as_paid(dvp: Dvp) -> None:
    """Finding 4: once the agent's finish was refused (deposit authorisation on the
    buyer), its fulfillment is public, and the buyer finishes the escrow itself. The
    engine finds the escrow gone to its receiver when it comes to cancel it, records
    the leg as paid by that transaction, and pays the USDC forward."""
    world = dvp.world
    before = world.holdings()
    cid, sid = _instruct(dvp)
    assert dvp.drive(sid, until=_leg_state(dvp, sid, 0, "HELD")).progress is Progress.WAITING
    world.xrpl.send(
        AccountSet(
            account=world.buyer_xrpl.classic_address, set_flag=AccountSetAsfFlag.ASF_DEPOSIT_AUTH
        ),
        world.buyer_xrpl,
    )
    assert dvp.drive(sid, timeout_s=20).progress is Progress.NEEDS_REVIEW
    leg = _legs(dvp, sid)[1]
    assert leg.state == "REFUSED" and leg.lock_owner is not None
    refused = next(
        s for s in dvp.coordinator.settlement(sid)[2] if s.leg_no == 1 and s.purpose == "commit"
    )
    fulfillment = _fulfillment_of(dvp, refused.tx_hash)
    finished = dvp.finish_as_receiver(leg, fulfillment)
    dvp.past_cancel_after(sid)
    result = dvp.to_rest(sid)
    assert (result.progress, result.status) == (Progress.DONE, "SETTLED"), result
    bond_leg = _legs(dvp, sid)[1]
    assert bond_leg.state == "COMMITTED"
    assert bond_leg.released_tx_hash == finished
    assert bond_leg.released_to == world.buyer_xrpl.classic_address
    assert _moved(before, world.holdings()) == PAID
    actions = [e.action for e in dvp.engine.commitments.audit_trail(cid)]
    assert "leg_paid_by_release" in actions
    dvp.verify_audit()


def test_a_sender_reclaiming_its_balance_is_read_as_returned(dvp: Dvp) -> None:
    """Finding 4, the sender's side: a settlement aborts while Stellar is unreachable
    until past T_cancel, and the buyer reclaims its balance itself. The engine's unwind
    finds it gone back to the sender and records it as returned."""
    world = dvp.world
    assert world.stellar_node is not None
    before = world.holdings()
    cid, sid = _instruct(dvp, deadline_s=30)
    assert dvp.drive(sid, until=_leg_state(dvp, sid, 0, "LOCKED")).progress is Progress.WAITING
    balance_id = _legs(dvp, sid)[0].lock_balance_id
    assert balance_id is not None
    world.stellar_node.faults.partition()
    try:
        world.advance_time(31)
        dvp.drive(sid, timeout_s=3)
        dvp.past_cancel_after(sid)
    finally:
        world.stellar_node.faults.heal()
    dvp.reclaim(balance_id)
    result = dvp.to_rest(sid)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    stellar_leg = _legs(dvp, sid)[0]
    assert stellar_leg.state == "UNWOUND"
    assert stellar_leg.released_to == world.buyer_stellar.public_key
    assert _moved(before, world.holdings()) == {}
    assert dvp.engine.commitments.state_of(cid) is State.VERIFIED
    dvp.verify_audit()


def _fulfillment_of(dvp: Dvp, tx_hash: str) -> str:
    """The fulfillment as anyone reads it from the ledger: the refused finish is in a
    validated ledger with its Fulfillment field."""
    answer = dvp.world.xrpl.rpc("tx", transaction=tx_hash)
    tx = answer.get("tx_json", answer)
    return str(tx["Fulfillment"])


@pytest.mark.parametrize("dvp", [{"stellar_channels": 0, "extra_buyers": 5}], indirect=True)
@pytest.mark.timeout(300)
def test_sequence_contention_never_stops_a_roll_forward(dvp: Dvp) -> None:
    """Finding 1: six settlements committing in the same closes, with no channel
    accounts, so every claim and payout of the agent races for one Stellar sequence
    (tx_bad_seq) and every finish for one XRPL sequence. Refusals that never reached a
    ledger are signed again, however many: every settlement that decided COMMIT ends
    SETTLED, nobody is asked to help, and each buyer paid exactly for its bond."""
    world = dvp.world
    assert world.xrpl_node is not None and world.stellar_node is not None
    # provisioned on fast closes; settled on 1 s closes, as the review reproduced it
    world.xrpl_node.close_interval_s = 1.0
    world.stellar_node.close_interval_s = 1.0
    buyers = [world.buyer_stellar, *world.extra_buyers]
    before = world.holdings()
    sids = []
    for buyer in buyers:
        cid = dvp.verified_commitment(str(PRICE))
        sids.append(
            dvp.coordinator.instruct(
                SYSTEM,
                cid,
                world.legs(BOND, PRICE, buyer_stellar=buyer),
                commit_deadline=world.clock.now() + timedelta(seconds=600),
            )
        )
    with ThreadPoolExecutor(len(sids)) as pool:
        results = list(pool.map(lambda sid: dvp.to_rest(sid, timeout_s=120), sids))
    outcomes = Counter(r.status for r in results)
    assert all(r.progress is Progress.DONE for r in results), results
    settled = outcomes["SETTLED"]
    assert settled + outcomes["UNWOUND"] == len(sids)
    for sid, result in zip(sids, results, strict=True):
        settlement, legs, _ = dvp.coordinator.settlement(sid)
        if settlement.decision == "COMMIT":
            assert result.status == "SETTLED", (sid, [leg.state for leg in legs])
        assert not settlement.needs_review, settlement.review_reason
    after = world.holdings()
    assert after["BND:buyer"] - before["BND:buyer"] == BOND * settled
    assert after["USDC:seller"] - before["USDC:seller"] == PRICE * settled
    assert after["USDC:agent"] == before["USDC:agent"]
    refused_before_a_ledger = [
        s
        for sid in sids
        for s in dvp.coordinator.settlement(sid)[2]
        if s.status == "REJECTED" and s.ledger_index is None and s.purpose != "lock"
    ]
    print(f"outcomes {dict(outcomes)}; {len(refused_before_a_ledger)} refusals before a ledger")


def test_a_cancel_requested_while_deciding_wins_under_the_row_lock(
    dvp: Dvp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 6: an admin's force-cancel recorded after the coordinator read the
    settlement but before it wrote COMMIT. The decision is taken under the settlement's
    row lock, where the cancel is seen: ABORT, every leg back."""
    world = dvp.world
    before = world.holdings()
    cid, sid = _instruct(dvp)
    coordinator = dvp.coordinator
    real = coordinator._decide_on_every_clock

    def cancel_first(s: Any, legs: Any) -> StepResult:
        coordinator.request_force_cancel(ADMIN, sid, "the deal was pulled")
        return real(s, legs)

    monkeypatch.setattr(coordinator, "_decide_on_every_clock", cancel_first)
    # until decided: the escrow cannot go back before CancelAfter, so it would not rest
    coordinator.run_to_end(
        sid, timeout_s=20, until=lambda: coordinator.settlement(sid)[0].decision is not None
    )
    settlement = coordinator.settlement(sid)[0]
    assert settlement.decision == "ABORT", settlement.decision_reason
    assert "force-cancel" in (settlement.decision_reason or "")
    # the escrow goes back once past CancelAfter
    dvp.past_cancel_after(sid)
    result = dvp.to_rest(sid)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    assert _moved(before, world.holdings()) == {}
    assert dvp.engine.commitments.state_of(cid) is State.CANCELLED


def test_legs_whose_payout_the_ledger_would_refuse_are_refused_before_anything_is_signed(
    dvp: Dvp,
) -> None:
    """Bad input: deposit authorisation on the bond's receiver, then a payee's trust line
    too small for the USDC. Each instruction is refused with the leg and the ledger rule
    named, and nothing is written or locked."""
    world = dvp.world
    cid = dvp.verified_commitment(str(PRICE))
    deadline = world.clock.now() + timedelta(seconds=600)
    world.xrpl.send(
        AccountSet(
            account=world.buyer_xrpl.classic_address, set_flag=AccountSetAsfFlag.ASF_DEPOSIT_AUTH
        ),
        world.buyer_xrpl,
    )
    with pytest.raises(errors.InvalidInput, match=r"leg 1 \(xrpl BND\): .*deposit") as refused:
        dvp.coordinator.instruct(SYSTEM, cid, world.legs(BOND, PRICE), commit_deadline=deadline)
    assert world.buyer_xrpl.classic_address in str(refused.value)
    world.xrpl.send(
        AccountSet(
            account=world.buyer_xrpl.classic_address,
            clear_flag=AccountSetAsfFlag.ASF_DEPOSIT_AUTH,
        ),
        world.buyer_xrpl,
    )
    world.stellar.trust(world.seller_stellar, world.usdc, Decimal(1))
    with pytest.raises(errors.InvalidInput, match=r"leg 0 \(stellar USDC\): .*op_line_full"):
        dvp.coordinator.instruct(SYSTEM, cid, world.legs(BOND, PRICE), commit_deadline=deadline)
    with dvp.engine.db.unit_of_work() as uow:
        assert settlements_of(uow, cid) == [], "nothing was written"
    assert dvp.engine.commitments.state_of(cid) is State.VERIFIED


def test_lagging_servers_never_make_a_transaction_look_never_applied(dvp: Dvp) -> None:
    """Finding 5: half the reads of both ledgers come from a server several ledgers
    behind. A lagging answer can make an applied lock look absent; the engine concludes
    "never applied" only from one server's whole-window answer, proved twice, so it
    never signs a second transaction for a purpose, and the settlement settles."""
    world = dvp.world
    assert world.xrpl_node is not None and world.stellar_node is not None
    before = world.holdings()
    cid, sid = _instruct(dvp)
    # from the first lock on (an instruction check read from a lagging server may
    # refuse a leg: safe, and simply asked again)
    world.xrpl_node.faults.lagging_server(3, share=0.5)
    world.stellar_node.faults.lagging_server(3, share=0.5, seed=7)
    try:
        result = dvp.to_rest(sid, timeout_s=60)
    finally:
        world.xrpl_node.faults.clear()
        world.stellar_node.faults.clear()
    assert (result.progress, result.status) == (Progress.DONE, "SETTLED"), result
    subs = dvp.coordinator.settlement(sid)[2]
    applied = Counter((s.leg_no, s.purpose) for s in subs if s.status == "APPLIED")
    assert set(applied.values()) == {1}, applied
    for leg_no, purpose in applied:
        tries = sorted(
            (s for s in subs if (s.leg_no, s.purpose) == (leg_no, purpose)),
            key=lambda s: s.signed_at,
        )
        for earlier, later in itertools.pairwise(tries):
            # a second signature only once the first was final, and never applied
            assert earlier.status in ("REJECTED", "EXPIRED"), earlier
            assert earlier.ledger_index is None, earlier
            assert earlier.finalized_at is not None and earlier.finalized_at <= later.signed_at
    assert _moved(before, world.holdings()) == PAID
    assert dvp.engine.commitments.state_of(cid) is State.SETTLED
