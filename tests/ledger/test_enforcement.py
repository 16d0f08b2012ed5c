"""What PostgreSQL refuses to ``settlement_app`` whatever the application does.

Each attack is raw SQL on a connection as the application role; each must fail and
leave every row of the commitment, its history and its audit chain unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from ledger.errors import (
    AuditAppendOnly,
    LedgerError,
    MissingAuditEntry,
    PermissionRefused,
    ProtectedColumn,
    TerminalRowImmutable,
    TransitionRefused,
    translate,
)
from settlement.bootstrap import Services
from settlement.domain.states import State
from tests.support import new_commitment, snapshot


def attempt(
    engine: Engine, sql: str | list[str], params: dict[str, object] | None = None
) -> LedgerError:
    """Run the statements in one transaction; return the translated refusal."""
    statements = [sql] if isinstance(sql, str) else sql
    with engine.connect() as c:
        try:
            with c.begin():
                for statement in statements:
                    c.execute(text(statement), params or {})
        except DBAPIError as exc:
            return translate(exc)
    raise AssertionError(f"the database accepted: {sql}")


@pytest.fixture
def draft(engine: Services) -> object:
    return new_commitment(engine.commitments, State.DRAFT)


def test_invalid_transition_refused(engine: Services, app_engine: Engine) -> None:
    cid = new_commitment(engine.commitments, State.DRAFT)
    before = snapshot(app_engine, cid)
    error = attempt(
        app_engine,
        "UPDATE commitments SET state = 'SETTLED', last_event = 'settle',"
        " version = version + 1 WHERE id = :id",
        {"id": cid},
    )
    assert isinstance(error, TransitionRefused)
    assert "invalid transition: DRAFT -> SETTLED" in str(error)
    assert snapshot(app_engine, cid) == before


def test_valid_pair_with_wrong_event_refused(engine: Services, app_engine: Engine) -> None:
    cid = new_commitment(engine.commitments, State.PENDING_REVIEW)
    before = snapshot(app_engine, cid)
    # PENDING_REVIEW -> VERIFIED exists, but only as "approve"
    error = attempt(
        app_engine,
        "UPDATE commitments SET state = 'VERIFIED', last_event = 'reject',"
        " version = version + 1 WHERE id = :id",
        {"id": cid},
    )
    assert isinstance(error, TransitionRefused)
    assert snapshot(app_engine, cid) == before


@pytest.mark.parametrize("terminal", [State.SETTLED, State.CANCELLED])
@pytest.mark.parametrize(
    "change",
    [
        "state = 'DRAFT', last_event = 'withdraw', version = version + 1",
        "amount = amount + 1, version = version + 1",
        "updated_at = now(), version = version + 1",
        "submitted_by = 'someone-else', version = version + 1",
    ],
)
def test_terminal_rows_are_immutable(
    engine: Services, app_engine: Engine, terminal: State, change: str
) -> None:
    cid = new_commitment(engine.commitments, terminal)
    before = snapshot(app_engine, cid)
    error = attempt(app_engine, f"UPDATE commitments SET {change} WHERE id = :id", {"id": cid})
    assert isinstance(error, TerminalRowImmutable)
    assert snapshot(app_engine, cid) == before


def test_state_change_without_audit_entry_refused_at_commit(
    engine: Services, app_engine: Engine
) -> None:
    cid = new_commitment(engine.commitments, State.DRAFT)
    before = snapshot(app_engine, cid)
    # a legal transition, with its history row, but no audit entry
    error = attempt(
        app_engine,
        [
            "UPDATE commitments SET state = 'PENDING_REVIEW', last_event = 'submit',"
            " version = version + 1 WHERE id = :id",
            "INSERT INTO state_transitions (commitment_id, version, from_state, to_state, event,"
            " actor, at) VALUES (:id, 2, 'DRAFT', 'PENDING_REVIEW', 'submit', 'x', now())",
        ],
        {"id": cid},
    )
    assert isinstance(error, MissingAuditEntry)
    assert snapshot(app_engine, cid) == before


def test_version_must_advance_by_one(engine: Services, app_engine: Engine) -> None:
    cid = new_commitment(engine.commitments, State.DRAFT)
    before = snapshot(app_engine, cid)
    error = attempt(app_engine, "UPDATE commitments SET amount = 5 WHERE id = :id", {"id": cid})
    assert isinstance(error, ProtectedColumn)
    assert snapshot(app_engine, cid) == before


def test_commitment_must_start_in_draft(app_engine: Engine) -> None:
    cid = uuid4()
    error = attempt(
        app_engine,
        "INSERT INTO commitments (id, owner_party, deal_ref, amount, currency, state, last_event,"
        " version, created_by, created_at, updated_at) VALUES (:id, 'p', 'd', 1, 'USD', 'VERIFIED',"
        " 'create', 1, 'x', now(), now())",
        {"id": cid},
    )
    assert isinstance(error, TransitionRefused)
    with app_engine.connect() as c:
        assert (
            c.execute(
                text("SELECT count(*) FROM commitments WHERE id = :id"), {"id": cid}
            ).scalar_one()
            == 0
        )


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("UPDATE audit_log SET actor = 'mallory' WHERE commitment_id = :id", PermissionRefused),
        ("DELETE FROM audit_log WHERE commitment_id = :id", PermissionRefused),
        ("TRUNCATE audit_log CASCADE", PermissionRefused),
        (
            "UPDATE state_transitions SET actor = 'mallory' WHERE commitment_id = :id",
            PermissionRefused,
        ),
        ("DELETE FROM commitments WHERE id = :id", PermissionRefused),
        ("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only", PermissionRefused),
        ("ALTER TABLE commitments DISABLE TRIGGER ALL", PermissionRefused),
        ("SET session_replication_role = replica", PermissionRefused),
        (
            "INSERT INTO valid_transitions VALUES ('SETTLED', 'reopen', 'DRAFT')",
            PermissionRefused,
        ),
        ("DROP TRIGGER commitments_guard_update ON commitments", LedgerError),
    ],
)
def test_audit_history_and_triggers_untouchable(
    engine: Services, app_engine: Engine, sql: str, expected: type[LedgerError]
) -> None:
    cid = new_commitment(engine.commitments, State.VERIFIED)
    before = snapshot(app_engine, cid)
    error = attempt(app_engine, sql, {"id": cid})
    assert isinstance(error, expected), error
    assert snapshot(app_engine, cid) == before


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET actor = 'mallory' WHERE commitment_id = :id",
        "DELETE FROM audit_log WHERE commitment_id = :id",
        "TRUNCATE audit_log CASCADE",
        "DELETE FROM state_transitions WHERE commitment_id = :id",
    ],
)
def test_even_the_owner_cannot_rewrite_history_with_triggers_on(
    engine: Services, owner_engine: Engine, sql: str
) -> None:
    cid = new_commitment(engine.commitments, State.PENDING_REVIEW)
    before = snapshot(owner_engine, cid)
    error = attempt(owner_engine, sql, {"id": cid})
    assert isinstance(error, AuditAppendOnly)
    assert snapshot(owner_engine, cid) == before


def test_inserted_audit_entry_gets_the_chain_the_database_computes(
    engine: Services, app_engine: Engine
) -> None:
    """A forged seq, prev_hash or hash is overwritten: the chain stays intact."""
    cid = new_commitment(engine.commitments, State.DRAFT)

    def insert(c: Connection) -> None:
        c.execute(
            text(
                "INSERT INTO audit_log (commitment_id, seq, recorded_at, actor, action, payload,"
                " prev_hash, entry_hash)"
                " VALUES (:id, 99, now(), 'ops', 'note', '{}', 'forged', 'forged')"
            ),
            {"id": cid},
        )

    run: Callable[[Connection], None] = insert
    with app_engine.connect() as c, c.begin():
        run(c)
    report = engine.commitments.verify_audit()
    assert report.ok, report.breaks
    trail = engine.commitments.audit_trail(cid)
    assert [e.seq for e in trail] == [1, 2]
    assert trail[1].prev_hash == trail[0].entry_hash
