"""`settle balances` and `settle statement`: a party's positions through the signed API.

The server decides what the signing key may read: staff any party, an allocator its
own. ``--from`` / ``--to`` are passed as typed; the server checks the period (both
bounds, ``from`` before ``to``, at most 366 days) and refuses a bad one with a 4xx
problem (exit 1).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from settlement.cli.remote import (
    DEFAULT_URL,
    Column,
    JsonFlag,
    KeyIdOption,
    KeyOption,
    UrlOption,
    api_call,
    echo_json,
    echo_table,
    short_time,
    target,
)


def _asset(row: dict[str, Any]) -> str:
    asset = row["asset"]
    return asset["code"] if asset["issuer"] is None else f"{asset['code']}:{asset['issuer']}"


def _ledger(field: str) -> Any:
    def read(row: dict[str, Any]) -> object:
        side = row["ledger"]
        return side[field] if side["status"] == "ok" or side[field] else side["status"]

    return read


POSITION_COLUMNS: list[Column] = [
    ("CHAIN", lambda r: r["chain"]),
    ("ACCOUNT", lambda r: r["account"]),
    ("ASSET", _asset),
    ("HELD", _ledger("held")),
    ("LEDGER LOCKS", _ledger("locked")),
    ("LOCKED", lambda r: r["locked"]),
    ("COMMITTED", lambda r: r["committed"]),
    ("AVAILABLE", lambda r: r["available"]),
    ("BREAKS", lambda r: "; ".join(r["breaks"]) or None),
]
TOTAL_COLUMNS: list[Column] = [
    ("CCY", lambda r: r["currency"]),
    ("HELD", lambda r: r["held"]),
    ("LOCKED", lambda r: r["locked"]),
    ("COMMITTED", lambda r: r["committed"]),
    ("OF WHICH UNINSTRUCTED", lambda r: r["uninstructed"]),
    ("AVAILABLE", lambda r: r["available"]),
]
LINE_COLUMNS: list[Column] = [
    ("SETTLED", lambda r: short_time(r["settled_at"])),
    ("CHAIN", lambda r: r["chain"]),
    ("ASSET", _asset),
    ("AMOUNT", lambda r: r["signed_amount"]),
    ("KIND", lambda r: r["kind"]),
    ("SETTLEMENT", lambda r: f"{r['settlement_id']}#{r['leg_no']}"),
    (
        "TRANSACTIONS",
        lambda r: " ".join(f"{t['purpose']}:{t['tx_hash']}" for t in r["transactions"]),
    ),
]
MOVEMENT_COLUMNS: list[Column] = [
    ("CHAIN", lambda r: r["chain"]),
    ("ASSET", _asset),
    ("OPENING", lambda r: r["opening"]),
    ("CREDITS", lambda r: r["credits"]),
    ("DEBITS", lambda r: r["debits"]),
    ("CLOSING", lambda r: r["closing"]),
]


def balances(
    party: Annotated[str, typer.Argument(help="The party, e.g. party-northwind.")],
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A party's balances: per ledger account and asset what the ledger holds, what its
    open settlements lock and commit, what is available, and any break. A ledger that
    cannot be asked shows as unavailable, not as zero."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        found = client.balances(party)
    if as_json:
        echo_json(found)
        return
    complete = "" if found["complete"] else " (a ledger did not answer: figures incomplete)"
    typer.echo(f"{found['party']} at {short_time(found['as_of'])}{complete}")
    echo_table(found["positions"], POSITION_COLUMNS, "no registered ledger accounts")
    typer.echo("")
    echo_table(found["totals"], TOTAL_COLUMNS, "no currencies")
    if found["breaks"]:
        typer.echo(f"{found['breaks']} break(s): the ledger disagrees with the engine's records")


def statement(
    party: Annotated[str, typer.Argument(help="The party, e.g. party-northwind.")],
    *,
    since: Annotated[
        str, typer.Option("--from", help="Start, inclusive: ISO-8601 time with zone, or date.")
    ],
    until: Annotated[str, typer.Option("--to", help="End, exclusive, as --from.")],
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the CSV the API serves.")] = False,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A party's statement: each settled leg of the period with its transactions, and
    per asset the opening and closing positions in the engine's books."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        if as_csv:
            typer.echo(client.statement_csv(party, since=since, until=until), nl=False)
            return
        found = client.statement(party, since=since, until=until)
    if as_json:
        echo_json(found)
        return
    typer.echo(f"{found['party']}: {found['from']} to {found['to']}")
    echo_table(found["lines"], LINE_COLUMNS, "no settled legs in the period")
    typer.echo("")
    echo_table(found["assets"], MOVEMENT_COLUMNS, "no positions")
