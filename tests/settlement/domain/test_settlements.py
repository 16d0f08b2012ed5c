"""The settlement, leg and submission tables: their import-time checks, and the
database's own rules (CHECK constraints, guard triggers) read back from a migrated
database and compared with them.

That the coordinator's moves are in the tables is checked over every reachable state of
the commit protocol by the model checker (``tests/settlement/dvp/test_model.py``)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import Engine, text

from adapters.chain import LockKind, Purpose
from settlement.domain.errors import TransitionNotAllowed
from settlement.domain.settlements import (
    DECIDES,
    LEGS,
    SETTLEMENTS,
    SUBMISSIONS,
    Decision,
    LegKind,
    LegState,
    Move,
    SettlementStatus,
    StateTable,
    SubmissionStatus,
)

# -- the tables, without a database --------------------------------------------------


def test_the_decision_opens_its_status_and_closing_follows_it() -> None:
    assert DECIDES == {
        Decision.COMMIT: SettlementStatus.COMMITTING,
        Decision.ABORT: SettlementStatus.UNWINDING,
    }
    assert SETTLEMENTS.targets[SettlementStatus.COMMITTING] == {
        SettlementStatus.SETTLED,
        SettlementStatus.UNWOUND,
    }
    assert SETTLEMENTS.targets[SettlementStatus.UNWINDING] == {SettlementStatus.UNWOUND}
    assert SETTLEMENTS.open == {
        SettlementStatus.LOCKING,
        SettlementStatus.COMMITTING,
        SettlementStatus.UNWINDING,
    }


def test_require_names_the_refused_move() -> None:
    SETTLEMENTS.require(SettlementStatus.COMMITTING, SettlementStatus.SETTLED)
    with pytest.raises(TransitionNotAllowed, match="from UNWINDING to SETTLED"):
        SETTLEMENTS.require(SettlementStatus.UNWINDING, SettlementStatus.SETTLED)
    with pytest.raises(TransitionNotAllowed, match=r"from COMMITTED to UNWOUND \(allowed: none\)"):
        LEGS.require(LegState.COMMITTED, LegState.UNWOUND)
    assert not SUBMISSIONS.allows(SubmissionStatus.REJECTED, SubmissionStatus.APPLIED)


def _legs(*moves: Move[LegState], initial: LegState = LegState.PENDING) -> StateTable[LegState]:
    return StateTable(LegState, initial=initial, terminal=LEGS.terminal, moves=moves)


def test_the_checks_refuse_a_move_out_of_a_terminal_state() -> None:
    bad = Move(LegState.COMMITTED, LegState.UNWOUND, "clawed back")
    with pytest.raises(AssertionError, match="terminal state COMMITTED"):
        _legs(*LEGS.moves, bad)


def test_the_checks_refuse_an_unreachable_state() -> None:
    moves = tuple(m for m in LEGS.moves if m.target is not LegState.REFUSED)
    with pytest.raises(AssertionError, match=r"unreachable states: REFUSED$"):
        _legs(*moves)


def test_the_checks_refuse_a_state_with_no_way_out() -> None:
    moves = tuple(m for m in LEGS.moves if m.source is not LegState.HELD)
    with pytest.raises(AssertionError, match="non-terminal state HELD has no way out"):
        _legs(*moves)


def test_the_checks_refuse_a_move_listed_twice_and_a_terminal_start() -> None:
    with pytest.raises(AssertionError, match="listed twice"):
        _legs(*LEGS.moves, LEGS.moves[0])
    with pytest.raises(AssertionError, match="initial state UNWOUND cannot be terminal"):
        _legs(*LEGS.moves, initial=LegState.UNWOUND)


# -- the database's rules ------------------------------------------------------------


def _check_values(engine: Engine, table: str, column: str) -> set[str]:
    """The names the CHECK constraint on ``table.column`` allows."""
    with engine.connect() as c:
        definition = c.execute(
            text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = CAST(:table AS regclass) AND conname = :name"
            ),
            {"table": table, "name": f"{table}_{column}_check"},
        ).scalar_one()
    return set(re.findall(r"'(\w+)'", definition))


def _function(engine: Engine, name: str) -> str:
    with engine.connect() as c:
        return str(
            c.execute(
                text("SELECT pg_get_functiondef(CAST(:name AS regproc))"), {"name": name}
            ).scalar_one()
        )


def _names(listed: str) -> set[str]:
    return set(re.findall(r"'(\w+)'", listed))


def _pairs(table: StateTable[SettlementStatus] | StateTable[LegState]) -> set[tuple[str, str]]:
    return {(m.source.value, m.target.value) for m in table.moves}


@pytest.mark.parametrize(
    ("table", "column", "names"),
    [
        ("settlements", "status", {s.value for s in SettlementStatus}),
        ("settlements", "decision", {d.value for d in Decision}),
        ("settlement_legs", "state", {s.value for s in LegState}),
        ("settlement_legs", "kind", {k.value for k in LegKind}),
        ("settlement_legs", "lock_kind", {k.value for k in LockKind}),
        ("ledger_submissions", "status", {s.value for s in SubmissionStatus}),
        ("ledger_submissions", "purpose", {p.value for p in Purpose}),
    ],
)
def test_the_enums_are_the_names_the_database_allows(
    owner_engine: Engine, table: str, column: str, names: set[str]
) -> None:
    assert _check_values(owner_engine, table, column) == names


def test_the_leg_table_is_the_legs_guard(owner_engine: Engine) -> None:
    guard = _function(owner_engine, "legs_guard")
    allowed = {
        (old, new)
        for old, news in re.findall(r"OLD\.state = '(\w+)' AND NEW\.state IN \(([^)]*)\)", guard)
        for new in _names(news)
    }
    assert allowed == _pairs(LEGS)


def test_the_settlement_table_is_the_settlements_guard(owner_engine: Engine) -> None:
    guard = _function(owner_engine, "settlements_guard")
    moves = re.findall(
        r"OLD\.status = '(\w+)' AND NEW\.status (?:= '(\w+)'|IN \(([^)]*)\))"
        r"(?: AND NEW\.decision = '(\w+)')?",
        guard,
    )
    allowed: set[tuple[str, str]] = set()
    decided: dict[str, str] = {}
    for old, new, news, decision in moves:
        targets = {new} if new else _names(news)
        allowed |= {(old, target) for target in targets}
        if decision:
            decided[decision] = new
    assert allowed == _pairs(SETTLEMENTS)
    assert decided == {d.value: s.value for d, s in DECIDES.items()}
    closed = re.search(r"OLD\.status IN \(([^)]*)\) AND \(NEW\.status <> OLD\.status", guard)
    assert closed is not None
    assert _names(closed.group(1)) == {s.value for s in SETTLEMENTS.terminal}


def test_only_the_open_settlements_are_unique_per_commitment(owner_engine: Engine) -> None:
    with owner_engine.connect() as c:
        index = c.execute(
            text(
                "SELECT indexdef FROM pg_indexes"
                " WHERE indexname = 'settlements_one_open_per_commitment'"
            )
        ).scalar_one()
    assert _names(index) == {s.value for s in SETTLEMENTS.open}


def test_only_a_signed_submission_changes(owner_engine: Engine) -> None:
    guard = _function(owner_engine, "submissions_guard")
    movable = re.findall(r"IF OLD\.status <> '(\w+)' THEN", guard)
    assert movable == [SUBMISSIONS.initial.value]
    assert set(SUBMISSIONS.targets[SUBMISSIONS.initial]) == set(SubmissionStatus) - {
        SUBMISSIONS.initial
    }
    assert SUBMISSIONS.terminal == set(SubmissionStatus) - {SUBMISSIONS.initial}
