"""The schema as migrated: the transition table, the application role's powers."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, text

from ledger import migrate
from settlement.bootstrap import DatabaseUrls
from settlement.domain.states import TRANSITIONS


def test_valid_transitions_table_equals_python_table(owner_engine: Engine) -> None:
    with owner_engine.connect() as c:
        rows = set(c.execute(text("SELECT from_state, event, to_state FROM valid_transitions")))
    assert rows == {(t.source.value, t.event.value, t.target.value) for t in TRANSITIONS}


def test_state_check_constraint_lists_exactly_the_six_states(owner_engine: Engine) -> None:
    with owner_engine.connect() as c:
        definition = c.execute(
            text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = 'commitments'::regclass AND contype = 'c'"
                " AND pg_get_constraintdef(oid) LIKE '%state%'"
            )
        ).scalar_one()
    for name in ("DRAFT", "PENDING_REVIEW", "VERIFIED", "ESCROWED", "SETTLED", "CANCELLED"):
        assert f"'{name}'" in definition


def test_application_role_has_no_dangerous_powers(owner_engine: Engine) -> None:
    with owner_engine.connect() as c:
        role = c.execute(
            text(
                "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication"
                " FROM pg_roles WHERE rolname = 'settlement_app'"
            )
        ).one()
        owned = c.execute(
            text(
                "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
                " WHERE r.rolname = 'settlement_app'"
            )
        ).scalar_one()
        privileges = {
            privilege: c.execute(
                text("SELECT has_table_privilege('settlement_app', 'audit_log', :p)"),
                {"p": privilege},
            ).scalar_one()
            for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER")
        }
    assert tuple(role) == (False, False, False, False, False)
    assert owned == 0
    assert privileges == {
        "SELECT": True,
        "INSERT": True,
        "UPDATE": False,
        "DELETE": False,
        "TRUNCATE": False,
        "TRIGGER": False,
    }


def test_migrations_go_down_and_up_again(fresh_urls: DatabaseUrls) -> None:
    assert migrate.current_revision(fresh_urls.owner) == migrate.head_revision()
    assert migrate.downgrade(fresh_urls.owner, "base") == "base"
    assert migrate.current_revision(fresh_urls.owner) is None
    assert migrate.upgrade(fresh_urls.owner) == migrate.head_revision()


def test_ensure_database_creates_once_and_keeps_what_is_there(pg_server: Any) -> None:
    name = f"settlement_test_ensure_{os.getpid()}"
    admin = pg_server.admin()
    try:
        migrate.ensure_database(pg_server.maintenance_url, name)
        created = create_engine(pg_server.url_for(name))
        with created.begin() as c:
            c.execute(text("CREATE TABLE kept (n int)"))
        migrate.ensure_database(pg_server.maintenance_url, name)
        with created.connect() as c:
            assert c.execute(text("SELECT to_regclass('kept') IS NOT NULL")).scalar_one()
        created.dispose()
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
