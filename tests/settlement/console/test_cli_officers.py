"""`settle officers` (the new command group) on a real database: the registry as before,
plus console accounts, which then sign in through ``ConsoleAccounts``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, create_engine, text
from typer.testing import CliRunner

from ledger.errors import PermissionRefused, ProtectedColumn
from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.cli.officers import officers_app
from settlement.clock import ManualClock
from settlement.services.console_accounts import ConsoleAccounts, SessionEnd, SignInFailed

from .conftest import PASSWORD, TEST_HASHER


def settle(*args: str, env: dict[str, str], stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(officers_app, list(args), env=env, input=stdin)
    return result.exit_code, result.output


@pytest.fixture
def env(fresh_urls: DatabaseUrls) -> dict[str, str]:
    return {"SETTLEMENT_DATABASE_URL": fresh_urls.owner, "SETTLEMENT_NETWORK": "local"}


@pytest.fixture
def accounts(fresh_engine: bootstrap.Services, clock: ManualClock) -> ConsoleAccounts:
    return ConsoleAccounts(
        fresh_engine.db, clock, fresh_engine.compliance, hasher=TEST_HASHER, max_attempts=3
    )


@pytest.fixture
def app_db(fresh_urls: DatabaseUrls) -> Iterator[Engine]:
    eng = create_engine(fresh_urls.app, isolation_level="AUTOCOMMIT")
    yield eng
    eng.dispose()


def _hash_of(app_db: Engine, username: str) -> str:
    with app_db.connect() as c:
        return str(
            c.execute(
                text("SELECT password_hash FROM console_accounts WHERE username = :u"),
                {"u": username},
            ).scalar_one()
        )


def test_add_registers_the_officer_and_its_login(
    env: dict[str, str], accounts: ConsoleAccounts, app_db: Engine
) -> None:
    code, output = settle(
        "add", "key-off-a", "--display-name", "Anna Officer", "--as", "key-admin-1",
        "--login", "anna", "--password-stdin",
        env=env, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert code == 0, output
    assert "officer key-off-a v1" in output
    assert "console account anna acts as key-off-a" in output
    code, output = settle("list", "--json", env=env)
    assert code == 0, output
    assert [o["officer_id"] for o in json.loads(output)] == ["key-off-a"]
    code, output = settle("logins", "--json", env=env)
    (listed,) = json.loads(output)
    assert listed["username"] == "anna"
    assert listed["role"] == "compliance_officer"
    assert "password_hash" not in listed
    stored = _hash_of(app_db, "anna")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    # created with the library's parameters, signed in under others: rehashed once
    signed_in = accounts.sign_in("anna", PASSWORD)
    assert signed_in.session.actor.id == "key-off-a"
    rehashed = _hash_of(app_db, "anna")
    assert rehashed != stored
    assert not TEST_HASHER.check_needs_rehash(rehashed)
    assert PasswordHasher().check_needs_rehash(rehashed)


def test_a_bad_login_changes_nothing_not_even_the_registry(
    env: dict[str, str], accounts: ConsoleAccounts
) -> None:
    code, output = settle(
        "add", "key-off-b", "--name", "B", "--as", "key-admin-1", "--login", "bee",
        "--password-stdin", env=env, stdin="short\n",
    )  # fmt: skip
    assert code == 1
    assert "at least 12 characters" in output
    assert settle("list", "--json", env=env)[1].strip() == "[]"
    assert accounts.accounts() == []


def test_login_for_an_admin_and_only_for_a_registered_officer(
    env: dict[str, str], accounts: ConsoleAccounts
) -> None:
    code, output = settle("login", "root", "--admin", "key-admin-9", "--password-stdin",
                          env=env, stdin=PASSWORD + "\n")  # fmt: skip
    assert code == 0, output
    assert accounts.sign_in("root", PASSWORD).session.actor.role.value == "admin"
    code, output = settle("login", "ghost", "--officer", "key-nobody", "--password-stdin",
                          env=env, stdin=PASSWORD + "\n")  # fmt: skip
    assert code == 1
    assert "not an active registered compliance officer" in output
    code, output = settle("login", "both", env=env)
    assert code == 2
    # without --password-stdin the password is asked for twice, hidden
    code, output = settle("login", "prompted", "--admin", "key-admin-5",
                          env=env, stdin=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    assert code == 0, output
    assert PASSWORD not in output
    assert accounts.sign_in("prompted", PASSWORD).session.actor.id == "key-admin-5"
    code, output = settle("login", "again", "--admin", "key-admin-9", "--password-stdin",
                          env=env, stdin=PASSWORD + "\n")  # fmt: skip
    assert code == 1
    assert "already exists" in output


def test_unlock_and_disable(env: dict[str, str], accounts: ConsoleAccounts) -> None:
    assert settle("login", "ops", "--admin", "key-admin-2", "--password-stdin",
                  env=env, stdin=PASSWORD + "\n")[0] == 0  # fmt: skip
    for _ in range(3):
        with pytest.raises(SignInFailed):
            accounts.sign_in("ops", "wrong password!!")
    with pytest.raises(SignInFailed):
        accounts.sign_in("ops", PASSWORD)  # locked
    code, output = settle("unlock", "ops", env=env)
    assert code == 0, output
    session = accounts.sign_in("ops", PASSWORD)
    code, output = settle("disable", "ops", env=env)
    assert code == 0, output
    assert accounts.lookup(session.session_id).ended is SessionEnd.SIGNED_OUT
    with pytest.raises(SignInFailed):
        accounts.sign_in("ops", PASSWORD)
    assert settle("enable", "ops", env=env)[0] == 0
    assert accounts.sign_in("ops", PASSWORD).session.username == "ops"
    code, output = settle("unlock", "nobody", env=env)
    assert code == 1
    assert "no console account" in output


def test_the_application_role_cannot_rewrite_or_delete_an_account(
    env: dict[str, str], app_db: Engine
) -> None:
    assert settle("login", "audited", "--admin", "key-admin-3", "--password-stdin",
                  env=env, stdin=PASSWORD + "\n")[0] == 0  # fmt: skip
    from ledger.errors import translate

    def refused(sql: str) -> type[Exception]:
        with app_db.connect() as c:
            try:
                c.execute(text(sql))
            except Exception as exc:  # noqa: BLE001 - translated and returned for the assert
                return type(translate(exc))
        raise AssertionError(f"not refused: {sql}")

    assert refused("UPDATE console_accounts SET role = 'compliance_officer'") is PermissionRefused
    assert refused("DELETE FROM console_accounts") is PermissionRefused
    assert refused("UPDATE console_sessions SET csrf_token = 'x'") is PermissionRefused


def test_the_database_refuses_identity_changes_even_to_its_owner(
    env: dict[str, str], fresh_urls: DatabaseUrls
) -> None:
    assert settle("login", "fixed", "--admin", "key-admin-4", "--password-stdin",
                  env=env, stdin=PASSWORD + "\n")[0] == 0  # fmt: skip
    owner = create_engine(fresh_urls.owner, isolation_level="AUTOCOMMIT")
    from ledger.errors import translate

    try:
        with owner.connect() as c, pytest.raises(Exception) as caught:  # noqa: PT011
            c.execute(text("UPDATE console_accounts SET actor_id = 'key-other'"))
        assert isinstance(translate(caught.value), ProtectedColumn)
        with owner.connect() as c, pytest.raises(Exception) as caught:  # noqa: PT011
            c.execute(text("DELETE FROM console_accounts"))
        assert isinstance(translate(caught.value), ProtectedColumn)
    finally:
        owner.dispose()
