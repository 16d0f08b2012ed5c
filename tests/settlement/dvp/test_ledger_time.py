"""Deadlines judged on every clock, and a ledger partitioned past the deadline margin.

The ledgers enforce CancelAfter (XRPL) and claim predicates (Stellar) against their own
close times; the engine's clock may run ahead of them or behind them. Here only one clock
moves at a time, on the real local networks, and after each scenario the invariants of
DESIGN section 8 are checked: no partial settlement, every unit of each asset accounted
for, one signature per leg and purpose, the audit chain verified against the ledgers.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

from ledger.settlements import SettlementRow
from settlement.domain.states import State
from settlement.domain.values import SYSTEM
from settlement.dvp import Progress

from .conftest import Dvp

BOND = Decimal(10)
PRICE = Decimal(1000)
DELIVERED = {
    "BND:seller": -BOND,
    "BND:buyer": BOND,
    "USDC:buyer": -PRICE,
    "USDC:seller": PRICE,
}


def _instruct(dvp: Dvp, cid: UUID, *, deadline_s: int, settle_in_s: int) -> UUID:
    now = dvp.world.clock.now()
    return dvp.coordinator.instruct(
        SYSTEM,
        cid,
        dvp.world.legs(BOND, PRICE),
        commit_deadline=now + timedelta(seconds=deadline_s),
        settle_not_before=now + timedelta(seconds=settle_in_s),
    )


def _escrowed(dvp: Dvp, cid: UUID, sid: UUID) -> SettlementRow:
    assert dvp.drive(sid, timeout_s=10, until=dvp.escrowed(cid)).progress is Progress.WAITING
    settlement, _, _ = dvp.coordinator.settlement(sid)
    return settlement


def _moved(before: dict[str, Decimal], after: dict[str, Decimal]) -> dict[str, Decimal]:
    return {k: after[k] - before[k] for k in before if after[k] != before[k]}


def _submissions(dvp: Dvp, sid: UUID) -> Counter[tuple[int, str, str]]:
    _, _, subs = dvp.coordinator.settlement(sid)
    return Counter((s.leg_no, s.purpose, s.status) for s in subs)


def _xrpl_ledger_seconds_to(dvp: Dvp, moment_s: float) -> int:
    """Whole seconds to add to the XRPL node's clock for its next close to be past
    ``moment_s`` (Unix), from wherever its ledger time stands now."""
    node = dvp.world.xrpl_node
    behind = moment_s - node.clock.unix_now_s()
    return max(0, int(behind)) + 30


def test_ledger_clock_ahead_near_the_deadline_aborts_instead_of_a_commit_it_would_refuse(
    dvp: Dvp,
) -> None:
    world = dvp.world
    cid = dvp.verified_commitment(str(PRICE))
    before = world.holdings()
    sid = _instruct(dvp, cid, deadline_s=600, settle_in_s=60)
    settlement = _escrowed(dvp, cid, sid)
    # The XRPL ledger's clock runs past T_cancel while the engine's is still well before
    # the deadline: an EscrowFinish now would be refused (tecNO_PERMISSION) after the
    # Stellar leg had paid, a partial settlement.
    world.xrpl_node.advance_time(_xrpl_ledger_seconds_to(dvp, settlement.cancel_after.timestamp()))
    world.xrpl_node.close_ledger()
    world.clock.advance(timedelta(seconds=61))  # the settlement date, on the engine's clock
    assert world.clock.now() < settlement.commit_deadline
    result = dvp.drive(sid)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    settlement, legs, _ = dvp.coordinator.settlement(sid)
    assert settlement.decision == "ABORT"
    assert "xrpl ledger's clock" in (settlement.decision_reason or "")
    assert not settlement.needs_review
    assert [leg.state for leg in legs] == ["UNWOUND", "UNWOUND"]
    # the escrow was cancelled on the ledger's time, long before the engine's T_cancel
    assert world.clock.now() < settlement.cancel_after
    assert _submissions(dvp, sid) == Counter(
        {(0, "lock", "APPLIED"): 1, (1, "lock", "APPLIED"): 1}
        | {(0, "unwind", "APPLIED"): 1, (1, "unwind", "APPLIED"): 1}
    )
    assert dvp.engine.commitments.state_of(cid) is State.VERIFIED
    assert _moved(before, world.holdings()) == {}
    dvp.verify_audit()


def test_ledger_clock_ahead_but_before_the_deadline_still_settles(dvp: Dvp) -> None:
    world = dvp.world
    cid = dvp.verified_commitment(str(PRICE))
    before = world.holdings()
    sid = _instruct(dvp, cid, deadline_s=900, settle_in_s=60)
    _escrowed(dvp, cid, sid)
    world.xrpl_node.advance_time(400)  # ahead of the engine, still before the deadline
    world.xrpl_node.close_ledger()
    world.clock.advance(timedelta(seconds=61))
    result = dvp.drive(sid)
    assert (result.progress, result.status) == (Progress.DONE, "SETTLED"), result
    assert dvp.engine.commitments.state_of(cid) is State.SETTLED
    assert _moved(before, world.holdings()) == DELIVERED
    dvp.verify_audit()


def test_ledger_clock_behind_the_engine_unwinds_the_escrow_only_on_ledger_time(
    dvp: Dvp,
) -> None:
    world = dvp.world
    cid = dvp.verified_commitment(str(PRICE))
    before = world.holdings()
    sid = _instruct(dvp, cid, deadline_s=60, settle_in_s=50)
    _escrowed(dvp, cid, sid)
    # Only the engine's clock passes the deadline and T_cancel; the XRPL ledger's does
    # not, so it would refuse an EscrowCancel (tecNO_PERMISSION, a fee and an attempt).
    world.clock.advance(timedelta(seconds=3_000))
    world.stellar_node.advance_time(3_000)

    def stellar_unwound() -> bool:
        _, legs, _ = dvp.coordinator.settlement(sid)
        return legs[0].state == "UNWOUND"

    dvp.drive(sid, timeout_s=10, until=stellar_unwound)
    for _ in range(20):  # steps on: nothing may be sent the ledger would refuse
        result = dvp.coordinator.step(sid)
        time.sleep(0.02)
    assert (result.progress, result.status) == (Progress.WAITING, "UNWINDING"), result
    settlement, legs, subs = dvp.coordinator.settlement(sid)
    assert settlement.decision == "ABORT" and not settlement.needs_review
    assert [leg.state for leg in legs] == ["UNWOUND", "LOCKED"]
    assert not [s for s in subs if s.leg_no == 1 and s.purpose == "unwind"]
    assert "ledger's time passes CancelAfter" in result.detail
    world.xrpl_node.advance_time(_xrpl_ledger_seconds_to(dvp, settlement.cancel_after.timestamp()))
    result = dvp.drive(sid)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    assert _submissions(dvp, sid)[(1, "unwind", "APPLIED")] == 1
    statuses = {status for (_, _, status) in _submissions(dvp, sid)}
    assert statuses == {"APPLIED"}, "no signature the ledger refused or let expire"
    assert dvp.engine.commitments.state_of(cid) is State.VERIFIED
    assert _moved(before, world.holdings()) == {}
    dvp.verify_audit()


def test_partition_past_the_deadline_margin_flags_waits_and_returns_every_leg(
    dvp: Dvp,
) -> None:
    """The XRP Ledger is unreachable from just after COMMIT until too close to T_cancel
    for a finish to be signed (the commit-send margin). The Stellar balance is claimed
    into the agent meanwhile (Stellar is reachable), nothing is paid, a person is told;
    after healing the USDC goes back from the agent and the escrow once the ledger is
    past CancelAfter: every leg returned, nothing stranded."""
    world = dvp.world
    cid = dvp.verified_commitment(str(PRICE))
    before = world.holdings()
    sid = _instruct(dvp, cid, deadline_s=600, settle_in_s=60)
    _escrowed(dvp, cid, sid)
    world.advance_time(61)

    def decided() -> bool:
        return dvp.coordinator.settlement(sid)[0].decision is not None

    dvp.drive(sid, timeout_s=10, until=decided)
    settlement, _, _ = dvp.coordinator.settlement(sid)
    assert settlement.decision == "COMMIT"
    world.xrpl_node.faults.partition(600)
    try:
        for _ in range(10):
            result = dvp.coordinator.step(sid)
        assert result.progress is Progress.WAITING, result
        assert world.guards[world.chains["xrpl"].name].state.state == "open"
        _, legs, _ = dvp.coordinator.settlement(sid)
        assert [leg.state for leg in legs] == ["HELD", "LOCKED"], "claimed, nothing paid"
        # the partition lasts until less than the review margin is left before T_cancel
        remaining_s = 50
        assert remaining_s < dvp.coordinator.policy.review_before_cancel_s
        to_margin = settlement.cancel_after - world.clock.now() - timedelta(seconds=remaining_s)
        world.advance_time(int(to_margin.total_seconds()))
        # the ledger goes on closing while the engine cannot reach it
        world.xrpl_node.close_ledger()
        world.xrpl_node.close_ledger()
        result = dvp.coordinator.step(sid)
        assert result.progress is Progress.NEEDS_REVIEW, result
        flagged, legs, subs = dvp.coordinator.settlement(sid)
        assert flagged.needs_review and "before T_cancel" in (flagged.review_reason or "")
        assert [s.id for s in dvp.engine.settlements.flagged()] == [sid]
        actions = [e.action for e in dvp.engine.commitments.audit_trail(cid)]
        assert actions.count("settlement_flagged") == 1
        # work waits: nothing signed for the unreachable ledger, nothing reported SETTLED
        for _ in range(5):
            assert dvp.coordinator.step(sid).progress is Progress.NEEDS_REVIEW
        assert not [s for s in subs if s.leg_no == 1 and s.purpose == "commit"]
        assert dvp.engine.commitments.state_of(cid) is State.ESCROWED
    finally:
        world.xrpl_node.faults.heal()
    time.sleep(0.6)  # the breaker lets a trial call through after its reset timeout

    # a flagged settlement keeps being stepped (as the worker does): too close to
    # T_cancel for a finish, it returns. No finish was ever signed, so the fulfillment
    # never left the engine and nobody can finish the escrow: the USDC goes back at
    # once, the escrow once the ledger passes CancelAfter
    for _ in range(20):
        result = dvp.coordinator.step(sid)
        time.sleep(0.05)
    assert [leg.state for leg in dvp.coordinator.settlement(sid)[1]] == ["UNWOUND", "LOCKED"]
    world.advance_time(120)
    world.xrpl_node.close_ledger()
    deadline = time.monotonic() + 30
    result = dvp.coordinator.step(sid)
    while result.progress is not Progress.DONE and time.monotonic() < deadline:
        time.sleep(0.02)
        result = dvp.coordinator.step(sid)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    assert dvp.coordinator.settlement(sid)[0].decision == "COMMIT"
    assert dvp.engine.commitments.state_of(cid) is State.VERIFIED
    assert _submissions(dvp, sid) == Counter(
        {(0, "lock", "APPLIED"): 1, (1, "lock", "APPLIED"): 1, (0, "claim", "APPLIED"): 1}
        | {(0, "unwind", "APPLIED"): 1, (1, "unwind", "APPLIED"): 1}
    )
    assert _moved(before, world.holdings()) == {}
    dvp.verify_audit()
