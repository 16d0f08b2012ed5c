"""What every `settle` command shares: failing cleanly, settings, the engine, actors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer

from ledger.errors import LedgerError
from settlement import bootstrap
from settlement.domain import Actor, Role
from settlement.errors import InvalidInput, SettlementError
from settlement.settings import Settings, SettingsError, load_settings

T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
# Until the signed API exists the CLI acts through the service with the identity given here.
AsKey = Annotated[str, typer.Option("--as", help="Key id of the acting person.")]
RoleOption = Annotated[str, typer.Option("--role", help="Role of the acting key.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise fail(str(exc), 2) from exc


def engine_or_exit() -> bootstrap.Engine:
    settings = settings_or_exit()
    bootstrap.configure_logging(settings)
    try:
        return bootstrap.build(settings)
    except SettingsError as exc:
        raise fail(str(exc), 2) from exc
    except LedgerError as exc:
        raise fail(str(exc)) from exc


@contextmanager
def engine_for_command() -> Iterator[bootstrap.Engine]:
    """An engine whose ``SettlementError``s end the command with exit 1 and the message."""
    engine = engine_or_exit()
    try:
        yield engine
    except SettlementError as exc:
        raise fail(f"{exc} [{exc.code}]") from exc
    finally:
        engine.close()


def actor_from(key: str, role: str, party: str | None = None) -> Actor:
    try:
        return Actor(key, Role(role), party)
    except ValueError as exc:
        roles = ", ".join(r.value for r in Role)
        message = str(exc) if isinstance(exc, InvalidInput) else f"role must be one of {roles}"
        raise fail(message, 2) from exc


def run(call: Callable[[bootstrap.Engine], T]) -> T:
    with engine_for_command() as engine:
        return call(engine)


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))
