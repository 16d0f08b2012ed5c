"""`settle commitments`: an allocator's (and an admin's) commitments through the API.

Every command signs its requests with ``--key`` and calls the server at ``--url``
(``settlement.cli.remote``); the server decides what the key may do. A transition sends
the version it expects: the one given with ``--expected-version``, or else the version
the command reads just before (so a change by someone else in between is refused, 409).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from settlement import strict_json
from settlement.cli.common import fail
from settlement.cli.remote import (
    DEFAULT_URL,
    EXIT_CODES_HELP,
    EXIT_USAGE,
    ApiTarget,
    Column,
    JsonFlag,
    KeyIdOption,
    KeyOption,
    UrlOption,
    amount_text,
    api_call,
    col,
    echo_fields,
    echo_json,
    echo_table,
    short_time,
    target,
    when,
)
from settlement.client import SettlementClient

commitments_app = typer.Typer(
    help="Commitments through the signed API. " + EXIT_CODES_HELP, no_args_is_help=True
)

ExpectedVersion = Annotated[
    int | None,
    typer.Option("--expected-version", min=1, help="The version you read (default: read it now)."),
]

COMMITMENT_COLUMNS: list[Column] = [
    ("ID", col("id")),
    ("STATE", col("state")),
    ("V", col("version")),
    ("AMOUNT", col("amount")),
    ("CCY", col("currency")),
    ("PARTY", col("owner_party")),
    ("DEAL", col("deal_ref")),
    ("CREATED", lambda r: short_time(r.get("created_at"))),
]


def version_to_send(client: SettlementClient, commitment_id: UUID, given: int | None) -> int:
    """``given``, or the commitment's current version read through the API."""
    if given is not None:
        return given
    version = client.get_commitment(commitment_id)["version"]
    assert isinstance(version, int)
    return version


def echo_transition(result: dict[str, Any], as_json: bool) -> None:
    """What a create or an event did; an approval short of four eyes says so."""
    if as_json:
        echo_json(result)
        return
    cid, to_state = result["commitment_id"], result["to_state"]
    if result["event"] == "approve" and result["from_state"] == to_state:
        typer.echo(
            f"{cid}: approval recorded (audit #{result['audit_seq']}); it stays {to_state} "
            "until another officer approves"
        )
        return
    typer.echo(
        f"{cid}: {result['from_state'] or '(new)'} -> {to_state} "
        f"(v{result['version']}, {result['event']}, audit #{result['audit_seq']})"
    )


@commitments_app.command("create")
def create(
    *,
    deal_ref: Annotated[str, typer.Option("--deal-ref", help="The deal's reference.")],
    amount: Annotated[str, typer.Option("--amount", help="Decimal amount, e.g. 2500000.00.")],
    currency: Annotated[str, typer.Option("--currency", help="Currency or asset code.")],
    counterparty: Annotated[
        str | None, typer.Option("--counterparty", help="KYC party id of the other side.")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option("--expires-at", help="ISO-8601 time with zone, or +N[s|m|h|d].")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a DRAFT commitment for the key's party (allocators)."""
    amount = amount_text(amount)
    expiry = when(expires_at, "--expires-at") if expires_at else None
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        result = client.create_commitment(
            deal_ref=deal_ref,
            amount=amount,
            currency=currency,
            counterparty=counterparty,
            expires_at=expiry,
        )
    echo_transition(result, as_json)


@commitments_app.command("show")
def show(
    commitment_id: UUID,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """One commitment: terms, state and version."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        record = client.get_commitment(commitment_id)
    if as_json:
        echo_json(record)
        return
    echo_fields(
        [
            ("commitment", record["id"]),
            ("state", f"{record['state']} (v{record['version']}, last {record['last_event']})"),
            ("amount", f"{record['amount']} {record['currency']}"),
            ("deal", record["deal_ref"]),
            ("party", record["owner_party"]),
            ("created", f"{short_time(record['created_at'])} by {record['created_by']}"),
            ("submitted by", record["submitted_by"]),
            ("updated", short_time(record["updated_at"])),
            ("expires", short_time(record["expires_at"])),
        ]
    )


def list_pages(
    client: SettlementClient, filters: dict[str, Any], *, every: bool
) -> tuple[list[dict[str, Any]], str | None]:
    """The commitments of one page, or of every page when ``every`` (following
    ``next_cursor`` until the API returns none); and the cursor of what is left."""
    items: list[dict[str, Any]] = []
    while True:
        page = client.list_commitments(**filters)
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not every or cursor is None:
            return items, cursor
        filters = {**filters, "cursor": cursor}


@commitments_app.command("list")
def list_commitments(
    *,
    state: Annotated[str | None, typer.Option("--state", help="e.g. PENDING_REVIEW.")] = None,
    party: Annotated[
        str | None, typer.Option("--party", help="Owning party (allocators: their own).")
    ] = None,
    deal_ref: Annotated[str | None, typer.Option("--deal-ref")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Per page.")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue after a previous page.")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Follow the cursor to the end.")] = False,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Commitments oldest first, a page at a time (an allocator sees its own party's)."""
    filters: dict[str, Any] = {
        "state": state.upper() if state else None,
        "party": party,
        "deal_ref": deal_ref,
        "limit": limit,
        "cursor": cursor,
    }
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        items, next_cursor = list_pages(client, filters, every=every)
    if as_json:
        echo_json({"items": items, "next_cursor": next_cursor})
        return
    echo_table(items, COMMITMENT_COLUMNS, "no commitments")
    if next_cursor is not None:
        typer.echo(f"more: --cursor {next_cursor} (or --all)", err=True)


@commitments_app.command("submit")
def submit(
    commitment_id: UUID,
    *,
    expected_version: ExpectedVersion = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """DRAFT -> PENDING_REVIEW; the commitment is screened."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        version = version_to_send(client, commitment_id, expected_version)
        result = client.submit(commitment_id, expected_version=version)
    echo_transition(result, as_json)


@commitments_app.command("withdraw")
def withdraw(
    commitment_id: UUID,
    *,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    expected_version: ExpectedVersion = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """DRAFT or VERIFIED -> CANCELLED."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        version = version_to_send(client, commitment_id, expected_version)
        result = client.withdraw(commitment_id, expected_version=version, reason=reason)
    echo_transition(result, as_json)


# -- settlement ----------------------------------------------------------------------------


def legs_from(path: Path) -> list[Mapping[str, Any]]:
    """The legs in a JSON file: a list of legs, or an object with ``legs``. Amounts
    must be decimal strings; exit 2 when the file is not that."""
    try:
        # parse_float: a JSON number never becomes a float here; it is refused below
        # and a key given twice is refused, not read as its last value
        data = strict_json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except OSError as exc:
        raise fail(f"--legs: cannot read {path}: {exc.strerror}", EXIT_USAGE) from exc
    except ValueError as exc:
        raise fail(f"--legs: {path} is not JSON: {exc}", EXIT_USAGE) from exc
    legs = data.get("legs") if isinstance(data, dict) else data
    if not isinstance(legs, list) or not all(isinstance(leg, dict) for leg in legs):
        raise fail(f"--legs: {path} must hold a list of legs (or {{'legs': [...]}})", EXIT_USAGE)
    for n, leg in enumerate(legs):
        if not isinstance(leg.get("amount"), str):
            raise fail(f"--legs: leg {n}: amount must be a decimal string", EXIT_USAGE)
    return legs


LEG_COLUMNS: list[Column] = [
    ("LEG", col("leg_no")),
    ("KIND", col("kind")),
    ("CHAIN", col("chain")),
    ("AMOUNT", col("amount")),
    ("ASSET", lambda r: r["asset"]["code"]),
    ("STATUS", col("status")),
    ("SENDER", col("sender")),
    ("RECEIVER", col("receiver")),
]
SUBMISSION_COLUMNS: list[Column] = [
    ("LEG", col("leg_no")),
    ("PURPOSE", col("purpose")),
    ("CHAIN", col("chain")),
    ("STATUS", col("status")),
    ("OUTCOME", col("outcome")),
    ("LEDGER", col("ledger_index")),
    ("LEDGER HASH", col("ledger_hash")),
    ("TX HASH", col("tx_hash")),
]


def echo_settlement(settlement: dict[str, Any]) -> None:
    decision = settlement["decision"] or "not decided"
    if settlement["decision_reason"]:
        decision += f" ({settlement['decision_reason']})"
    echo_fields(
        [
            ("settlement", settlement["id"]),
            ("commitment", settlement["commitment_id"]),
            ("status", settlement["status"]),
            ("decision", decision),
            ("settle not before", short_time(settlement["settle_not_before"])),
            ("commit deadline", short_time(settlement["commit_deadline"])),
            ("cancel after", short_time(settlement["cancel_after"])),
            ("needs review", settlement["needs_review"]),
        ]
    )
    if settlement["needs_review"]:
        typer.echo(f"  review: {settlement['review_reason']}")
    if settlement["cancel_requested_by"]:
        typer.echo(
            f"  cancel requested by {settlement['cancel_requested_by']}: "
            f"{settlement['cancel_reason']}"
        )
    typer.echo("")
    echo_table(settlement.get("legs", []), LEG_COLUMNS, "no legs")
    typer.echo("")
    echo_table(settlement.get("submissions", []), SUBMISSION_COLUMNS, "nothing submitted yet")


@commitments_app.command("fund")
def fund(
    commitment_id: UUID,
    *,
    legs: Annotated[
        Path,
        typer.Option(
            "--legs",
            help='JSON file: [{"kind": "principal"|"fee", "chain": "xrpl"|"stellar", '
            '"asset": {"code", "issuer"}, "amount": "decimal string", "sender", "receiver"}].',
        ),
    ],
    commit_deadline: Annotated[
        str,
        typer.Option("--commit-deadline", help="ISO-8601 time with zone, or +N[s|m|h|d]."),
    ],
    settle_not_before: Annotated[
        str | None,
        typer.Option("--settle-not-before", help="Settlement date: lock now, commit from then."),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Instruct the settlement of a VERIFIED commitment (allocator or admin).

    Workers then lock and settle the legs, all or none.
    """
    instruction = legs_from(legs)
    deadline = when(commit_deadline, "--commit-deadline")
    not_before = when(settle_not_before, "--settle-not-before") if settle_not_before else None
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        settlement = client.start_settlement(
            commitment_id,
            legs=instruction,
            commit_deadline=deadline,
            settle_not_before=not_before,
        )
    if as_json:
        echo_json(settlement)
        return
    typer.echo(f"settlement {settlement['id']} instructed; a worker settles it")
    echo_settlement(settlement)


@commitments_app.command("settlement")
def settlement(
    commitment_id: UUID,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The commitment's latest settlement: legs and ledger submissions.

    Each submission with its transaction hash, ledger index and ledger hash.
    """
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        found = client.get_settlement(commitment_id)
    if as_json:
        echo_json(found)
        return
    echo_settlement(found)


@commitments_app.command("force-cancel")
def force_cancel(
    settlement_id: UUID,
    *,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")],
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Ask for a settlement that has not decided COMMIT to be unwound (admin)."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        found = client.force_cancel(settlement_id, reason=reason)
    if as_json:
        echo_json(found)
        return
    typer.echo(f"settlement {settlement_id}: cancel requested; a worker unwinds it")
    echo_settlement(found)


# -- audit ---------------------------------------------------------------------------------

AUDIT_COLUMNS: list[Column] = [
    ("SEQ", col("seq")),
    ("RECORDED", lambda r: short_time(r.get("recorded_at"))),
    ("ACTION", col("action")),
    ("FROM", col("from_state")),
    ("TO", col("to_state")),
    ("ACTOR", col("actor")),
    ("LEDGER", lambda r: f"{r['chain']} {r['ledger_index']}" if r.get("chain") else None),
    ("PREV", lambda r: (r.get("prev_hash") or "")[:12] or None),
    ("HASH", lambda r: str(r["entry_hash"])[:12]),
    ("TX HASH", col("tx_hash")),
]


def show_audit(api: ApiTarget, commitment_id: UUID, as_json: bool) -> None:
    """Print a commitment's audit entries read through the API."""
    with api_call(api, as_json=as_json) as client:
        entries = client.audit_trail(commitment_id)
    if as_json:
        echo_json(entries)
        return
    echo_table(entries, AUDIT_COLUMNS, f"no audit entries for {commitment_id}")


@commitments_app.command("audit")
def audit(
    commitment_id: UUID,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The commitment's audit chain, oldest entry first (same as `settle audit show`)."""
    show_audit(target(url, key, key_id), commitment_id, as_json)
