"""`settle`: the operator's command line. Commands parse, call the engine, and print.

Commands that check something exit non-zero when the check fails, and take ``--json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer

from ledger import embedded, migrate
from ledger.errors import LedgerError
from settlement import bootstrap
from settlement.domain import Actor, Role
from settlement.errors import InvalidInput, SettlementError
from settlement.settings import Settings, SettingsError, load_settings

T = TypeVar("T")

app = typer.Typer(help="Multi-leg settlement engine.", no_args_is_help=True)
db_app = typer.Typer(help="The database: embedded server and migrations.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
review_app = typer.Typer(help="The compliance review queue.", no_args_is_help=True)
sanctions_app = typer.Typer(help="Sanctions lists screening uses.", no_args_is_help=True)
kyc_app = typer.Typer(help="KYC records of parties.", no_args_is_help=True)
officers_app = typer.Typer(help="The compliance officer registry.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(review_app, name="review")
app.add_typer(sanctions_app, name="sanctions")
app.add_typer(kyc_app, name="kyc")
app.add_typer(officers_app, name="officers")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
# Until the signed API exists the CLI acts through the service with the identity given here.
AsKey = Annotated[str, typer.Option("--as", help="Key id of the acting person.")]
RoleOption = Annotated[str, typer.Option("--role", help="Role of the acting key.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise _fail(str(exc), 2) from exc


@db_app.command("up")
def db_up() -> None:
    """Start the embedded PostgreSQL (or reuse it) and print its owner URL."""
    settings = _settings()
    if not settings.uses_embedded_database:
        typer.echo(f"using the configured server; nothing to start: {settings.database_url}")
        return
    try:
        urls = bootstrap.database_urls(settings)
    except LedgerError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(urls.owner)


@db_app.command("down")
def db_down() -> None:
    """Stop the embedded PostgreSQL."""
    settings = _settings()
    if not settings.uses_embedded_database:
        raise _fail("SETTLEMENT_DATABASE_URL names an external server; it is not ours to stop")
    try:
        stopped = embedded.stop(settings.data_dir)
    except LedgerError as exc:
        raise _fail(str(exc)) from exc
    typer.echo("stopped" if stopped else "not running")


@db_app.command("migrate")
def db_migrate(
    revision: Annotated[str, typer.Option(help="Target revision; 'head' or e.g. '0001'.")] = "head",
    downgrade: Annotated[bool, typer.Option(help="Move down to REVISION (e.g. 'base').")] = False,
) -> None:
    """Apply the migrations as the owner role (starting the embedded server if needed)."""
    settings = _settings()
    try:
        urls = bootstrap.database_urls(settings)
        if downgrade:
            reached = migrate.downgrade(urls.owner, revision)
        elif revision == "head":
            reached = bootstrap.migrate_database(settings, urls)
        else:
            reached = migrate.upgrade(urls.owner, revision)
    except LedgerError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"database at revision {reached}")


@audit_app.command("verify")
def audit_verify(as_json: JsonFlag = False) -> None:
    """Recompute every audit chain; exit 1 and name the first broken entry if any."""
    engine = _engine()
    try:
        report = engine.commitments.verify_audit()
    except SettlementError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.close()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    elif report.ok:
        typer.echo(f"ok: {report.chains} chains, {report.entries} entries verified")
    else:
        typer.echo(f"BROKEN: {len(report.breaks)} of {report.chains} chains")
        for problem in report.breaks:
            typer.echo(f"  {problem}")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def demo() -> None:
    """Set up the embedded database and walk two commitments through the machine."""
    from settlement import demo as demo_module

    settings = _settings()
    try:
        urls = bootstrap.database_urls(settings)
        bootstrap.migrate_database(settings, urls)
        engine = bootstrap.build(settings, urls=urls)
    except LedgerError as exc:
        raise _fail(str(exc)) from exc
    try:
        ok = demo_module.run(engine)
    finally:
        engine.close()
    if not ok:
        raise typer.Exit(1)


def _engine() -> bootstrap.Engine:
    settings = _settings()
    bootstrap.configure_logging(settings)
    try:
        return bootstrap.build(settings)
    except SettingsError as exc:
        raise _fail(str(exc), 2) from exc
    except LedgerError as exc:
        raise _fail(str(exc)) from exc


@contextmanager
def _engine_for_command() -> Iterator[bootstrap.Engine]:
    """An engine whose ``SettlementError``s end the command with exit 1 and the message."""
    engine = _engine()
    try:
        yield engine
    except SettlementError as exc:
        raise _fail(f"{exc} [{exc.code}]") from exc
    finally:
        engine.close()


def _actor(key: str, role: str, party: str | None = None) -> Actor:
    try:
        return Actor(key, Role(role), party)
    except ValueError as exc:
        roles = ", ".join(r.value for r in Role)
        message = str(exc) if isinstance(exc, InvalidInput) else f"role must be one of {roles}"
        raise _fail(message, 2) from exc


def _run(call: Callable[[bootstrap.Engine], T]) -> T:
    with _engine_for_command() as engine:
        return call(engine)


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


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
    actor = _actor(as_key, role)
    officer = _run(
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
    officers = _run(lambda e: e.compliance.officers())
    if as_json:
        _echo_json([o.__dict__ for o in officers])
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
    actor = _actor(as_key, role)
    record = _run(
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
    actor = _actor(as_key, role)
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
    record = _run(
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

    record, entries = _run(query)
    data = {**record.as_payload(), "version": record.version}
    if as_json:
        _echo_json({"record": data, "changes": [e.__dict__ for e in entries]})
        return
    for key, value in data.items():
        typer.echo(f"{key:>20}: {value}")
    for entry in entries:
        typer.echo(
            f"  #{entry.seq} {entry.recorded_at:%Y-%m-%d %H:%M:%S} {entry.action} by {entry.actor}"
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
    actor = _actor(as_key, role)
    result = _run(
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
    versions = _run(lambda e: e.compliance.sanctions_lists())
    if as_json:
        _echo_json([v.__dict__ for v in versions])
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

    items, now = _run(query)
    if as_json:
        _echo_json(
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
    detail = _run(lambda e: e.compliance.review_detail(commitment_id))
    c = detail.commitment
    if as_json:
        _echo_json(
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
    actor = _actor(as_key, role)
    result = _run(
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
