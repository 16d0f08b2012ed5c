"""`settle kyc|sanctions|review`: the compliance desk from a terminal.

``review`` talks to a running API server with a signed key (``settlement.cli.remote``;
the key decides who acts). ``kyc`` and ``sanctions`` are operator set-up
commands on the database directly, acting as the identity given with ``--as``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from settlement import bootstrap
from settlement.cli.commitments import echo_transition, version_to_send
from settlement.cli.common import AsKey, JsonFlag, RoleOption, actor_from, echo_json, run
from settlement.cli.remote import (
    DEFAULT_URL,
    EXIT_CODES_HELP,
    Column,
    KeyIdOption,
    KeyOption,
    UrlOption,
    api_call,
    col,
    echo_table,
    short_time,
    target,
)
from settlement.clock import SystemClock
from settlement.domain.values import Role

review_app = typer.Typer(
    help="The compliance review queue, through the signed API. " + EXIT_CODES_HELP,
    no_args_is_help=True,
)
sanctions_app = typer.Typer(help="Sanctions lists screening uses.", no_args_is_help=True)
kyc_app = typer.Typer(help="KYC records of parties.", no_args_is_help=True)


# -- KYC ------------------------------------------------------------------------------


@kyc_app.command("create")
def kyc_create(
    party: Annotated[str, typer.Argument(help="Party id.")],
    *,
    legal_name: Annotated[str, typer.Option("--legal-name")],
    jurisdiction: Annotated[str, typer.Option(help="ISO 3166 alpha-2 code.")],
    status: Annotated[str, typer.Option(help="pending | verified | rejected | expired")],
    as_key: AsKey,
    risk: Annotated[str, typer.Option(help="low | medium | high")] = "medium",
    accredited: Annotated[bool, typer.Option()] = False,
    expires: Annotated[str | None, typer.Option(help="Expiry date YYYY-MM-DD.")] = None,
    alias: Annotated[list[str] | None, typer.Option(help="Another name; repeatable.")] = None,
    lei: Annotated[str | None, typer.Option()] = None,
    registration: Annotated[str | None, typer.Option("--registration")] = None,
    role: RoleOption = Role.COMPLIANCE_OFFICER.value,
) -> None:
    """Create a party's KYC record (registered officers only)."""
    actor = actor_from(as_key, role)
    record = run(
        lambda e: e.compliance.create_kyc(
            actor,
            party=party,
            legal_name=legal_name,
            jurisdiction=jurisdiction,
            risk_rating=risk,
            accredited=accredited,
            status=status,
            expires_on=expires,
            aliases=alias or [],
            lei=lei,
            registration_number=registration,
        )
    )
    typer.echo(
        f"KYC {record.party} v{record.version}: {record.status}, expires {record.expires_on}"
    )


@kyc_app.command("update")
def kyc_update(
    party: Annotated[str, typer.Argument(help="Party id.")],
    *,
    expected_version: Annotated[int, typer.Option("--expected-version")],
    as_key: AsKey,
    status: Annotated[str | None, typer.Option()] = None,
    expires: Annotated[str | None, typer.Option(help="Expiry date YYYY-MM-DD.")] = None,
    risk: Annotated[str | None, typer.Option()] = None,
    jurisdiction: Annotated[str | None, typer.Option()] = None,
    role: RoleOption = Role.COMPLIANCE_OFFICER.value,
) -> None:
    """Change a party's KYC record read at --expected-version."""
    actor = actor_from(as_key, role)
    changes: dict[str, Any] = {
        k: v
        for k, v in (
            ("status", status),
            ("expires_on", expires),
            ("risk_rating", risk),
            ("jurisdiction", jurisdiction),
        )
        if v is not None
    }
    record = run(
        lambda e: e.compliance.update_kyc(
            actor, party, expected_version=expected_version, **changes
        )
    )
    typer.echo(
        f"KYC {record.party} v{record.version}: {record.status}, expires {record.expires_on}"
    )


@kyc_app.command("show")
def kyc_show(party: str, as_json: JsonFlag = False) -> None:
    """A party's KYC record and its change history."""

    def query(e: bootstrap.Services) -> tuple[Any, Any]:
        return e.compliance.get_kyc(party), e.compliance.audit_entries(
            subject_kind="kyc", subject=party
        )

    record, entries = run(query)
    data = {**record.as_payload(), "version": record.version}
    if as_json:
        echo_json({"record": data, "changes": [e.__dict__ for e in entries]})
        return
    for key, value in data.items():
        typer.echo(f"{key:>20}: {value}")
    for entry in entries:
        typer.echo(
            f"  #{entry.seq} {entry.recorded_at:%Y-%m-%d %H:%M:%S} {entry.action} by {entry.actor}"
        )


@kyc_app.command("account")
def kyc_account(
    party: str,
    chain: Annotated[str, typer.Argument(help="xrpl or stellar")],
    address: str,
    as_key: AsKey,
    role: RoleOption = Role.COMPLIANCE_OFFICER.value,
) -> None:
    """Register a ledger account to a party (an officer's act, audited); settlement legs
    may only use registered accounts of the commitment's parties."""
    actor = actor_from(as_key, role)
    account = run(lambda e: e.compliance.register_account(actor, party, chain, address))
    typer.echo(f"{account.chain} {account.address} registered to {account.party}")


@kyc_app.command("accounts")
def kyc_accounts(party: str, as_json: JsonFlag = False) -> None:
    """A party's registered ledger accounts."""
    accounts = run(lambda e: e.compliance.accounts_of(party))
    if as_json:
        echo_json([a.__dict__ for a in accounts])
        return
    for a in accounts:
        typer.echo(
            f"{a.chain:<8} {a.address}  registered by {a.registered_by} {a.registered_at:%Y-%m-%d}"
        )


# -- sanctions --------------------------------------------------------------------------


@sanctions_app.command("load")
def sanctions_load(
    file: Annotated[Path, typer.Argument(help="sdn.csv or targets.simple.csv")],
    *,
    as_key: AsKey,
    aliases: Annotated[Path | None, typer.Option(help="OFAC alt.csv beside sdn.csv.")] = None,
    list_name: Annotated[str | None, typer.Option("--list", help="List name.")] = None,
    list_format: Annotated[
        str | None, typer.Option("--format", help="ofac_sdn | opensanctions_simple")
    ] = None,
    role: RoleOption = Role.ADMIN.value,
) -> None:
    """Load or replace a sanctions list; on any error the list in force stays."""
    actor = actor_from(as_key, role)
    result = run(
        lambda e: e.compliance.load_sanctions(
            actor, file, list_name=list_name, list_format=list_format, aliases_file=aliases
        )
    )
    v = result.version
    what = "loaded" if result.loaded else "unchanged (same file already in force)"
    typer.echo(
        f"{v.list_name} version {v.version_id} {what}: {v.entry_count} entries, "
        f"sha256 {v.sha256[:16]}"
    )


@sanctions_app.command("list")
def sanctions_list(as_json: JsonFlag = False) -> None:
    """Every list version loaded; the newest of each name is in force."""
    versions = run(lambda e: e.compliance.sanctions_lists())
    if as_json:
        echo_json([v.__dict__ for v in versions])
        return
    latest = {v.list_name: v.version_id for v in versions}
    for v in versions:
        mark = "in force" if latest[v.list_name] == v.version_id else "replaced"
        typer.echo(
            f"{v.version_id:>5} {v.list_name:<16} {v.format:<22} {v.entry_count:>7} entries "
            f"{v.loaded_at:%Y-%m-%d %H:%M} by {v.loaded_by}  {mark}"
        )


# -- review (through the signed API) -----------------------------------------------------


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 1440}d{minutes // 60 % 24:02d}h{minutes % 60:02d}m"


def _age_of(since: str | None, now: datetime) -> str:
    if since is None:
        return "-"
    return _age((now - datetime.fromisoformat(since)).total_seconds())


QUEUE_COLUMNS: list[Column] = [
    ("COMMITMENT", col("commitment_id")),
    ("AGE", col("age")),
    ("SCREENING", lambda r: str(r["outcome"]).upper()),
    ("AMOUNT", col("amount")),
    ("CCY", col("currency")),
    ("PARTY", col("owner_party")),
    ("COUNTERPARTY", col("counterparty")),
    ("V", col("version")),
    ("APPROVALS", lambda r: f"{r['approvals']}/{r['approvals_required']}"),
]


@review_app.command("list")
def review_list(
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 100,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Commitments under review, oldest first, with screening outcome and approvals
    (compliance officers)."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        items = client.review_queue(limit=limit)
    if as_json:
        echo_json(items)
        return
    now = SystemClock().now()
    rows = [{**i, "age": _age_of(i["submitted_at"], now)} for i in items]
    echo_table(rows, QUEUE_COLUMNS, "the review queue is empty")


def _echo_detail(detail: dict[str, Any]) -> None:
    c = detail["commitment"]
    typer.echo(f"commitment {c['id']}  {c['state']} v{c['version']}")
    typer.echo(f"  {c['amount']} {c['currency']}  deal {c['deal_ref']}")
    typer.echo(f"  allocator {c['owner_party']}  counterparty {detail['counterparty'] or '(none)'}")
    if detail["under_review_since"] is not None:
        age = _age_of(detail["under_review_since"], SystemClock().now())
        typer.echo(f"  under review for {age}")
    current = max((s["review_version"] for s in detail["screenings"]), default=None)
    for stored in detail["screenings"]:
        s = stored["screening"]
        mark = " (current round)" if stored["review_version"] == current else ""
        typer.echo(
            f"\nScreening of round v{stored['review_version']}{mark}: "
            f"{str(s.get('outcome', '')).upper()}, {s.get('approvals_required')} approval(s) "
            f"required, lists {s.get('list_versions')}"
        )
        for f in s.get("findings", []):
            where = (
                f" [list {f.get('list_name')} v{f.get('list_version')} entry {f['entry_id']} "
                f"score {f.get('score')}]"
                if f.get("entry_id")
                else ""
            )
            typer.echo(f"  {str(f['severity']).upper():<9} {f['rule']:<12} {f['detail']}{where}")
    if detail["approvals"]:
        typer.echo("\nApprovals")
        for a in detail["approvals"]:
            why = a["override_reason"]
            override = f'  override: "{why}"' if why else ""
            senior = " (senior)" if a["senior"] else ""
            typer.echo(
                f"  round v{a['review_version']}  {short_time(a['approved_at'])}  "
                f"{a['officer_id']}{senior}{override}"
            )
    typer.echo("\nHistory")
    for h in detail["history"]:
        why = h["reason"]
        reason = f'  "{why}"' if why else ""
        typer.echo(
            f"  v{h['version']} {short_time(h['at'])} {h['event']:<13} "
            f"{h['from_state'] or '(new)':>14} -> {h['to_state']:<14} by {h['actor']}{reason}"
        )


@review_app.command("show")
def review_show(
    commitment_id: UUID,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """One commitment: terms, screening results, approvals, who decided what."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        detail = client.review_detail(commitment_id)
    if as_json:
        echo_json(detail)
        return
    _echo_detail(detail)


ExpectedVersion = Annotated[
    int | None,
    typer.Option(
        "--expected-version", min=1, help="The version you reviewed (default: read it now)."
    ),
]


@review_app.command("approve")
def review_approve(
    commitment_id: UUID,
    *,
    override_reason: Annotated[
        str | None, typer.Option("--override-reason", help="Senior officers: override a hard fail.")
    ] = None,
    expected_version: ExpectedVersion = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve (the second distinct approval above the four-eyes threshold verifies)."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        version = version_to_send(client, commitment_id, expected_version)
        result = client.approve(
            commitment_id, expected_version=version, override_reason=override_reason
        )
    echo_transition(result, as_json)


@review_app.command("reject")
def review_reject(
    commitment_id: UUID,
    *,
    reason: Annotated[str, typer.Option("--reason")],
    expected_version: ExpectedVersion = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Reject: the commitment is cancelled (reason required)."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        version = version_to_send(client, commitment_id, expected_version)
        result = client.reject(commitment_id, expected_version=version, reason=reason)
    echo_transition(result, as_json)


@review_app.command("request-info")
def review_request_info(
    commitment_id: UUID,
    *,
    reason: Annotated[str, typer.Option("--reason")],
    expected_version: ExpectedVersion = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Send back to the allocator as DRAFT (reason required); a re-submit starts a new round."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        version = version_to_send(client, commitment_id, expected_version)
        result = client.request_info(commitment_id, expected_version=version, reason=reason)
    echo_transition(result, as_json)


# -- settlements needing a person (admin, through the signed API) ------------------------

SETTLEMENT_COLUMNS: list[Column] = [
    ("SETTLEMENT", col("id")),
    ("STATUS", col("status")),
    ("DECISION", col("decision")),
    ("COMMITMENT", col("commitment_id")),
    ("SINCE", lambda r: short_time(r.get("updated_at"))),
    ("REASON", col("review_reason")),
]


@review_app.command("settlements")
def review_settlements(
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Settlements flagged for manual review (admins and auditors)."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        rows = client.settlements(needs_review=True)
    if as_json:
        echo_json(rows)
        return
    echo_table(rows, SETTLEMENT_COLUMNS, "no settlement needs review")


@review_app.command("retry")
def review_retry(
    settlement_id: UUID,
    *,
    note: Annotated[str, typer.Option("--note", help="What was fixed.")],
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Clear a settlement's flag and give its legs fresh attempts (admin)."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        found = client.retry_settlement(settlement_id, note=note)
    if as_json:
        echo_json(found)
        return
    typer.echo(f"settlement {settlement_id}: retrying ({found['status']})")


@review_app.command("resolve")
def review_resolve(
    settlement_id: UUID,
    *,
    note: Annotated[str, typer.Option("--note", help="How it was handled.")],
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Clear a settlement's flag: it was handled outside the engine (admin)."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        found = client.resolve_settlement(settlement_id, note=note)
    if as_json:
        echo_json(found)
        return
    typer.echo(f"settlement {settlement_id}: resolved ({found['status']})")
