"""The commitment state machine: six states, thirteen transitions, one table.

The ten transitions of DESIGN section 3, and ``expire``: a DRAFT, PENDING_REVIEW or
VERIFIED commitment past its expiry is cancelled by the system, with a reason. (Reusing
withdraw or reject for that would record an act its owner or an officer never made.)

This table is the single source of truth. Migration 0001 seeds the database table
``valid_transitions`` from a frozen copy of it, the database trigger refuses any state
change not listed there, and a test asserts the two agree.

The graph is checked when this module is imported: one initial state, no
transition out of a terminal state, every state reachable from the initial one, and
each (state, event) pair leads to at most one state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from settlement.domain.errors import TransitionNotAllowed, UnknownEvent, UnknownState


class State(StrEnum):
    DRAFT = "DRAFT"
    PENDING_REVIEW = "PENDING_REVIEW"
    VERIFIED = "VERIFIED"
    ESCROWED = "ESCROWED"
    SETTLED = "SETTLED"
    CANCELLED = "CANCELLED"

    @classmethod
    def parse(cls, name: str) -> State:
        try:
            return cls(name.strip().upper())
        except ValueError:
            raise UnknownState(f"unknown state {name!r}; states are {', '.join(cls)}") from None


class Event(StrEnum):
    SUBMIT = "submit"
    WITHDRAW = "withdraw"
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_INFO = "request_info"
    LOCK = "lock"
    SETTLE = "settle"
    RELEASE = "release"
    FORCE_CANCEL = "force_cancel"
    EXPIRE = "expire"

    @classmethod
    def parse(cls, name: str) -> Event:
        try:
            return cls(name.strip().lower().replace("-", "_"))
        except ValueError:
            raise UnknownEvent(f"unknown event {name!r}; events are {', '.join(cls)}") from None


class Authority(StrEnum):
    """Who may cause a transition."""

    OWNER = "owning allocator"
    OFFICER = "compliance officer"
    SYSTEM = "system"
    SYSTEM_OR_ADMIN = "system or admin"
    ADMIN = "admin"


@dataclass(frozen=True)
class Transition:
    source: State
    event: Event
    target: State
    authority: Authority
    reason_required: bool = False
    #: the actor who submitted the commitment may not cause this transition
    not_by_submitter: bool = False


INITIAL: Final = State.DRAFT
TERMINAL: Final = frozenset({State.SETTLED, State.CANCELLED})

TRANSITIONS: Final[tuple[Transition, ...]] = (
    Transition(State.DRAFT, Event.SUBMIT, State.PENDING_REVIEW, Authority.OWNER),
    Transition(State.DRAFT, Event.WITHDRAW, State.CANCELLED, Authority.OWNER),
    Transition(
        State.PENDING_REVIEW,
        Event.APPROVE,
        State.VERIFIED,
        Authority.OFFICER,
        not_by_submitter=True,
    ),
    Transition(
        State.PENDING_REVIEW,
        Event.REJECT,
        State.CANCELLED,
        Authority.OFFICER,
        reason_required=True,
        not_by_submitter=True,
    ),
    Transition(
        State.PENDING_REVIEW,
        Event.REQUEST_INFO,
        State.DRAFT,
        Authority.OFFICER,
        reason_required=True,
        not_by_submitter=True,
    ),
    Transition(State.VERIFIED, Event.LOCK, State.ESCROWED, Authority.SYSTEM),
    Transition(State.VERIFIED, Event.WITHDRAW, State.CANCELLED, Authority.OWNER),
    Transition(State.ESCROWED, Event.SETTLE, State.SETTLED, Authority.SYSTEM),
    Transition(State.ESCROWED, Event.RELEASE, State.VERIFIED, Authority.SYSTEM_OR_ADMIN),
    Transition(
        State.ESCROWED, Event.FORCE_CANCEL, State.CANCELLED, Authority.ADMIN, reason_required=True
    ),
    # a commitment not yet settling that is past its expiry is cancelled by the system
    Transition(State.DRAFT, Event.EXPIRE, State.CANCELLED, Authority.SYSTEM, reason_required=True),
    Transition(
        State.PENDING_REVIEW, Event.EXPIRE, State.CANCELLED, Authority.SYSTEM, reason_required=True
    ),
    Transition(
        State.VERIFIED, Event.EXPIRE, State.CANCELLED, Authority.SYSTEM, reason_required=True
    ),
)


def _index(table: tuple[Transition, ...]) -> Mapping[tuple[State, Event], Transition]:
    index: dict[tuple[State, Event], Transition] = {}
    for t in table:
        key = (t.source, t.event)
        if key in index:
            raise AssertionError(f"two transitions for {t.source} --{t.event}-->")
        index[key] = t
    return MappingProxyType(index)


def _check(table: tuple[Transition, ...]) -> None:
    # One initial state: creation is the only way in (DRAFT is also re-entered by
    # request_info, so "initial" means "where creation puts a commitment", not "no
    # incoming edge"), and it cannot be terminal.
    if INITIAL in TERMINAL:
        raise AssertionError(f"the initial state {INITIAL} cannot be terminal")
    for t in table:
        if t.source in TERMINAL:
            raise AssertionError(f"terminal state {t.source} has an outgoing transition {t.event}")
    reachable = {INITIAL}
    frontier = [INITIAL]
    while frontier:
        state = frontier.pop()
        for t in table:
            if t.source == state and t.target not in reachable:
                reachable.add(t.target)
                frontier.append(t.target)
    unreachable = set(State) - reachable
    if unreachable:
        raise AssertionError(f"unreachable states: {sorted(unreachable)}")
    for event in Event:
        authorities = {t.authority for t in table if t.event == event}
        if len(authorities) != 1:
            # the service authorises an event before it reads the row, so an event must
            # mean the same authority from every state it applies to
            raise AssertionError(f"event {event} has {len(authorities)} authorities")
    for state in set(State) - TERMINAL:
        if not any(t.source == state for t in table):
            raise AssertionError(f"non-terminal state {state} has no way out")


_check(TRANSITIONS)
BY_SOURCE_EVENT: Final = _index(TRANSITIONS)


def transition_for(state: State, event: Event) -> Transition:
    """The transition ``event`` causes from ``state``; ``TransitionNotAllowed`` if none."""
    try:
        return BY_SOURCE_EVENT[(state, event)]
    except KeyError:
        allowed = ", ".join(t.event for t in TRANSITIONS if t.source == state) or "none"
        raise TransitionNotAllowed(
            f"event {event} is not allowed in state {state} (allowed: {allowed})"
        ) from None


def events_from(state: State) -> tuple[Event, ...]:
    return tuple(t.event for t in TRANSITIONS if t.source == state)


def transitions_for_event(event: Event) -> tuple[Transition, ...]:
    return tuple(t for t in TRANSITIONS if t.event == event)


def authority_for(event: Event) -> Authority:
    return transitions_for_event(event)[0].authority
