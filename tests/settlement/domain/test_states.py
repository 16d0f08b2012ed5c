"""The transition table and its import-time checks, without a database."""

from __future__ import annotations

import itertools

import pytest

from settlement.domain import states
from settlement.domain.errors import TransitionNotAllowed, UnknownEvent, UnknownState
from settlement.domain.states import TRANSITIONS, Authority, Event, State, Transition

EXPECTED = {
    (State.DRAFT, Event.SUBMIT): State.PENDING_REVIEW,
    (State.DRAFT, Event.WITHDRAW): State.CANCELLED,
    (State.PENDING_REVIEW, Event.APPROVE): State.VERIFIED,
    (State.PENDING_REVIEW, Event.REJECT): State.CANCELLED,
    (State.PENDING_REVIEW, Event.REQUEST_INFO): State.DRAFT,
    (State.VERIFIED, Event.LOCK): State.ESCROWED,
    (State.VERIFIED, Event.WITHDRAW): State.CANCELLED,
    (State.ESCROWED, Event.SETTLE): State.SETTLED,
    (State.ESCROWED, Event.RELEASE): State.VERIFIED,
    (State.ESCROWED, Event.FORCE_CANCEL): State.CANCELLED,
    (State.DRAFT, Event.EXPIRE): State.CANCELLED,
    (State.PENDING_REVIEW, Event.EXPIRE): State.CANCELLED,
    (State.VERIFIED, Event.EXPIRE): State.CANCELLED,
}


def test_six_states_and_the_ten_designed_transitions_plus_expiry() -> None:
    assert len(State) == 6
    assert {(t.source, t.event): t.target for t in TRANSITIONS} == EXPECTED


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_every_state_event_cell(state: State, event: Event) -> None:
    if (state, event) in EXPECTED:
        assert states.transition_for(state, event).target is EXPECTED[(state, event)]
    else:
        with pytest.raises(TransitionNotAllowed, match=f"{event} is not allowed in state {state}"):
            states.transition_for(state, event)


def test_terminal_states_have_no_way_out() -> None:
    for state in states.TERMINAL:
        assert states.events_from(state) == ()


def test_check_refuses_a_transition_out_of_a_terminal_state() -> None:
    bad = (*TRANSITIONS, Transition(State.SETTLED, Event.RELEASE, State.VERIFIED, Authority.ADMIN))
    with pytest.raises(AssertionError, match="terminal state SETTLED"):
        states._check(bad)


def test_check_refuses_an_unreachable_state() -> None:
    bad = tuple(t for t in TRANSITIONS if t.target is not State.SETTLED)
    with pytest.raises(AssertionError, match="unreachable states"):
        states._check(bad)


def test_check_refuses_an_event_with_two_authorities() -> None:
    bad = tuple(
        Transition(t.source, t.event, t.target, Authority.ADMIN)
        if (t.source, t.event) == (State.VERIFIED, Event.WITHDRAW)
        else t
        for t in TRANSITIONS
    )
    with pytest.raises(AssertionError, match="withdraw has 2 authorities"):
        states._check(bad)


def test_index_refuses_two_targets_for_one_cell() -> None:
    bad = (*TRANSITIONS, Transition(State.DRAFT, Event.SUBMIT, State.VERIFIED, Authority.OWNER))
    with pytest.raises(AssertionError, match="two transitions"):
        states._index(bad)


def test_parsing_names() -> None:
    assert State.parse(" pending_review ") is State.PENDING_REVIEW
    assert Event.parse("request-info") is Event.REQUEST_INFO
    with pytest.raises(UnknownState, match="'LIMBO'"):
        State.parse("LIMBO")
    with pytest.raises(UnknownEvent, match="'teleport'"):
        Event.parse("teleport")
