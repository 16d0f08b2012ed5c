"""What the API-backed commands share: where the server is, which key signs, how a
refusal is shown, and plain aligned tables.

Every command that acts on the engine (``settle commitments``, ``settle review``,
``settle audit``) talks to a running server through ``SettlementClient``; the server
authorises by the key that signs, so these commands take no role or identity options.

Options (each also read from the environment):

- ``--url`` (``SETTLEMENT_API_URL``, default ``http://127.0.0.1:8000``);
- ``--key`` (``SETTLEMENT_API_KEY``): the private key file ``settle keys new`` wrote;
- ``--key-id`` (``SETTLEMENT_API_KEY_ID``): the key's id. The key file holds only the
  PEM private key, so the id defaults to the file's name without ``.pem``, which is how
  ``settle keys new`` names it (``KEYID.pem``) unless told ``--out``.

Exit codes (``EXIT_CODES_HELP``): 0 done; 1 the API refused the request (a 4xx
problem) or a check failed; 2 a usage error (bad option, missing or unreadable key
file); 3 the server could not be reached or failed (5xx).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from settlement.cli.common import fail
from settlement.client import ApiError, SettlementClient
from settlement.clock import SystemClock

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 the API refused the request (4xx) or a check failed; "
    "2 usage error (bad option, missing key file); 3 server unreachable or failing (5xx)."
)
#: retries of a connection error before the command gives up (the client backs off)
CLI_RETRIES = 2

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="SETTLEMENT_API_URL", help="Base URL of the settlement API."),
]
KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key",
        envvar="SETTLEMENT_API_KEY",
        help="Private key file written by `settle keys new` (signs every request).",
    ),
]
KeyIdOption = Annotated[
    str | None,
    typer.Option(
        "--key-id",
        envvar="SETTLEMENT_API_KEY_ID",
        help="Key id (default: the key file's name without .pem, as `settle keys new` names it).",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@dataclass(frozen=True)
class ApiTarget:
    """Which server to call and which key signs."""

    url: str
    key: Path | None
    key_id: str | None = None

    def resolved_key_id(self) -> str:
        if self.key_id:
            return self.key_id
        assert self.key is not None
        return self.key.name.removesuffix(".pem")


def target(url: str, key: Path | None, key_id: str | None) -> ApiTarget:
    return ApiTarget(url=url, key=key, key_id=key_id)


def connect(api: ApiTarget) -> SettlementClient:
    """A client signing with the key file; exit 2 when there is no usable key."""
    if api.key is None:
        raise fail("no key: pass --key FILE (or set SETTLEMENT_API_KEY)", EXIT_USAGE)
    try:
        pem = api.key.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read the key file {api.key}: {exc.strerror}", EXIT_USAGE) from exc
    try:
        return SettlementClient(api.url, api.resolved_key_id(), pem, retries=CLI_RETRIES)
    except (ValueError, TypeError) as exc:
        raise fail(f"{api.key} is not an Ed25519 private key: {exc}", EXIT_USAGE) from exc


def problem_line(error: ApiError) -> str:
    """One line naming the refusal: status, problem type and detail."""
    kind = error.problem.get("type") or f"http {error.status}"
    detail = error.problem.get("detail") or error.problem.get("title") or ""
    return f"{error.status} {kind}: {detail}"


@contextmanager
def api_call(api: ApiTarget, *, as_json: bool = False) -> Iterator[SettlementClient]:
    """A client whose failures end the command: a 4xx problem exits 1, a 5xx or an
    unreachable server exits 3, each with one line on standard error (and, with
    ``--json``, the problem body on standard output for scripts)."""
    client = connect(api)
    try:
        yield client
    except ApiError as exc:
        if as_json:
            typer.echo(json.dumps(exc.problem, indent=2))
        code = EXIT_UNAVAILABLE if exc.status >= 500 else EXIT_REFUSED
        raise fail(problem_line(exc), code) from exc
    except httpx.TransportError as exc:
        raise fail(
            f"cannot reach the API at {api.url}: {type(exc).__name__}: {exc}", EXIT_UNAVAILABLE
        ) from exc
    finally:
        client.close()


# -- parsing options ---------------------------------------------------------------------


def amount_text(value: str, option: str = "--amount") -> str:
    """A positive decimal string, as typed (never through float); exit 2 otherwise."""
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise fail(f"{option}: {value!r} is not a decimal number", EXIT_USAGE) from exc
    if not amount.is_finite() or amount <= 0:
        raise fail(f"{option}: must be a positive amount, not {value}", EXIT_USAGE)
    return value


_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def when(value: str, option: str) -> datetime:
    """An aware ISO-8601 time, or ``+N{s,m,h,d}`` from now; exit 2 otherwise."""
    if value.startswith("+") and value[-1:] in _UNITS_S and value[1:-1].isdigit():
        return SystemClock().now() + timedelta(seconds=int(value[1:-1]) * _UNITS_S[value[-1]])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise fail(
            f"{option}: {value!r} is neither an ISO-8601 time nor +N[s|m|h|d]", EXIT_USAGE
        ) from exc
    if parsed.tzinfo is None:
        raise fail(f"{option}: give a time zone (e.g. {value}Z or {value}+00:00)", EXIT_USAGE)
    return parsed


# -- output ------------------------------------------------------------------------------


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


Column = tuple[str, Callable[[dict[str, Any]], object]]


def col(name: str) -> Callable[[dict[str, Any]], object]:
    return lambda row: row.get(name)


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def short_time(value: object) -> str:
    """An ISO time from the API as ``YYYY-MM-DD HH:MM:SS`` (UTC offset dropped)."""
    if not isinstance(value, str):
        return cell(value)
    return value.replace("T", " ")[:19]


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> list[str]:
    """Rows as plain text lines: a header, then one aligned line per row. The last
    column is not padded, so long values (hashes, reasons) do not widen every line."""
    cells = [[cell(get(row)) for _, get in columns] for row in rows]
    widths = [
        max([len(header), *(len(line[n]) for line in cells)])
        for n, (header, _) in enumerate(columns)
    ]

    def line(values: Sequence[str]) -> str:
        padded = [v.ljust(w) for v, w in zip(values[:-1], widths[:-1], strict=True)]
        return "  ".join([*padded, values[-1]]).rstrip()

    return [line([header for header, _ in columns]), *(line(values) for values in cells)]


def echo_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], empty: str) -> None:
    if not rows:
        typer.echo(empty)
        return
    for text in table(rows, columns):
        typer.echo(text)


def echo_fields(pairs: Sequence[tuple[str, object]]) -> None:
    """``label: value`` lines, labels right-aligned."""
    width = max(len(label) for label, _ in pairs)
    for label, value in pairs:
        typer.echo(f"{label.rjust(width)}: {cell(value)}")
