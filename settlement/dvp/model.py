"""An exhaustive check of the commit protocol: every interleaving, every ledger answer.

The model is the coordinator's own decisions (``protocol.lock_plan`` and
``protocol.plan``, the functions ``coordinator.py`` follows) against a small world:

- each leg's funds are in one place on its ledger: with the ``sender`` before the lock,
  ``locked`` (escrow or claimable balance), with the ``agent``, with the ``receiver``,
  or ``back`` with the sender after a lock;
- the engine's records: the settlement's status and decision, each leg's state, the
  transactions signed and not yet final (at most one per purpose), the purposes stuck
  after a refusal, whether an escrow finish was ever signed (its fulfillment is then
  public);
- time on the escrow ledger: before the commit deadline, after it but still open for a
  finish, too close to CancelAfter for a finish, past CancelAfter.

Every engine action is one database transaction of the real coordinator, and the
engine keeps nothing else (the "expired" re-check only delays), so a crash and restart
between any two actions is already every interleaving explored; a crash between
signing and sending leaves an open transaction that may never reach a ledger, which is
one of its fates. A transaction in flight meets one of: applied (only if the ledger's
rules allow it at that moment: a finish before CancelAfter on an existing escrow, a
cancel after it, a payout from funds the agent holds, ...), refused inside a ledger (a
payout refused by the receiver's side, a claim by the agent's side, or anything whose
lock is gone), or never applied (refused before a ledger, lost, expired: for the
protocol these are one fate; stale reads are polls that learn nothing, so they change
no state). Third parties act whenever the ledger lets them: the receiver finishes an
escrow whose fulfillment is public before CancelAfter; anyone cancels an escrow, and
the sender reclaims a balance, after T_cancel. An admin may ask to cancel before the
decision, and may retry (reset) a settlement that waits for a person.

Checked in every reachable state: never one leg with its receiver while another went
back to its sender; at most one transaction in flight per leg; a settlement closed
SETTLED has every leg with its receiver, one closed UNWOUND every leg with its sender;
every change of the settlement's status or a leg's state is a move the domain's tables
allow (``settlement.domain.settlements``, the database's own rules); and a state
nothing can move (no engine action, no ledger event) is closed, or waits for a person
after a ledger refused something inside a ledger (never because of refusals before a
ledger, lost answers or expiries), and with nothing paid only when a payback itself
was refused (otherwise every leg should have returned).
A violation prints the shortest trace that reaches it (breadth-first search).

Run: ``python -m settlement.dvp.model`` (2- and 3-leg settlements) or see
``tests/settlement/dvp/test_model.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from adapters.chain import LockKind, Purpose
from settlement.domain.settlements import (
    DECIDES,
    LEGS,
    SETTLEMENTS,
    Decision,
    LegState,
    SettlementStatus,
)
from settlement.dvp.protocol import EscrowClock, LegFacts, Move, lock_plan, plan


class Where(StrEnum):
    SENDER = "sender"  # never locked
    LOCKED = "locked"
    AGENT = "agent"
    RECEIVER = "receiver"
    BACK = "back"  # returned to the sender after a lock


class Time(StrEnum):
    BEFORE_DEADLINE = "before_deadline"
    OPEN = "open"  # past the commit deadline, a finish may still be signed
    CLOSING = "closing"
    PAST_CANCEL = "past_cancel"


_NEXT_TIME = {
    Time.BEFORE_DEADLINE: Time.OPEN,
    Time.OPEN: Time.CLOSING,
    Time.CLOSING: Time.PAST_CANCEL,
}
_ESCROW_CLOCK = {
    Time.BEFORE_DEADLINE: EscrowClock.OPEN,
    Time.OPEN: EscrowClock.OPEN,
    Time.CLOSING: EscrowClock.CLOSING,
    Time.PAST_CANCEL: EscrowClock.PAST_CANCEL,
}


class Fate(StrEnum):
    """What a ledger did with a transaction in flight (refusals before a ledger, lost
    answers and expiries are one fate for the protocol: never applied)."""

    APPLIED = "applied"
    REFUSED = "refused"  # inside a ledger
    NEVER = "never"


@dataclass(frozen=True, order=True)
class Tx:
    """A transaction the engine signed and has not recorded as final."""

    purpose: Purpose
    held: bool
    #: None while in flight; else what the ledger did, not yet read by the engine
    fate: Fate | None = None


@dataclass(frozen=True, order=True)
class LegModel:
    kind: LockKind
    where: Where = Where.SENDER
    state: LegState = LegState.PENDING
    txs: tuple[Tx, ...] = ()
    stuck: frozenset[Purpose] = frozenset()
    finish_signed: bool = False
    #: the leg's receiver refuses payouts (deposit auth, a freeze) from now on
    refuses: bool = False


@dataclass(frozen=True, order=True)
class World:
    status: SettlementStatus
    legs: tuple[LegModel, ...]
    time: Time = Time.BEFORE_DEADLINE
    cancel_requested: bool = False
    person: bool = False
    #: a ledger has refused something inside a ledger (only that may need a person)
    ledger_refused: bool = False

    @property
    def fulfillment_public(self) -> bool:
        return any(leg.finish_signed for leg in self.legs)


@dataclass(frozen=True)
class Options:
    #: receivers may start refusing payouts (issuer freezes, deposit auth) at any time
    refusals: bool = True
    #: the receiver, the sender and anyone else act on the ledger when it lets them
    third_parties: bool = True
    #: an admin may cancel before the decision and retry a flagged settlement
    admin: bool = True


def initial(kinds: Sequence[LockKind]) -> World:
    return World(SettlementStatus.LOCKING, tuple(LegModel(kind) for kind in kinds))


def _facts(world: World) -> list[LegFacts]:
    return [
        LegFacts(
            leg_no=n,
            kind=leg.kind,
            state=leg.state,
            open=frozenset(tx.purpose for tx in leg.txs),
            stuck=leg.stuck,
            finish_signed=leg.finish_signed,
        )
        for n, leg in enumerate(world.legs)
    ]


def _with_leg(world: World, n: int, leg: LegModel) -> World:
    legs = list(world.legs)
    legs[n] = leg
    return replace(world, legs=tuple(legs))


# -- the engine --------------------------------------------------------------------


def engine_moves(world: World) -> Iterator[tuple[str, World]]:
    """Each action the coordinator may take next (one database transaction each)."""
    facts = _facts(world)
    if world.status is SettlementStatus.LOCKING:
        step = lock_plan(
            facts,
            cancel_requested=world.cancel_requested,
            deadline_passed=world.time is not Time.BEFORE_DEADLINE,
        )
        if isinstance(step, Decision):
            # the decision is written under the row lock, where a cancel wins
            decided = Decision.ABORT if world.cancel_requested else step
            yield f"decide {decided}", replace(world, status=DECIDES[decided])
            return
        yield from _drive(world, step)
        return
    if world.status not in (SettlementStatus.COMMITTING, SettlementStatus.UNWINDING):
        return
    todo = plan(world.status, facts, _ESCROW_CLOCK[world.time])
    if todo.close is not None:
        yield f"close {todo.close}", replace(world, status=todo.close)
        return
    if todo.person and not world.person:
        yield "flag for a person", replace(world, person=True)
    for move in todo.moves:
        yield from _drive(world, move)


def _drive(world: World, move: Move) -> Iterator[tuple[str, World]]:
    """Poll (read a landed transaction's fate) or sign, as reliable submission does."""
    n = move.leg_no
    leg = world.legs[n]
    mine = [tx for tx in leg.txs if tx.purpose is move.purpose]
    if move.purpose is Purpose.LOCK and world.status is SettlementStatus.UNWINDING:
        yield from _resolve_lock(world, n, mine)
        return
    if mine:
        tx = mine[0]
        if tx.fate is not None:
            yield f"record leg {n} {tx.purpose} {tx.fate}", _record(world, n, tx)
        return
    if move.purpose in leg.stuck:
        return
    signed = replace(
        leg,
        txs=(*leg.txs, Tx(move.purpose, move.held)),
        finish_signed=leg.finish_signed
        or (leg.kind is LockKind.ESCROW and move.purpose is Purpose.COMMIT),
    )
    label = "held " if move.held else ""
    yield f"sign leg {n} {label}{move.purpose}", _with_leg(world, n, signed)


def _resolve_lock(world: World, n: int, mine: list[Tx]) -> Iterator[tuple[str, World]]:
    """Unwinding a leg whose lock may be in flight (coordinator ``_resolve_lock``): with
    none open it was never locked; an open one is awaited, then recorded."""
    leg = world.legs[n]
    if not mine:
        yield f"leg {n} not locked", _with_leg(world, n, replace(leg, state=LegState.NOT_LOCKED))
        return
    tx = mine[0]
    if tx.fate is None:
        return
    state = _APPLIED[Purpose.LOCK] if tx.fate is Fate.APPLIED else LegState.NOT_LOCKED
    if tx.fate is Fate.APPLIED and leg.kind is LockKind.CUSTODY:
        state = LegState.HELD
    recorded = replace(leg, txs=(), state=state)
    yield f"record leg {n} lock {tx.fate}", _with_leg(world, n, recorded)


_APPLIED = {
    Purpose.LOCK: LegState.LOCKED,
    Purpose.CLAIM: LegState.HELD,
    Purpose.COMMIT: LegState.COMMITTED,
    Purpose.UNWIND: LegState.UNWOUND,
}
_RELEASED = {Where.RECEIVER: LegState.COMMITTED, Where.BACK: LegState.UNWOUND}


def _record(world: World, n: int, tx: Tx) -> World:
    """What the coordinator records when it reads a final outcome (submission.py's
    ``record_outcome``, coordinator.py's ``_after_refusal``)."""
    leg = world.legs[n]
    txs = tuple(t for t in leg.txs if t is not tx)
    state = leg.state
    stuck = leg.stuck
    match tx.fate:
        case Fate.APPLIED:
            state = _APPLIED[tx.purpose]
            if tx.purpose is Purpose.LOCK and leg.kind is LockKind.CUSTODY:
                state = LegState.HELD
        case Fate.REFUSED:
            stuck = stuck | {tx.purpose}
            if tx.purpose is not Purpose.LOCK:
                state = _after_refusal(leg, tx)
        case _:  # never applied: free to sign again
            pass
    return _with_leg(world, n, replace(leg, txs=txs, state=state, stuck=stuck))


def _after_refusal(leg: LegModel, tx: Tx) -> LegState:
    """The lock read back after a refusal of a leg whose funds are not with the agent:
    gone to the receiver (paid), back with the sender (returned), or still there (the
    payout or claim is REFUSED; an unwind stays stuck for a person)."""
    reads_lock = leg.state is LegState.LOCKED or (leg.state is LegState.REFUSED and not tx.held)
    if reads_lock:
        if leg.where in _RELEASED:
            return _RELEASED[leg.where]
        if leg.where is Where.AGENT and leg.kind is LockKind.CLAIMABLE:
            return LegState.HELD
    if tx.purpose in (Purpose.CLAIM, Purpose.COMMIT):
        return LegState.REFUSED
    return leg.state


# -- the ledgers and the people around them ------------------------------------------


def world_moves(world: World, options: Options) -> Iterator[tuple[str, World]]:
    for n, leg in enumerate(world.legs):
        for tx in leg.txs:
            if tx.fate is None:
                yield from _fates(world, n, tx, options)
        if options.third_parties:
            yield from _third_parties(world, n, leg)
        if options.refusals and not leg.refuses and world.status is not SettlementStatus.LOCKING:
            yield (
                f"leg {n}'s receiver starts refusing",
                _with_leg(world, n, replace(leg, refuses=True)),
            )
    if world.time in _NEXT_TIME:
        yield f"time -> {_NEXT_TIME[world.time]}", replace(world, time=_NEXT_TIME[world.time])
    if options.admin and world.status is SettlementStatus.LOCKING and not world.cancel_requested:
        yield "admin asks to cancel", replace(world, cancel_requested=True)
    if options.admin and world.person:
        yield "admin retries", _retry(world)


def _fates(world: World, n: int, tx: Tx, options: Options) -> Iterator[tuple[str, World]]:
    """Applied, if the ledger's rules allow it now and nobody refuses it; refused inside
    a ledger, if the rules forbid it or someone may refuse it; never applied, always."""
    leg = world.legs[n]
    lands = _applies(world, leg, tx)
    refused_by_someone = options.refusals and _refusable(leg, tx)
    if lands is not None and not (tx.purpose is Purpose.COMMIT and leg.refuses):
        moved = replace(leg, where=lands, txs=_set_fate(leg.txs, tx, Fate.APPLIED))
        yield f"ledger applies leg {n} {tx.purpose}", _with_leg(world, n, moved)
    if lands is None or refused_by_someone:
        refused = replace(leg, txs=_set_fate(leg.txs, tx, Fate.REFUSED))
        after = replace(_with_leg(world, n, refused), ledger_refused=True)
        yield f"ledger refuses leg {n} {tx.purpose}", after
    never = replace(leg, txs=_set_fate(leg.txs, tx, Fate.NEVER))
    yield f"leg {n} {tx.purpose} never applies", _with_leg(world, n, never)


def _refusable(leg: LegModel, tx: Tx) -> bool:
    """Who may refuse a transaction the ledger's own rules would allow: a lock (the
    sender short of funds), a payout to a receiver who refuses (deposit authorisation,
    a frozen or unauthorised line), a claim (the agent's own line de-authorised), a
    payback (the sender's line)."""
    match tx.purpose:
        case Purpose.LOCK | Purpose.CLAIM:
            return True
        case Purpose.COMMIT:
            return leg.refuses
        case Purpose.UNWIND:
            return tx.held or leg.kind is LockKind.CLAIMABLE


def _applies(world: World, leg: LegModel, tx: Tx) -> Where | None:
    """Where the funds go if the ledger applies ``tx`` now, or None if its rules refuse
    it (the lock gone, too early, too late)."""
    match tx.purpose:
        case Purpose.LOCK:
            if leg.where is not Where.SENDER:
                return None
            return Where.AGENT if leg.kind is LockKind.CUSTODY else Where.LOCKED
        case Purpose.CLAIM:
            return Where.AGENT if leg.where is Where.LOCKED else None
        case Purpose.COMMIT if tx.held:
            return Where.RECEIVER if leg.where is Where.AGENT else None
        case Purpose.COMMIT:  # an escrow finish
            if leg.where is Where.LOCKED and world.time is not Time.PAST_CANCEL:
                return Where.RECEIVER
            return None
        case Purpose.UNWIND if tx.held:
            return Where.BACK if leg.where is Where.AGENT else None
        case Purpose.UNWIND if leg.kind is LockKind.ESCROW:
            if leg.where is Where.LOCKED and world.time is Time.PAST_CANCEL:
                return Where.BACK
            return None
        case Purpose.UNWIND:  # a balance claimed and paid back at once
            return Where.BACK if leg.where is Where.LOCKED else None


def _third_parties(world: World, n: int, leg: LegModel) -> Iterator[tuple[str, World]]:
    if leg.where is not Where.LOCKED:
        return
    if (
        leg.kind is LockKind.ESCROW
        and world.fulfillment_public
        and world.time is not Time.PAST_CANCEL
    ):
        yield (
            f"leg {n}'s receiver finishes the escrow",
            _with_leg(world, n, replace(leg, where=Where.RECEIVER)),
        )
    if world.time is Time.PAST_CANCEL and leg.kind in (LockKind.ESCROW, LockKind.CLAIMABLE):
        yield (
            f"leg {n}'s sender takes the lock back",
            _with_leg(world, n, replace(leg, where=Where.BACK)),
        )


def _retry(world: World) -> World:
    """An admin's retry: fresh attempts, REFUSED legs back to where their funds are."""
    legs = []
    for leg in world.legs:
        state = leg.state
        if state is LegState.REFUSED:
            state = LegState.HELD if leg.where is Where.AGENT else LegState.LOCKED
        legs.append(replace(leg, state=state, stuck=frozenset()))
    return replace(world, legs=tuple(legs), person=False)


def _set_fate(txs: tuple[Tx, ...], tx: Tx, fate: Fate) -> tuple[Tx, ...]:
    return tuple(replace(t, fate=fate) if t is tx else t for t in txs)


# -- the checks ----------------------------------------------------------------------


def violation(world: World) -> str | None:
    """The invariant ``world`` breaks, if any."""
    places = {leg.where for leg in world.legs}
    if Where.RECEIVER in places and Where.BACK in places:
        return "one leg paid and another returned"
    for n, leg in enumerate(world.legs):
        if len(leg.txs) > 1:
            return f"leg {n} has {len(leg.txs)} transactions in flight"
    if world.status is SettlementStatus.SETTLED and places != {Where.RECEIVER}:
        return f"SETTLED with funds at {sorted(places)}"
    if world.status is SettlementStatus.UNWOUND and not places <= {Where.BACK, Where.SENDER}:
        return f"UNWOUND with funds at {sorted(places)}"
    return None


def stuck_violation(world: World) -> str | None:
    """For a state nothing can move: closed, or waiting for a person, which only a
    refusal inside a ledger may cause (refusals before a ledger, lost answers and
    expiries never stop a settlement)."""
    if world.status in (SettlementStatus.SETTLED, SettlementStatus.UNWOUND):
        return None
    if not world.person:
        return f"nothing can move and nobody is told ({world.status})"
    if not world.ledger_refused:
        return f"waits for a person though no ledger refused anything ({world.status})"
    nothing_paid = all(leg.where is not Where.RECEIVER for leg in world.legs)
    payback_refused = any(Purpose.UNWIND in leg.stuck for leg in world.legs)
    if nothing_paid and not payback_refused and world.status is not SettlementStatus.LOCKING:
        return "waits for a person with nothing paid, though every leg could have returned"
    return None


@dataclass
class Report:
    kinds: tuple[LockKind, ...]
    states: int
    transitions: int
    seconds: float
    trace: list[str] | None = None
    problem: str | None = None
    #: where every leg's funds are in each state at rest (closed, or waiting for a
    #: person with nothing left to do), with the status
    outcomes: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)
    #: every change of a leg's recorded state the engine made (old, new)
    leg_moves: set[tuple[str, str]] = field(default_factory=set)
    #: every change of the settlement's status the engine made (old, new)
    status_moves: set[tuple[str, str]] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        legs = ", ".join(k.value for k in self.kinds)
        head = (
            f"[{legs}] {self.states:,} states, {self.transitions:,} transitions, "
            f"{self.seconds:.1f} s: "
        )
        if self.ok:
            return head + "every invariant holds"
        steps = "\n".join(f"  {n + 1:>3}. {step}" for n, step in enumerate(self.trace or []))
        return head + f"VIOLATED: {self.problem}\nshortest trace:\n{steps}"


def explore(
    kinds: Sequence[LockKind], options: Options | None = None, *, limit: int = 5_000_000
) -> Report:
    """Breadth-first over every reachable state; the first violation found has a
    shortest trace."""
    options = options or Options()
    started = time.monotonic()
    start = initial(kinds)
    parent: dict[World, tuple[World, str] | None] = {start: None}
    queue = deque([start])
    transitions = 0
    outcomes: set[tuple[str, tuple[str, ...]]] = set()
    leg_moves: set[tuple[str, str]] = set()
    status_moves: set[tuple[str, str]] = set()

    def trace_to(world: World) -> list[str]:
        steps: list[str] = []
        at: World | None = world
        while at is not None and parent[at] is not None:
            before, label = parent[at]  # type: ignore[misc]
            steps.append(label)
            at = before
        return steps[::-1]

    while queue:
        world = queue.popleft()
        problem = violation(world)
        trace: list[str] = []
        successors = [*engine_moves(world), *world_moves(world, options)]
        if problem is None and not successors:
            problem = stuck_violation(world)
            status = f"{world.status}{' (a person)' if world.person else ''}"
            outcomes.add((status, tuple(leg.where.value for leg in world.legs)))
        for label, after in successors:
            if problem is not None:
                break
            transitions += 1
            problem = _record_moves(world, after, leg_moves, status_moves)
            if problem is not None:
                trace = [label]  # the move itself is the violation: the trace ends with it
            elif after not in parent:
                parent[after] = (world, label)
                queue.append(after)
        if problem is not None:
            return Report(
                tuple(kinds),
                len(parent),
                transitions,
                time.monotonic() - started,
                trace_to(world) + trace,
                problem,
            )
        if len(parent) > limit:
            raise RuntimeError(f"more than {limit:,} states; the model is too large")
    return Report(
        tuple(kinds),
        len(parent),
        transitions,
        time.monotonic() - started,
        outcomes=outcomes,
        leg_moves=leg_moves,
        status_moves=status_moves,
    )


def _record_moves(
    before: World,
    after: World,
    leg_moves: set[tuple[str, str]],
    status_moves: set[tuple[str, str]],
) -> str | None:
    """Note the status and leg state changes from ``before`` to ``after``; the first
    one the domain's tables (the database's rules) do not allow is a violation."""
    if before.status is not after.status:
        status_moves.add((before.status.value, after.status.value))
        if not SETTLEMENTS.allows(before.status, after.status):
            return f"the settlement moved {before.status} -> {after.status}, not in the table"
    for n, (old, new) in enumerate(zip(before.legs, after.legs, strict=True)):
        if old.state is not new.state:
            leg_moves.add((old.state.value, new.state.value))
            if not LEGS.allows(old.state, new.state):
                return f"leg {n} moved {old.state} -> {new.state}, not in the table"
    return None


#: the settlements checked by default: two chains, 2 and 3 legs, every lock primitive
SHAPES: tuple[tuple[LockKind, ...], ...] = (
    (LockKind.CLAIMABLE, LockKind.ESCROW),
    (LockKind.CLAIMABLE, LockKind.CUSTODY),
    (LockKind.CLAIMABLE, LockKind.ESCROW, LockKind.CLAIMABLE),
    (LockKind.CLAIMABLE, LockKind.ESCROW, LockKind.CUSTODY),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--legs", default="2,3", help="leg counts to check (of the default shapes): 2,3"
    )
    args = parser.parse_args(argv)
    wanted = {int(x) for x in args.legs.split(",") if x.strip()}
    failed = False
    for kinds in SHAPES:
        if len(kinds) not in wanted:
            continue
        report = explore(kinds)
        print(report.describe())
        failed = failed or not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
