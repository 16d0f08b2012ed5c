"""`settle officers`: the compliance officer registry and web console accounts.

Registering an officer is an admin's act through the compliance desk (audited there).
Console accounts are operator commands on the database directly, like ``settle keys``:
a console account acts as an officer id (registered, active) or as an admin actor id,
so everything done through the console is done as that actor, under the same rules as
its API key. Passwords are read from a hidden prompt or, for scripts, one line of
standard input (``--password-stdin``); they never appear on a command line.
"""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from ledger.console_accounts import AccountRow
from settlement import bootstrap
from settlement.cli.common import (
    AsKey,
    JsonFlag,
    RoleOption,
    actor_from,
    echo_json,
    engine_for_command,
    fail,
    run,
)
from settlement.domain.values import Role
from settlement.services.console_accounts import (
    MIN_PASSWORD_CHARS,
    ConsoleAccounts,
    check_password,
    parse_username,
)

officers_app = typer.Typer(help="Compliance officers and console accounts.", no_args_is_help=True)

PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input."
    ),
]


def _operator() -> str:
    return f"operator:{getpass.getuser()}"


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    password: str = typer.prompt(
        f"Console password (at least {MIN_PASSWORD_CHARS} characters)",
        hide_input=True,
        confirmation_prompt=True,
    )
    return password


def _accounts(engine: bootstrap.Services) -> ConsoleAccounts:
    return ConsoleAccounts(engine.db, engine.clock, engine.compliance)


def _create_login(
    engine: bootstrap.Services, username: str, actor_id: str, role: Role, password: str
) -> AccountRow:
    return _accounts(engine).create(
        username=username,
        password=password,
        actor_id=actor_id,
        role=role,
        created_by=_operator(),
    )


def _account_dict(a: AccountRow) -> dict[str, object]:
    return {
        "username": a.username,
        "actor_id": a.actor_id,
        "role": a.role,
        "active": a.active,
        "failed_attempts": a.failed_attempts,
        "locked_until": a.locked_until.isoformat() if a.locked_until else None,
        "created_at": a.created_at.isoformat(),
        "created_by": a.created_by,
        "last_sign_in_at": a.last_sign_in_at.isoformat() if a.last_sign_in_at else None,
    }


# -- the registry -------------------------------------------------------------------------


@officers_app.command("add")
def officers_add(
    officer_id: Annotated[
        str, typer.Argument(help="The officer id (keys name it: settle keys new --person).")
    ],
    *,
    name: Annotated[str, typer.Option("--name", "--display-name", help="Display name.")],
    as_key: AsKey,
    senior: Annotated[bool, typer.Option(help="May override hard fails.")] = False,
    active: Annotated[bool, typer.Option(help="--no-active withdraws the officer.")] = True,
    role: RoleOption = Role.ADMIN.value,
    login: Annotated[
        str | None,
        typer.Option("--login", help="Also create a console account with this username."),
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Register an officer, or change one (admin only); --login adds a console account."""
    actor = actor_from(as_key, role)
    password = _read_password(password_stdin) if login is not None else None
    with engine_for_command() as engine:
        if login is not None:
            # refuse a bad login before the registry changes, so nothing is half done
            assert password is not None
            parse_username(login)
            check_password(password)
        officer = engine.compliance.register_officer(
            actor, officer_id, display_name=name, senior=senior, active=active
        )
        typer.echo(
            f"officer {officer.officer_id} v{officer.version}: senior={officer.senior} "
            f"active={officer.active}"
        )
        if login is not None:
            assert password is not None
            account = _create_login(
                engine, login, officer.officer_id, Role.COMPLIANCE_OFFICER, password
            )
            typer.echo(f"console account {account.username} acts as {account.actor_id}")


@officers_app.command("list")
def officers_list(as_json: JsonFlag = False) -> None:
    """Every registered officer."""
    officers = run(lambda e: e.compliance.officers())
    if as_json:
        echo_json([o.__dict__ for o in officers])
        return
    for o in officers:
        flags = " ".join(f for f, on in (("senior", o.senior), ("inactive", not o.active)) if on)
        typer.echo(f"{o.officer_id:<30} {o.display_name:<30} v{o.version} {flags}")


# -- console accounts ------------------------------------------------------------------------


@officers_app.command("login")
def officers_login(
    username: Annotated[str, typer.Argument(help="Console username (a-z 0-9 . _ -).")],
    *,
    officer: Annotated[
        str | None, typer.Option("--officer", help="Act as this registered officer id.")
    ] = None,
    admin: Annotated[
        str | None, typer.Option("--admin", help="Act as this admin actor id.")
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a console account for a registered officer or for an admin."""
    if (officer is None) == (admin is None):
        raise fail("give exactly one of --officer OFFICER_ID or --admin ACTOR_ID", 2)
    actor_id, role = (
        (officer, Role.COMPLIANCE_OFFICER) if officer is not None else (admin, Role.ADMIN)
    )
    assert actor_id is not None
    password = _read_password(password_stdin)
    account = run(lambda e: _create_login(e, username, actor_id, role, password))
    typer.echo(f"console account {account.username} acts as {account.actor_id} ({account.role})")


@officers_app.command("logins")
def officers_logins(as_json: JsonFlag = False) -> None:
    """Every console account (never its password hash)."""
    accounts = run(lambda e: _accounts(e).accounts())
    if as_json:
        echo_json([_account_dict(a) for a in accounts])
        return
    for a in accounts:
        flags = " ".join(
            f
            for f, on in (("disabled", not a.active), ("locked", a.locked_until is not None))
            if on
        )
        typer.echo(f"{a.username:<24} {a.actor_id:<30} {a.role:<20} {flags}")


@officers_app.command("unlock")
def officers_unlock(username: str) -> None:
    """Clear a console account's failed attempts and lockout."""
    run(lambda e: _accounts(e).unlock(username))
    typer.echo(f"console account {username} unlocked")


@officers_app.command("disable")
def officers_disable(username: str) -> None:
    """Disable a console account and end its sessions (accounts are never deleted)."""
    run(lambda e: _accounts(e).set_active(username, False))
    typer.echo(f"console account {username} disabled; its sessions are signed out")


@officers_app.command("enable")
def officers_enable(username: str) -> None:
    """Enable a disabled console account."""
    run(lambda e: _accounts(e).set_active(username, True))
    typer.echo(f"console account {username} enabled")


@officers_app.command("password")
def officers_password(username: str, password_stdin: PasswordStdin = False) -> None:
    """Set a console account's password; its live sessions end."""
    password = _read_password(password_stdin)
    run(lambda e: _accounts(e).set_password(username, password))
    typer.echo(f"console account {username}: password changed; its sessions are signed out")
