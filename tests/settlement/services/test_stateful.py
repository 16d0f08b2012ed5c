"""Random event sequences against a plain model of the transition table.

After every step the database's state, version, history and audit chain must agree
with the model, and every chain must verify.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from settlement.bootstrap import Services
from settlement.clock import ManualClock
from settlement.domain import errors
from settlement.domain.states import Event
from settlement.domain.values import Actor
from tests.support import ALL_ACTORS, ENTITLED, OFFICER_2, seed_compliance

# the plain model: written out again here on purpose, not imported from settlement.domain.states
MODEL: dict[tuple[str, str], str] = {
    ("DRAFT", "submit"): "PENDING_REVIEW",
    ("DRAFT", "withdraw"): "CANCELLED",
    ("PENDING_REVIEW", "approve"): "VERIFIED",
    ("PENDING_REVIEW", "reject"): "CANCELLED",
    ("PENDING_REVIEW", "request_info"): "DRAFT",
    ("VERIFIED", "lock"): "ESCROWED",
    ("VERIFIED", "withdraw"): "CANCELLED",
    ("ESCROWED", "settle"): "SETTLED",
    ("ESCROWED", "release"): "VERIFIED",
    ("ESCROWED", "force_cancel"): "CANCELLED",
    ("DRAFT", "expire"): "CANCELLED",
    ("PENDING_REVIEW", "expire"): "CANCELLED",
    ("VERIFIED", "expire"): "CANCELLED",
}
ROLE_OF_EVENT = {e.value: {ENTITLED[e].role} for e in Event}
ROLE_OF_EVENT["release"] = {ENTITLED[Event.RELEASE].role, ENTITLED[Event.FORCE_CANCEL].role}
NEEDS_REASON = {"reject", "request_info", "force_cancel", "expire"}


@dataclass
class Modelled:
    state: str = "DRAFT"
    version: int = 1
    history: list[tuple[str, str]] = field(default_factory=lambda: [("create", "DRAFT")])


class CommitmentMachine(RuleBasedStateMachine):
    engine: Services
    clock: ManualClock

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[UUID, Modelled] = {}

    @initialize()
    def first(self) -> None:
        self.create()

    @rule()
    def create(self) -> None:
        result = self.engine.commitments.create(
            ENTITLED[Event.SUBMIT], deal_ref="STATEFUL", amount="1.5", currency="USD"
        )
        self.model[result.commitment_id] = Modelled()

    @precondition(lambda self: bool(self.model))
    @rule(
        pick=st.integers(min_value=0),
        event=st.sampled_from([e.value for e in Event]),
        actor=st.sampled_from((*ALL_ACTORS, OFFICER_2)),
        stale=st.booleans(),
        with_reason=st.booleans(),
        seconds=st.integers(min_value=0, max_value=3600),
    )
    def apply(
        self, pick: int, event: str, actor: Actor, stale: bool, with_reason: bool, seconds: int
    ) -> None:
        self.clock.advance(timedelta(seconds=seconds))
        cid = list(self.model)[pick % len(self.model)]
        model = self.model[cid]
        # a stale version is one the commitment is not at: behind, or (at 1) ahead
        version = (model.version - 1 or 2) if stale else model.version
        reason = "stateful test reason" if with_reason else None
        target = MODEL.get((model.state, event))

        if actor.role not in ROLE_OF_EVENT[event]:
            expected: type[Exception] | None = errors.NotAuthorised
        elif event in NEEDS_REASON and reason is None:
            expected = errors.InvalidText
        elif stale:
            expected = errors.StaleVersion
        elif actor.party is not None and actor.party != ENTITLED[Event.SUBMIT].party:
            expected = errors.NotAuthorised
        elif target is None:
            expected = errors.TransitionNotAllowed
        else:
            expected = None

        if expected is not None:
            try:
                self.engine.commitments.apply(
                    actor, cid, event, expected_version=version, reason=reason
                )
            except expected:
                return
            raise AssertionError(
                f"{event} by {actor.id} from {model.state} should raise {expected}"
            )

        result = self.engine.commitments.apply(
            actor, cid, event, expected_version=version, reason=reason
        )
        assert result.to_state == target
        model.state, model.version = target, model.version + 1
        model.history.append((event, target))

    @invariant()
    def database_agrees_with_model(self) -> None:
        for cid, model in self.model.items():
            record = self.engine.commitments.get(cid)
            assert (record.state, record.version) == (model.state, model.version)
            history = [(h.event, h.to_state) for h in self.engine.commitments.history(cid)]
            assert history == model.history
            trail = [
                (e.action, e.to_state)
                for e in self.engine.commitments.audit_trail(cid)
                if e.commitment_version is not None
            ]
            assert trail == model.history

    @invariant()
    def chains_verify(self) -> None:
        from ledger.audit import verify_all

        with self.engine.db.unit_of_work() as uow:
            report = verify_all(uow.connection, commitment_ids=list(self.model))
        assert report.ok, report.breaks
        assert report.chains == len(self.model)


def test_random_event_sequences(engine: Services, clock: ManualClock) -> None:
    seed_compliance(engine.commitments)
    CommitmentMachine.engine = engine
    CommitmentMachine.clock = clock
    run_state_machine_as_test(
        CommitmentMachine,
        settings=settings(
            max_examples=20,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
