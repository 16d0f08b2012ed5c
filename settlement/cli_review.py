"""`settle officers|kyc|sanctions|review`: the compliance desk from a terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from settlement import bootstrap
from settlement.cli_common import AsKey, JsonFlag, RoleOption, actor_from, echo_json, run
from settlement.domain import Role

review_app = typer.Typer(help="The compliance review queue.", no_args_is_help=True)
sanctions_app = typer.Typer(help="Sanctions lists screening uses.", no_args_is_help=True)
kyc_app = typer.Typer(help="KYC records of parties.", no_args_is_help=True)
officers_app = typer.Typer(help="The compliance officer registry.", no_args_is_help=True)


# -- officers -------------------------------------------------------------------------


@officers_app.command("add")
def officers_add(
    officer_id: Annotated[str, typer.Argument(help="The officer's key id.")],
    *,
    name: Annotated[str, typer.Option("--name", help="Display name.")],
    as_key: AsKey,
    senior: Annotated[bool, typer.Option(help="May override hard fails.")] = False,
    active: Annotated[bool, typer.Option(help="--no-active withdraws the officer.")] = True,
    role: RoleOption = Role.ADMIN.value,
) -> None:
    """Register an officer, or change one (admin only)."""
    actor = actor_from(as_key, role)
    officer = run(
        lambda e: e.compliance.register_officer(
            actor, officer_id, display_name=name, senior=senior, active=active
        )
    )
    typer.echo(
        f"officer {officer.officer_id} v{officer.version}: senior={officer.senior} "
        f"active={officer.active}"
    )


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

    def query(e: bootstrap.Engine) -> tuple[Any, Any]:
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


# -- review -----------------------------------------------------------------------------


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 1440}d{minutes // 60 % 24:02d}h{minutes % 60:02d}m"


@review_app.command("list")
def review_list(as_json: JsonFlag = False) -> None:
    """Commitments under review, oldest first, with screening outcome and approvals."""

    def query(e: bootstrap.Engine) -> tuple[Any, Any]:
        return e.compliance.review_queue(), e.clock.now()

    items, now = run(query)
    if as_json:
        echo_json(
            [{**i.__dict__, "age_s": int((now - i.submitted_at).total_seconds())} for i in items]
        )
        return
    if not items:
        typer.echo("the review queue is empty")
    for i in items:
        typer.echo(
            f"{i.commitment_id}  {_age((now - i.submitted_at).total_seconds()):>10}  "
            f"{i.outcome.upper():<9}  {i.amount:>24} {i.currency:<4} {i.owner_party} -> "
            f"{i.counterparty or '(none)'}  approvals {i.approvals}/{i.approvals_required}"
        )


@review_app.command("show")
def review_show(commitment_id: UUID, as_json: JsonFlag = False) -> None:
    """One commitment: terms, screening results, approvals, who decided what."""
    detail = run(lambda e: e.compliance.review_detail(commitment_id))
    c = detail.commitment
    if as_json:
        echo_json(
            {
                "commitment": c.__dict__,
                "counterparty": detail.counterparty,
                "under_review_since": detail.under_review_since,
                "age_s": int(detail.age.total_seconds()) if detail.age else None,
                "screenings": [
                    {
                        "review_version": s.review_version,
                        "screened_at": s.screened_at,
                        **s.screening.as_payload(),
                    }
                    for s in detail.screenings
                ],
                "approvals": [a.__dict__ for a in detail.approvals],
                "history": [h.__dict__ for h in detail.history],
            }
        )
        return
    typer.echo(f"commitment {c.id}  {c.state} v{c.version}")
    typer.echo(f"  {c.amount} {c.currency}  deal {c.deal_ref}")
    typer.echo(f"  allocator {c.owner_party}  counterparty {detail.counterparty or '(none)'}")
    if detail.age is not None:
        typer.echo(f"  under review for {_age(detail.age.total_seconds())}")
    for stored in detail.screenings:
        s = stored.screening
        current = " (current round)" if stored is detail.current_screening else ""
        typer.echo(
            f"\nScreening of round v{stored.review_version}{current}: {s.outcome.upper()}, "
            f"{s.approvals_required} approval(s) required, lists {list(s.list_versions)}"
        )
        for f in s.findings:
            where = f" [list {f.list_name} v{f.list_version} entry {f.entry_id} score {f.score}]"
            typer.echo(
                f"  {f.severity.upper():<9} {f.rule:<12} {f.detail}{where if f.entry_id else ''}"
            )
    if detail.approvals:
        typer.echo("\nApprovals")
        for a in detail.approvals:
            override = f'  override: "{a.override_reason}"' if a.override_reason else ""
            senior = " (senior)" if a.senior else ""
            typer.echo(
                f"  round v{a.review_version}  {a.approved_at:%Y-%m-%d %H:%M:%S}  "
                f"{a.officer_id}{senior}{override}"
            )
    typer.echo("\nHistory")
    for h in detail.history:
        reason = f'  "{h.reason}"' if h.reason else ""
        typer.echo(
            f"  v{h.version} {h.at:%Y-%m-%d %H:%M:%S} {h.event:<13} "
            f"{h.from_state or '(new)':>14} -> {h.to_state:<14} by {h.actor}{reason}"
        )


def _decide(
    commitment_id: UUID,
    event: str,
    as_key: str,
    role: str,
    *,
    reason: str | None = None,
    override_reason: str | None = None,
    expected_version: int | None = None,
) -> None:
    actor = actor_from(as_key, role)
    result = run(
        lambda e: e.commitments.apply(
            actor,
            commitment_id,
            event,
            reason=reason,
            override_reason=override_reason,
            expected_version=expected_version,
        )
    )
    if result.to_state == result.from_state:
        typer.echo(
            f"approval by {actor.id} recorded; commitment {commitment_id} stays "
            f"{result.to_state} until another officer approves"
        )
    else:
        typer.echo(f"{commitment_id}: {result.from_state} -> {result.to_state} (v{result.version})")


ExpectedVersion = Annotated[
    int | None, typer.Option("--expected-version", help="The version you reviewed.")
]


@review_app.command("approve")
def review_approve(
    commitment_id: UUID,
    as_key: AsKey,
    override_reason: Annotated[
        str | None, typer.Option("--override-reason", help="Senior officers: override a hard fail.")
    ] = None,
    expected_version: ExpectedVersion = None,
    role: RoleOption = Role.COMPLIANCE_OFFICER.value,
) -> None:
    """Approve (the second distinct approval above the four-eyes threshold verifies)."""
    _decide(
        commitment_id,
        "approve",
        as_key,
        role,
        override_reason=override_reason,
        expected_version=expected_version,
    )


@review_app.command("reject")
def review_reject(
    commitment_id: UUID,
    reason: Annotated[str, typer.Option("--reason")],
    as_key: AsKey,
    expected_version: ExpectedVersion = None,
    role: RoleOption = Role.COMPLIANCE_OFFICER.value,
) -> None:
    """Reject: the commitment is cancelled (reason required)."""
    _decide(commitment_id, "reject", as_key, role, reason=reason, expected_version=expected_version)


@review_app.command("request-info")
def review_request_info(
    commitment_id: UUID,
    reason: Annotated[str, typer.Option("--reason")],
    as_key: AsKey,
    expected_version: ExpectedVersion = None,
    role: RoleOption = Role.COMPLIANCE_OFFICER.value,
) -> None:
    """Send back to the allocator as DRAFT (reason required); a re-submit starts a new round."""
    _decide(
        commitment_id,
        "request_info",
        as_key,
        role,
        reason=reason,
        expected_version=expected_version,
    )


# -- settlements needing a person ----------------------------------------------------


@review_app.command("settlements")
def review_settlements(as_json: JsonFlag = False) -> None:
    """Settlements flagged for manual review, oldest first."""
    rows = run(lambda engine: engine.settlements.flagged())
    if as_json:
        echo_json(
            [
                {
                    "settlement_id": str(s.id),
                    "commitment_id": str(s.commitment_id),
                    "status": s.status,
                    "decision": s.decision,
                    "reason": s.review_reason,
                    "since": s.updated_at.isoformat(),
                }
                for s in rows
            ]
        )
        return
    if not rows:
        typer.echo("no settlement needs review")
        return
    for s in rows:
        typer.echo(
            f"{s.id}  {s.status:<10} decision {s.decision or '-':<6} "
            f"commitment {s.commitment_id}\n    {s.review_reason}"
        )


@review_app.command("retry")
def review_retry(
    settlement_id: UUID,
    note: Annotated[str, typer.Option("--note", help="What was fixed.")],
    as_key: AsKey,
) -> None:
    """Clear a settlement's flag and give its legs fresh attempts (admin)."""
    actor = actor_from(as_key, Role.ADMIN.value)
    run(lambda engine: engine.settlements.retry(actor, settlement_id, note))
    typer.echo(f"settlement {settlement_id}: retrying")


@review_app.command("resolve")
def review_resolve(
    settlement_id: UUID,
    note: Annotated[str, typer.Option("--note", help="How it was handled.")],
    as_key: AsKey,
) -> None:
    """Clear a settlement's flag: it was handled outside the engine (admin)."""
    actor = actor_from(as_key, Role.ADMIN.value)
    run(lambda engine: engine.settlements.resolve(actor, settlement_id, note))
    typer.echo(f"settlement {settlement_id}: resolved")
