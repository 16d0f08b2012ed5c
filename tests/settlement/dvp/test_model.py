"""The commit protocol, checked exhaustively (``settlement.dvp.model``).

The model explores every interleaving of the coordinator's own decisions
(``protocol.lock_plan`` / ``protocol.plan``) with every ledger answer, third party and
admin action; these tests hold it to its promises, show that it finds what it is there
to find, and tie it to the database's own table of leg moves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.chain import LockKind, Purpose
from ledger.migrations.versions import __path__ as versions_path
from settlement.domain import settlements as tables
from settlement.domain.settlements import LegState, SettlementStatus, StateTable
from settlement.dvp import model, protocol
from settlement.dvp.model import SHAPES, Options, explore
from settlement.dvp.protocol import (
    EscrowClock,
    LegFacts,
    Move,
    Plan,
    assign_lock_kinds,
)

K = LockKind


#: the largest shape takes over a minute alone; it runs in ``make soak`` (and
#: ``python -m settlement.dvp.model`` checks it too), the others in every test run
_SOAK_SHAPES = {(K.CLAIMABLE, K.ESCROW, K.CLAIMABLE)}


@pytest.mark.parametrize(
    "kinds",
    [
        pytest.param(kinds, marks=[pytest.mark.slow] if kinds in _SOAK_SHAPES else [])
        for kinds in SHAPES
    ],
    ids=lambda kinds: "-".join(k.value for k in kinds),
)
def test_every_invariant_holds_in_every_reachable_state(kinds: tuple[LockKind, ...]) -> None:
    report = explore(kinds)
    print(report.describe())
    assert report.ok, report.describe()
    # not vacuous: the model reaches both ends, through many states
    assert report.states > 10_000
    statuses = {status for status, _ in report.outcomes}
    assert {"SETTLED", "UNWOUND"} <= statuses
    assert ("SETTLED", tuple("receiver" for _ in kinds)) in report.outcomes


def test_a_refusal_after_commit_returns_every_leg_or_leaves_funds_with_the_agent() -> None:
    """Without an admin to retry, the states nothing can move show where funds rest:
    all paid, all back, or waiting for a person with funds locked or with the agent;
    never paid on one side and back on the other."""
    report = explore((K.CLAIMABLE, K.ESCROW, K.CUSTODY), Options(admin=False))
    assert report.ok, report.describe()
    for status, places in report.outcomes:
        assert not ({"receiver", "back"} <= set(places)), (status, places)
    waiting = {places for status, places in report.outcomes if "person" in status}
    assert any("agent" in places for places in waiting), waiting
    # a settlement that decided COMMIT can still end with every leg returned
    assert ("UNWOUND", ("back", "back", "back")) in report.outcomes


def test_two_escrows_can_strand_one_side_which_is_why_there_is_one_pivot() -> None:
    report = explore((K.ESCROW, K.ESCROW))
    assert not report.ok
    assert report.problem == "one leg paid and another returned"
    assert report.trace is not None
    assert any("sender takes the lock back" in step for step in report.trace)
    assert assign_lock_kinds([K.ESCROW, K.ESCROW, K.CLAIMABLE]) == [
        K.ESCROW,
        K.CUSTODY,
        K.CLAIMABLE,
    ]


def test_paying_held_legs_before_the_escrow_is_validated_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The order the review found wrong (pay the Stellar leg in the same pass as the
    finish): the checker finds the stranded side and prints a shortest trace."""
    real_plan = protocol.plan

    def eager(status: SettlementStatus, legs: Sequence[LegFacts], clock: EscrowClock) -> Plan:
        todo = real_plan(status, legs, clock)
        if status is not SettlementStatus.COMMITTING or todo.mode is not protocol.Mode.FORWARD:
            return todo
        extra = tuple(
            Move(leg.leg_no, Purpose.COMMIT, held=True)
            for leg in legs
            if leg.state is LegState.HELD and not leg.open
        )
        return Plan(mode=todo.mode, moves=todo.moves + extra, waits=todo.waits, person=todo.person)

    monkeypatch.setattr(model, "plan", eager)
    report = explore((K.CLAIMABLE, K.ESCROW))
    assert not report.ok
    assert report.problem == "one leg paid and another returned"
    text = report.describe()
    assert "shortest trace" in text
    assert "sign leg 0 held commit" in text


def test_counting_refusals_before_a_ledger_after_commit_would_be_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 1: if a refusal that never reached a ledger stopped the roll-forward (as
    a stuck purpose), the checker finds a settlement nobody can finish."""
    real_record = model._record

    def counting(world: model.World, n: int, tx: model.Tx) -> model.World:
        after = real_record(world, n, tx)
        if tx.fate is model.Fate.NEVER and tx.purpose is not Purpose.LOCK:
            leg = after.legs[n]
            after = model._with_leg(after, n, replace(leg, stuck=leg.stuck | {tx.purpose}))
        return after

    monkeypatch.setattr(model, "_record", counting)
    report = explore((K.CLAIMABLE, K.ESCROW), Options(admin=False))
    assert not report.ok, report.describe()


def test_every_leg_move_of_the_model_is_one_the_database_allows() -> None:
    """The model's leg moves are the database's: migration 0011's legs_guard table."""
    source = (Path(versions_path[0]) / "0011_commit_protocol.py").read_text()
    table = source.split("LEG_MOVES = ", 1)[1].split('"""', 2)[1]
    allowed = {
        (old, new)
        for old, news in re.findall(r"OLD\.state = '(\w+)' AND NEW\.state IN \(([^)]*)\)", table)
        for new in re.findall(r"'(\w+)'", news)
    }
    assert allowed
    moves: set[tuple[str, str]] = set()
    for kinds in SHAPES[:2]:
        moves |= explore(kinds).leg_moves
    assert moves, "the model moved no leg"
    assert moves <= allowed, moves - allowed


def test_every_move_of_the_model_is_in_the_domain_tables() -> None:
    """Every status and leg state change the coordinator's decisions make, in every
    reachable state, is a move of ``settlement.domain.settlements`` (``explore`` stops
    at the first that is not); and the model makes every move the tables list, so they
    hold nothing the engine never does."""
    status_moves: set[tuple[str, str]] = set()
    leg_moves: set[tuple[str, str]] = set()
    for kinds in SHAPES[:2]:
        report = explore(kinds)
        assert report.ok, report.describe()
        status_moves |= report.status_moves
        leg_moves |= report.leg_moves
    assert status_moves == {(m.source.value, m.target.value) for m in tables.SETTLEMENTS.moves}
    assert leg_moves == {(m.source.value, m.target.value) for m in tables.LEGS.moves}


def test_a_move_missing_from_the_table_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    narrower = StateTable(
        LegState,
        initial=tables.LEGS.initial,
        terminal=tables.LEGS.terminal,
        moves=tuple(
            m
            for m in tables.LEGS.moves
            if (m.source, m.target) != (LegState.HELD, LegState.REFUSED)
        ),
    )
    monkeypatch.setattr(model, "LEGS", narrower)
    report = explore((K.CLAIMABLE, K.ESCROW))
    assert not report.ok
    assert report.problem is not None
    assert "moved HELD -> REFUSED, not in the table" in report.problem
    assert report.trace is not None
    assert report.trace[-1].startswith("record leg"), report.describe()
