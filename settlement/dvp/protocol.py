"""The commit protocol as decisions over recorded facts: no I/O, no clock, no database.

The coordinator (``settlement.dvp.coordinator``) reads what is recorded and what the
ledgers say, turns it into ``LegFacts`` and ``Clocks``, asks ``plan`` what to do, and
does it. The model checker (``settlement.dvp.model``) asks the same function in every
state it explores. So the argument below is checked against the code that runs.

Why no settlement can end with one leg paid and another returned
================================================================

Each leg is locked with one of three primitives (``adapters.chain.LockKind``):

- ESCROW (XRPL escrow, hash-locked, CancelAfter = T_cancel). Its payout, the
  EscrowFinish, can be refused for good by the receiver's side (deposit authorisation,
  an unauthorised or frozen trust line, a limit). Once a finish has been signed and
  sent, the fulfillment may be public and the receiver can finish the escrow itself
  until CancelAfter; after CancelAfter anyone can cancel it back to the sender. The
  engine cannot stop either; it reads them from the ledger (``Released``).
- CLAIMABLE (Stellar claimable balance): the agent may claim it at any time, the sender
  from T_cancel on. The agent's claim moves the funds into the agent's own account in
  a transaction of its own; nothing on the payee's side takes part, so the payee cannot
  refuse it. From then on the leg is HELD and only the agent moves it.
- CUSTODY (the lock itself pays the agent): HELD from the lock on.

After COMMIT the legs move in three stages, each starting only when the one before has
finished on its ledger (validated, not just sent):

1. every CLAIMABLE leg is claimed into the agent: no sender can reclaim after T_cancel
   any more, whatever happens next;
2. the ESCROW leg is finished. A settlement has at most one ESCROW leg, the *pivot*
   (``assign_lock_kinds`` gives every further XRPL leg a custody lock): a second escrow
   could be refused after the first was paid, and then return to its sender after
   CancelAfter out of the engine's reach;
3. every HELD leg is paid from the agent to its receiver.

When a settlement has no escrow, the first payout of stage 3 plays the pivot's part
(``pivot_of``: a custody leg before a claimable one): it is paid alone and waited for,
since its receiver can refuse it for good as an escrow's can, and only then the rest.

A payout the ledger refuses for good (the leg becomes REFUSED): if nothing has been paid
yet, the settlement *returns*: every escrow is cancelled once the ledger is past
CancelAfter (or found finished by its receiver: then it was paid, and the settlement
goes forward after all), and only when no escrow can still be finished by anyone (each
is returned, or no finish was ever signed, so the fulfillment never left the engine) are
the held legs paid back. If something has been paid, the remaining payouts are all from
the agent (stage 3, or the pivot itself); a refused one leaves its funds with the agent
for a person. A refusal that never reached a ledger (a sequence taken, a fee too low, a
lagging server) decides nothing: the purpose is signed again, as often as it takes.
Stage 2 starts only while the XRPL ledger's own time is at least the commit-send margin
(no less than a transaction's lifetime there) before CancelAfter; past that, an escrow
not yet finished is treated as refused, which returns the settlement while nothing is
paid. Every claim, finish and payout is driven by reliable submission: while one could
still apply nothing else is signed for that purpose, and the mode never changes under a
transaction that could still apply (see ``plan``).

What can happen to each kind of leg after COMMIT, and why it strands nobody:

=========  ==========================================  ==================================
leg        after COMMIT                                 the engine, and why it is safe
=========  ==========================================  ==================================
ESCROW     the finish is refused for good (the         REFUSED; nothing is paid before the
(pivot)    receiver's deposit authorisation, a frozen  pivot is validated, so every leg
           or unauthorised line, a limit)              returns
           the finish never lands (partition, fee      signed again while the ledger's
           surge, a sequence taken, a stale server)    time allows; past the send margin
                                                       with none in flight: returns
           the receiver finishes it itself with the    read back as paid; the other legs
           public fulfillment                          are already held by the agent, so
                                                       they are paid forward
           the sender (or anyone) cancels it after     read back as returned; nothing else
           CancelAfter                                 is paid, so every leg returns
CLAIMABLE  the claim is refused (the agent's own line  REFUSED before the pivot was sent:
           de-authorised or frozen)                    the fulfillment never left the
                                                       engine; every leg returns
           the sender reclaims after T_cancel, before  read back as returned; claims come
           the claim (the engine was away past the     before the pivot, so nothing is
           safety margin)                              paid; every leg returns
           the payout after the claim is refused (the  REFUSED; the claim stands, the
           payee's line de-authorised, removed, its    funds wait with the agent for a
           limit lowered)                              person
CUSTODY    the payout or the payback is refused        the funds wait with the agent for a
                                                       person
any        refused before any ledger, lost, expired    never counted: signed again (one
                                                       in flight at a time), as often as
                                                       it takes
=========  ==========================================  ==================================

What this module decides, the coordinator records: leg states, and the review flag when
a person must act. The states, and the moves between them the database allows, are the
domain's (``settlement.domain.settlements``); this module re-exports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from adapters.chain import LockKind, Purpose
from settlement.domain.settlements import Decision, LegState, SettlementStatus


class Mode(StrEnum):
    FORWARD = "forward"  # every leg is to be paid to its receiver
    RETURN = "return"  # nothing was paid: every leg goes back to its sender


class EscrowClock(StrEnum):
    """Where the ESCROW ledger's own latest validated close time stands."""

    OPEN = "open"  # a finish may still be signed (before CancelAfter - send margin)
    CLOSING = "closing"  # too late to sign a finish; too early to cancel
    PAST_CANCEL = "past_cancel"  # past CancelAfter: a cancel applies, a finish never
    UNKNOWN = "unknown"  # the ledger's time cannot be read now


#: legs that can be unwound at once are locked first, escrows (undone only after
#: CancelAfter) last
LOCK_ORDER = {LockKind.CLAIMABLE: 0, LockKind.CUSTODY: 1, LockKind.ESCROW: 2}


def assign_lock_kinds(offered: Sequence[LockKind]) -> list[LockKind]:
    """The primitive each leg gets, from what its ledger offers: at most one ESCROW
    (the pivot, the first offered); any further leg offered an escrow is a custody lock
    instead. Two escrows cannot be made all-or-none: the second could be refused after
    the first was paid, and its sender may cancel it after CancelAfter."""
    kinds: list[LockKind] = []
    for offer in offered:
        second_escrow = offer is LockKind.ESCROW and LockKind.ESCROW in kinds
        kinds.append(LockKind.CUSTODY if second_escrow else offer)
    return kinds


def held_after_lock(kind: LockKind) -> bool:
    """Whether an applied lock of this kind leaves the funds with the agent."""
    return kind is LockKind.CUSTODY


@dataclass(frozen=True)
class LegFacts:
    """What is recorded about one leg, as the protocol needs it.

    ``open``: purposes with a submission that could still apply. ``stuck``: purposes
    the ledger refused inside a ledger (or refused before any ledger too many times) since
    a person last reset the settlement: nothing more is signed for them until a person
    acts. ``finish_signed``: a commit of this ESCROW leg was ever signed, so its
    fulfillment may be public.
    """

    leg_no: int
    kind: LockKind
    state: LegState
    open: frozenset[Purpose] = frozenset()
    stuck: frozenset[Purpose] = frozenset()
    finish_signed: bool = False


@dataclass(frozen=True)
class Move:
    """Drive ``purpose`` of leg ``leg_no``: poll the open submission, or sign a new one.
    ``held``: the payout is from the agent's own account."""

    leg_no: int
    purpose: Purpose
    held: bool = False


@dataclass(frozen=True)
class Plan:
    """What to do now. ``moves`` run this step; ``waits`` say what else holds the
    settlement back (reported, and flagged for a person when ``person``); ``close`` is
    the status to close with once there is nothing left to do."""

    mode: Mode | None = None
    moves: tuple[Move, ...] = ()
    waits: tuple[str, ...] = ()
    person: tuple[str, ...] = ()
    close: SettlementStatus | None = None


_AT_REST_PAID = frozenset({LegState.COMMITTED})
_AT_REST_RETURNED = frozenset({LegState.UNWOUND, LegState.NOT_LOCKED})


def commit_mode(legs: Sequence[LegFacts], clock: EscrowClock) -> tuple[Mode, str]:
    """FORWARD while something is paid or nothing has failed; RETURN when nothing is
    paid and a payout can no longer happen (refused for good, a lock released back to
    its sender, or the escrow too close to CancelAfter for a finish to be signed, with
    none in flight)."""
    if any(leg.state is LegState.COMMITTED for leg in legs):
        return Mode.FORWARD, "something is paid: only forward"
    for leg in legs:
        if Purpose.UNWIND in leg.open:
            # returning has begun and could still apply: nothing goes forward under it
            return Mode.RETURN, f"leg {leg.leg_no}'s return is in flight"
    for leg in legs:
        if leg.state is LegState.REFUSED:
            return Mode.RETURN, f"leg {leg.leg_no}'s payout was refused for good"
        if leg.state is LegState.UNWOUND:
            return Mode.RETURN, f"leg {leg.leg_no} went back to its sender"
    for leg in legs:
        if (
            leg.kind is LockKind.ESCROW
            and leg.state is LegState.LOCKED
            and Purpose.COMMIT not in leg.open
            and clock in (EscrowClock.CLOSING, EscrowClock.PAST_CANCEL)
        ):
            return Mode.RETURN, f"leg {leg.leg_no}'s escrow is too close to CancelAfter to finish"
    return Mode.FORWARD, "every payout can still happen"


def lock_plan(
    legs: Sequence[LegFacts], *, cancel_requested: bool, deadline_passed: bool
) -> Decision | Move:
    """The lock phase: the next lock to drive, one at a time in ``LOCK_ORDER``, or the
    decision. ABORT on an admin's cancel, on the commit deadline, or on a lock the
    ledger refused (``stuck``); COMMIT once every leg is locked (the coordinator then
    still checks every ledger's clock against the deadline)."""
    if cancel_requested or deadline_passed:
        return Decision.ABORT
    for leg in sorted(legs, key=lambda x: (LOCK_ORDER[x.kind], x.leg_no)):
        if leg.state is not LegState.PENDING:
            continue
        if Purpose.LOCK in leg.stuck and Purpose.LOCK not in leg.open:
            return Decision.ABORT
        return Move(leg.leg_no, Purpose.LOCK)
    return Decision.COMMIT


def plan(status: SettlementStatus, legs: Sequence[LegFacts], clock: EscrowClock) -> Plan:
    """The next moves of a settlement in ``status`` (COMMITTING or UNWINDING; LOCKING
    is the lock phase, see ``lock_plan``)."""
    match status:
        case SettlementStatus.COMMITTING:
            return _committing(legs, clock)
        case SettlementStatus.UNWINDING:
            return _unwinding(legs, clock)
        case _:
            return Plan(close=status)


def _committing(legs: Sequence[LegFacts], clock: EscrowClock) -> Plan:
    states = {leg.state for leg in legs}
    if states <= _AT_REST_PAID:
        return Plan(mode=Mode.FORWARD, close=SettlementStatus.SETTLED)
    if states <= _AT_REST_RETURNED:
        return Plan(mode=Mode.RETURN, close=SettlementStatus.UNWOUND)
    mode, why = commit_mode(legs, clock)
    if mode is Mode.FORWARD:
        return _forward(legs, clock)
    return _return(legs, clock, why)


@dataclass
class _Todo:
    """The plan being built: moves to make, what else is awaited, what a person must
    hear."""

    moves: list[Move] = field(default_factory=list)
    waits: list[str] = field(default_factory=list)
    person: list[str] = field(default_factory=list)

    def drive(self, leg: LegFacts, purpose: Purpose, *, held: bool = False) -> None:
        """Add the move, unless the purpose is stuck (refused, nothing open): then
        nothing is signed again until a person resets the settlement, who is told."""
        if purpose in leg.stuck and purpose not in leg.open:
            self.person.append(f"leg {leg.leg_no}'s {purpose} was refused; a person must decide")
            return
        other = leg.open - {purpose}
        if other:
            # one transaction in flight per leg: another purpose's could still apply
            for p in sorted(other):
                self.moves.append(Move(leg.leg_no, p, held=held))
            return
        self.moves.append(Move(leg.leg_no, purpose, held=held))

    def cancel_escrow(self, leg: LegFacts, clock: EscrowClock) -> None:
        """An escrow goes back only once its ledger is past CancelAfter (before that
        the ledger refuses the cancel); one already sent is polled."""
        if Purpose.UNWIND in leg.open or clock is EscrowClock.PAST_CANCEL:
            self.drive(leg, Purpose.UNWIND)
        elif clock is EscrowClock.UNKNOWN:
            self.waits.append("the escrow ledger's time cannot be read")
        else:
            self.waits.append(
                f"leg {leg.leg_no}'s escrow is cancelled once its ledger's time passes CancelAfter"
            )

    def plan(self, mode: Mode) -> Plan:
        return Plan(
            mode=mode,
            moves=tuple(self.moves),
            waits=tuple(self.waits),
            person=tuple(self.person),
        )


def pivot_of(legs: Sequence[LegFacts]) -> LegFacts | None:
    """The leg paid first and alone, whose validated payout is the point of no return:
    the escrow (its refusal would otherwise send it back to its sender after
    CancelAfter), else a custody leg, else a claimable one, the lowest leg number
    first. Until it is paid nothing else is; if it is refused, nothing is paid yet and
    every leg can return."""
    order = {LockKind.ESCROW: 0, LockKind.CUSTODY: 1, LockKind.CLAIMABLE: 2}
    return min(legs, key=lambda leg: (order[leg.kind], leg.leg_no), default=None)


def _forward(legs: Sequence[LegFacts], clock: EscrowClock) -> Plan:
    todo = _Todo()
    claims_done = not any(
        leg.kind is LockKind.CLAIMABLE and leg.state is LegState.LOCKED for leg in legs
    )
    pivot = pivot_of(legs)
    pivot_paid = pivot is None or pivot.state is LegState.COMMITTED
    for leg in legs:
        match leg.state:
            case LegState.COMMITTED:
                continue
            case LegState.UNWOUND | LegState.NOT_LOCKED | LegState.PENDING:
                # something is paid and this leg is back with its sender (or was never
                # locked): the very state the protocol exists to prevent
                todo.person.append(f"leg {leg.leg_no} is {leg.state} while another leg is paid")
            case LegState.REFUSED:
                todo.person.append(
                    f"leg {leg.leg_no}'s payout was refused for good after another leg was "
                    "paid; its funds wait for a person"
                )
            case LegState.LOCKED if leg.kind is LockKind.CLAIMABLE:
                todo.drive(leg, Purpose.CLAIM)
            case _ if not claims_done:
                todo.waits.append(f"leg {leg.leg_no} is paid once every balance is claimed")
            case LegState.LOCKED:  # the ESCROW pivot
                if Purpose.COMMIT in leg.open or clock is EscrowClock.OPEN:
                    todo.drive(leg, Purpose.COMMIT)
                elif clock is EscrowClock.UNKNOWN:
                    # no finish signed blind; the claims go on meanwhile
                    todo.waits.append("the escrow ledger's time cannot be read")
                else:
                    # with nothing paid this is RETURN (commit_mode); with something
                    # paid the escrow is the leg refused after another was paid
                    todo.person.append(f"leg {leg.leg_no}'s escrow can no longer be finished")
            case LegState.HELD if leg is pivot or pivot_paid:
                todo.drive(leg, Purpose.COMMIT, held=True)
            case LegState.HELD:
                todo.waits.append(f"leg {leg.leg_no} is paid once the first payout is validated")
    return todo.plan(Mode.FORWARD)


def _return(legs: Sequence[LegFacts], clock: EscrowClock, why: str) -> Plan:
    todo = _Todo(person=[f"returning every leg after COMMIT: {why}"])
    # a held leg is paid back only when no escrow can still be finished by anyone
    # (each is back with its sender, or no finish was ever signed: the fulfillment
    # never left the engine) and no payout of a held leg is in flight (it could still
    # apply, and then everything goes forward)
    pay_back = all(
        leg.state in _AT_REST_RETURNED or not leg.finish_signed
        for leg in legs
        if leg.kind is LockKind.ESCROW
    ) and not any(Purpose.COMMIT in leg.open for leg in legs)
    for leg in legs:
        in_flight = leg.open & {Purpose.CLAIM, Purpose.COMMIT}
        if in_flight:
            # a claim or payout that could still apply is awaited first: it decides
            # whether this leg is held or paid
            held = leg.state is LegState.HELD
            todo.moves.extend(Move(leg.leg_no, p, held=held) for p in sorted(in_flight))
        elif leg.state in _AT_REST_RETURNED:
            continue
        elif leg.state in (LegState.COMMITTED, LegState.PENDING):  # not reachable here
            todo.person.append(f"leg {leg.leg_no} is {leg.state} while returning")
        elif leg.kind is LockKind.ESCROW:
            todo.cancel_escrow(leg, clock)
        elif not pay_back:
            todo.waits.append(f"leg {leg.leg_no} returns once no escrow can still be paid")
        else:
            # a balance never claimed (LOCKED, or REFUSED at its claim) is claimed and
            # paid back in one transaction; a held one (HELD, or REFUSED at its payout)
            # is paid back from the agent
            never_held = leg.state is LegState.LOCKED or (
                leg.state is LegState.REFUSED
                and leg.kind is LockKind.CLAIMABLE
                and Purpose.CLAIM in leg.stuck
            )
            todo.drive(leg, Purpose.UNWIND, held=not never_held)
    return todo.plan(Mode.RETURN)


def _unwinding(legs: Sequence[LegFacts], clock: EscrowClock) -> Plan:
    """ABORT: nothing was paid and the fulfillment never left the engine (no finish is
    signed before COMMIT), so every lock is simply undone."""
    if {leg.state for leg in legs} <= _AT_REST_RETURNED:
        return Plan(mode=Mode.RETURN, close=SettlementStatus.UNWOUND)
    todo = _Todo()
    for leg in legs:
        match leg.state:
            case LegState.UNWOUND | LegState.NOT_LOCKED:
                continue
            case LegState.PENDING:
                # a lock in flight is resolved first (the coordinator polls it)
                todo.moves.append(Move(leg.leg_no, Purpose.LOCK))
            case LegState.COMMITTED:
                todo.person.append(f"leg {leg.leg_no} is COMMITTED in a settlement that aborted")
            case _ if leg.kind is LockKind.ESCROW:
                todo.cancel_escrow(leg, clock)
            case LegState.LOCKED:
                todo.drive(leg, Purpose.UNWIND)
            case LegState.HELD | LegState.REFUSED:
                todo.drive(leg, Purpose.UNWIND, held=True)
    return todo.plan(Mode.RETURN)


def at_rest_partial(legs: Sequence[LegFacts]) -> bool:
    """The one outcome that must never be: at rest with a leg paid and another back."""
    states = {leg.state for leg in legs}
    return LegState.COMMITTED in states and bool(states & _AT_REST_RETURNED)


__all__ = [
    "LOCK_ORDER",
    "Decision",
    "EscrowClock",
    "LegFacts",
    "LegState",
    "Mode",
    "Move",
    "Plan",
    "SettlementStatus",
    "assign_lock_kinds",
    "at_rest_partial",
    "commit_mode",
    "held_after_lock",
    "lock_plan",
    "pivot_of",
    "plan",
]
