"""What every `settle` command shares: failing cleanly, settings, the engine, actors."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer

from ledger.errors import LedgerError
from settlement import bootstrap
from settlement.domain.errors import InvalidInput, SettlementError
from settlement.domain.values import Actor, Role
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


def engine_or_exit() -> bootstrap.Services:
    settings = settings_or_exit()
    bootstrap.configure_logging(settings)
    try:
        return bootstrap.build(settings)
    except SettingsError as exc:
        raise fail(str(exc), 2) from exc
    except LedgerError as exc:
        raise fail(str(exc)) from exc


@contextmanager
def engine_for_command() -> Iterator[bootstrap.Services]:
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


def run(call: Callable[[bootstrap.Services], T]) -> T:
    with engine_for_command() as engine:
        return call(engine)


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def _unwrap_paragraph(paragraph: str) -> str:
    """One paragraph of a docstring as one line, unless its line breaks carry meaning.

    Lists (lines starting with ``-``, ``*`` or ``N.``), indented blocks and click's
    ``\\b`` no-rewrap marker keep their lines; prose written hard-wrapped at 88 columns
    is joined, so the terminal wraps it at its own width instead of mid-sentence.
    """
    lines = paragraph.splitlines()
    if len(lines) < 2 or lines[0].strip() == "\b":
        return paragraph
    stripped = [line.strip() for line in lines]
    if any(line.startswith(("-", "*", "•")) or line[:2].rstrip(".").isdigit() for line in stripped):
        return paragraph
    if any(line.startswith((" ", "\t")) for line in lines):
        return paragraph
    return " ".join(stripped)


def unwrap_help(text: str) -> str:
    """A docstring's paragraphs, each joined into one line (see ``_unwrap_paragraph``)."""
    return "\n\n".join(_unwrap_paragraph(p) for p in inspect.cleandoc(text).split("\n\n"))


def unwrap_command_help(app: typer.Typer) -> None:
    """Give every command and group of ``app`` (recursively) help text without hard wraps.

    Typer keeps a docstring's single line breaks after the first paragraph, which
    breaks sentences in ``--help`` at the source's line length.
    """
    for command in app.registered_commands:
        source = command.help or (command.callback.__doc__ if command.callback else None)
        if source:
            command.help = unwrap_help(source)
    for group in app.registered_groups:
        if group.help:
            group.help = unwrap_help(str(group.help))
        if group.typer_instance is not None:
            info = group.typer_instance.info
            if isinstance(info.help, str):
                info.help = unwrap_help(info.help)
            unwrap_command_help(group.typer_instance)
