"""Every (state, event) cell through the service and the real database."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import Engine as SqlEngine

from settlement.bootstrap import Services
from settlement.domain import errors
from settlement.domain.states import BY_SOURCE_EVENT, Event, State, authority_for
from settlement.services.commitments import ROLES_FOR
from tests.support import (
    ALL_ACTORS,
    ALLOCATOR,
    ENTITLED,
    OTHER_ALLOCATOR,
    new_commitment,
    reason_for,
    snapshot,
)


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_cell(engine: Services, app_engine: SqlEngine, state: State, event: Event) -> None:
    service = engine.commitments
    cid = new_commitment(service, state)
    before = service.get(cid)
    trail_before = service.audit_trail(cid)
    legal = BY_SOURCE_EVENT.get((state, event))
    if legal is None:
        frozen = snapshot(app_engine, cid)
        with pytest.raises(errors.TransitionNotAllowed):
            service.apply(
                ENTITLED[event],
                cid,
                event,
                expected_version=before.version,
                reason=reason_for(event),
            )
        assert snapshot(app_engine, cid) == frozen
        return
    result = service.apply(
        ENTITLED[event], cid, event, expected_version=before.version, reason=reason_for(event)
    )
    after = service.get(cid)
    assert (result.from_state, result.to_state) == (state.value, legal.target.value)
    assert (after.state, after.version) == (legal.target.value, before.version + 1)
    history = service.history(cid)[-1]
    assert (history.event, history.from_state, history.to_state, history.actor) == (
        event.value,
        state.value,
        legal.target.value,
        ENTITLED[event].id,
    )
    trail = service.audit_trail(cid)
    assert len(trail) == len(trail_before) + 1
    entry = trail[-1]
    assert (entry.action, entry.actor, entry.commitment_version) == (
        event.value,
        ENTITLED[event].id,
        after.version,
    )
    assert entry.entry_hash == result.entry_hash
    if reason_for(event):
        assert reason_for(event) in entry.payload


LEGAL = sorted(BY_SOURCE_EVENT, key=lambda k: (list(State).index(k[0]), k[1]))


@pytest.mark.parametrize(("state", "event"), LEGAL)
def test_only_the_entitled_role_may_cause_a_transition(
    engine: Services, app_engine: SqlEngine, state: State, event: Event
) -> None:
    service = engine.commitments
    cid = new_commitment(service, state)
    frozen = snapshot(app_engine, cid)
    entitled_roles = ROLES_FOR[authority_for(event)]
    refused = [a for a in ALL_ACTORS if a.role not in entitled_roles or a is OTHER_ALLOCATOR]
    assert refused, "every event is refused to someone"
    for actor in refused:
        with pytest.raises(errors.NotAuthorised):
            service.apply(actor, cid, event, reason=reason_for(event))
    assert snapshot(app_engine, cid) == frozen


def test_another_allocator_cannot_act_on_my_commitment(
    engine: Services, app_engine: SqlEngine
) -> None:
    cid = new_commitment(engine.commitments, State.DRAFT)
    frozen = snapshot(app_engine, cid)
    with pytest.raises(errors.NotAuthorised, match="does not own"):
        engine.commitments.submit(OTHER_ALLOCATOR, cid)
    assert snapshot(app_engine, cid) == frozen


def test_the_submitter_cannot_approve_even_holding_an_officer_key(
    engine: Services, app_engine: SqlEngine
) -> None:
    from settlement.domain.values import Actor, Role

    service = engine.commitments
    cid = new_commitment(service, State.DRAFT)
    service.submit(ALLOCATOR, cid)
    same_person_as_officer = Actor(ALLOCATOR.id, Role.COMPLIANCE_OFFICER)
    frozen = snapshot(app_engine, cid)
    with pytest.raises(errors.NotAuthorised, match="submitted commitment"):
        service.approve(same_person_as_officer, cid)
    assert snapshot(app_engine, cid) == frozen
