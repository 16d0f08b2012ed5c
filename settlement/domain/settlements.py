"""Settlement, leg and ledger-submission states: three small machines, one table each.

The database enforces the same moves (migration 0003, widened by 0011): CHECK
constraints list the names and ``BEFORE UPDATE`` triggers (``settlements_guard``,
``legs_guard``, ``submissions_guard``) refuse any change of status or state not listed
below; a test compares the two. The tables here are what the engine's code is checked
against: the coordinator checks its status changes before it writes them, and the
model checker (``settlement.dvp.model``) refuses any leg or status move of the protocol
that is not in them.

Each table is checked when this module is imported, as the commitment table is
(``settlement.domain.states``): one initial state that is not terminal, no move out of
a terminal state, every state reachable from the initial one, a way out of every state
that is not terminal, and no move listed twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Generic, TypeVar

from settlement.domain.errors import TransitionNotAllowed


class SettlementStatus(StrEnum):
    """Where a settlement is in the two-phase protocol."""

    LOCKING = "LOCKING"  # locking the legs; nothing decided
    COMMITTING = "COMMITTING"  # decided COMMIT: only forward (or, nothing paid, back)
    UNWINDING = "UNWINDING"  # decided ABORT: every lock is undone
    SETTLED = "SETTLED"  # every leg with its receiver
    UNWOUND = "UNWOUND"  # every leg back with its sender, or never locked


class Decision(StrEnum):
    """The decision written once, in its own transaction, before phase 2."""

    COMMIT = "COMMIT"
    ABORT = "ABORT"


class LegState(StrEnum):
    """Where one leg's funds are, as the engine has recorded it."""

    PENDING = "PENDING"  # not locked yet (a lock may be in flight)
    NOT_LOCKED = "NOT_LOCKED"  # no lock exists and none can apply
    LOCKED = "LOCKED"  # locked on its ledger, funds not with the agent
    HELD = "HELD"  # the agent holds the funds (claimed balance, custody lock)
    REFUSED = "REFUSED"  # the payout was refused for good; funds locked or held
    COMMITTED = "COMMITTED"  # the receiver has the funds
    UNWOUND = "UNWOUND"  # the sender has the funds back


class LegKind(StrEnum):
    """What a leg is for: the exchange itself, or a fee paid beside it."""

    PRINCIPAL = "principal"  # counts toward the commitment's amount
    FEE = "fee"  # paid by a party of the commitment, to anyone registered


class SubmissionStatus(StrEnum):
    """What became of one signed ledger transaction."""

    SIGNED = "SIGNED"  # recorded before it was sent; it may still apply
    APPLIED = "APPLIED"  # in a validated ledger, with success
    REJECTED = "REJECTED"  # refused: inside a ledger (fee spent) or before any
    EXPIRED = "EXPIRED"  # proved never to apply


S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True)
class Move(Generic[S]):
    """One allowed change, and what causes it (for the reader: the code that makes the
    change is the coordinator's, or reliable submission's)."""

    source: S
    target: S
    cause: str


class StateTable(Generic[S]):
    """One machine's states and moves, checked when built (see the module docstring).
    ``allows`` answers for any pair; ``require`` raises ``TransitionNotAllowed`` for a
    move the table does not list."""

    def __init__(
        self,
        states: type[S],
        *,
        initial: S,
        terminal: frozenset[S],
        moves: tuple[Move[S], ...],
    ) -> None:
        self.states = states
        self.initial = initial
        self.terminal = terminal
        self.moves = moves
        _check(self)
        self.targets: Mapping[S, frozenset[S]] = MappingProxyType(
            {s: frozenset(m.target for m in moves if m.source == s) for s in states}
        )
        #: the states not at rest
        self.open: frozenset[S] = frozenset(states) - terminal

    def allows(self, source: S, target: S) -> bool:
        return target in self.targets[source]

    def require(self, source: S, target: S) -> None:
        if not self.allows(source, target):
            allowed = ", ".join(sorted(self.targets[source])) or "none"
            raise TransitionNotAllowed(
                f"{self.states.__name__} cannot go from {source} to {target} (allowed: {allowed})"
            )


def _check(table: StateTable[S]) -> None:
    name = table.states.__name__
    if table.initial in table.terminal:
        raise AssertionError(f"{name}: the initial state {table.initial} cannot be terminal")
    pairs = [(m.source, m.target) for m in table.moves]
    if len(set(pairs)) != len(pairs):
        raise AssertionError(f"{name}: a move is listed twice")
    for m in table.moves:
        if m.source in table.terminal:
            raise AssertionError(f"{name}: terminal state {m.source} has a move to {m.target}")
        if m.source == m.target:
            raise AssertionError(f"{name}: {m.source} -> {m.source} is not a move")
    reachable = {table.initial}
    frontier = [table.initial]
    while frontier:
        state = frontier.pop()
        for m in table.moves:
            if m.source == state and m.target not in reachable:
                reachable.add(m.target)
                frontier.append(m.target)
    unreachable = set(table.states) - reachable
    if unreachable:
        raise AssertionError(f"{name}: unreachable states: {', '.join(sorted(unreachable))}")
    for state in set(table.states) - table.terminal:
        if not any(m.source == state for m in table.moves):
            raise AssertionError(f"{name}: non-terminal state {state} has no way out")


_St = SettlementStatus

SETTLEMENTS: Final = StateTable(
    SettlementStatus,
    initial=_St.LOCKING,
    terminal=frozenset({_St.SETTLED, _St.UNWOUND}),
    moves=(
        Move(_St.LOCKING, _St.COMMITTING, "decided COMMIT: every leg locked before the deadline"),
        Move(_St.LOCKING, _St.UNWINDING, "decided ABORT: a lock refused, the deadline, a cancel"),
        Move(_St.COMMITTING, _St.SETTLED, "every leg with its receiver"),
        Move(
            _St.COMMITTING,
            _St.UNWOUND,
            "a payout refused for good before anything was paid: every leg returned",
        ),
        Move(_St.UNWINDING, _St.UNWOUND, "every lock undone"),
    ),
)

#: the status a decision opens (the database refuses the move with the other decision)
DECIDES: Final[Mapping[Decision, SettlementStatus]] = MappingProxyType(
    {Decision.COMMIT: _St.COMMITTING, Decision.ABORT: _St.UNWINDING}
)

_L = LegState

LEGS: Final = StateTable(
    LegState,
    initial=_L.PENDING,
    terminal=frozenset({_L.NOT_LOCKED, _L.COMMITTED, _L.UNWOUND}),
    moves=(
        Move(_L.PENDING, _L.LOCKED, "the lock applied"),
        Move(_L.PENDING, _L.HELD, "a custody lock applied: the agent holds the funds"),
        Move(_L.PENDING, _L.NOT_LOCKED, "unwinding: no lock applied, and none can"),
        Move(_L.LOCKED, _L.HELD, "the agent's claim applied"),
        Move(_L.LOCKED, _L.COMMITTED, "the escrow finish applied, or the receiver took the lock"),
        Move(_L.LOCKED, _L.UNWOUND, "the unwind applied, or the sender took the lock back"),
        Move(_L.LOCKED, _L.REFUSED, "the claim or the finish refused inside a ledger"),
        Move(_L.HELD, _L.COMMITTED, "the payout from the agent applied"),
        Move(_L.HELD, _L.UNWOUND, "the payback from the agent applied"),
        Move(_L.HELD, _L.REFUSED, "the payout refused inside a ledger"),
        Move(_L.REFUSED, _L.COMMITTED, "paid after all (the receiver took the lock)"),
        Move(_L.REFUSED, _L.UNWOUND, "returned: paid back, or the sender took the lock"),
        Move(_L.REFUSED, _L.LOCKED, "an admin's retry: the funds are still locked"),
        Move(_L.REFUSED, _L.HELD, "an admin's retry, or a claim in flight applied"),
    ),
)

_Sub = SubmissionStatus

SUBMISSIONS: Final = StateTable(
    SubmissionStatus,
    initial=_Sub.SIGNED,
    terminal=frozenset({_Sub.APPLIED, _Sub.REJECTED, _Sub.EXPIRED}),
    moves=(
        Move(_Sub.SIGNED, _Sub.APPLIED, "found in a validated ledger, with success"),
        Move(_Sub.SIGNED, _Sub.REJECTED, "refused inside a ledger, or before any"),
        Move(_Sub.SIGNED, _Sub.EXPIRED, "proved twice never to apply"),
    ),
)


def _check_decisions() -> None:
    for decision, status in DECIDES.items():
        if not SETTLEMENTS.allows(SETTLEMENTS.initial, status):
            raise AssertionError(f"{decision} opens {status}, not a move from the initial state")


_check_decisions()

__all__ = [
    "DECIDES",
    "LEGS",
    "SETTLEMENTS",
    "SUBMISSIONS",
    "Decision",
    "LegKind",
    "LegState",
    "Move",
    "SettlementStatus",
    "StateTable",
    "SubmissionStatus",
]
