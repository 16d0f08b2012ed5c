"""`settle`: the operator's command line. Commands parse, call the engine, and print.

Commands that check something exit non-zero when the check fails, and take ``--json``.
Command groups live beside this module: ``cli_review`` (officers, KYC, sanctions, the
review queue) and ``cli_nodes`` (the local ledger networks).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any
from uuid import UUID

import typer

from adapters.errors import AdapterError
from ledger import embedded, migrate
from ledger.errors import LedgerError
from settlement import bootstrap
from settlement.cli.anchors import (
    anchor_verify_of_api,
    audit_anchor,
    audit_proof,
    audit_verify_with_anchors,
    echo_anchor_verify,
)
from settlement.cli.commitments import commitments_app, show_audit
from settlement.cli.common import (
    JsonFlag,
    engine_or_exit,
    fail,
    settings_or_exit,
    unwrap_command_help,
)
from settlement.cli.keys import keys_app
from settlement.cli.nodes import node_app
from settlement.cli.officers import officers_app
from settlement.cli.positions import balances, statement
from settlement.cli.remote import DEFAULT_URL, KeyIdOption, KeyOption, UrlOption, api_call, target
from settlement.cli.review import kyc_app, review_app, sanctions_app
from settlement.cli.tickets import xrpl_app
from settlement.cli.webhooks import webhooks_app
from settlement.cli.worker import keystore_app, reconcile, worker
from settlement.domain.errors import SettlementError
from settlement.dvp.ledger_refs import ledger_ref_checker
from settlement.settings import SettingsError

app = typer.Typer(help="Multi-leg settlement engine.", no_args_is_help=True)
db_app = typer.Typer(help="The database: embedded server and migrations.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
audit_app.command("anchor")(audit_anchor)
audit_app.command("proof")(audit_proof)
app.add_typer(review_app, name="review")
app.add_typer(sanctions_app, name="sanctions")
app.add_typer(kyc_app, name="kyc")
app.add_typer(officers_app, name="officers")
app.add_typer(node_app, name="node")
app.add_typer(xrpl_app, name="xrpl")
app.add_typer(keystore_app, name="keystore")
app.command("worker")(worker)
app.command("reconcile")(reconcile)
app.command("balances")(balances)
app.command("statement")(statement)
app.add_typer(keys_app, name="keys")
app.add_typer(commitments_app, name="commitments")
app.add_typer(webhooks_app, name="webhooks")


@app.command()
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port on 127.0.0.1.")] = 8080,
    *,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    ledgers: Annotated[
        bool | None,
        typer.Option(
            "--ledgers/--no-ledgers",
            help="Connect to both ledgers (settlement routes, readiness, breakers); "
            "default: when both settlement agents are configured.",
        ),
    ] = None,
    console: Annotated[
        bool, typer.Option("--console/--no-console", help="Serve the officers' web console.")
    ] = True,
    insecure_cookies: Annotated[
        bool,
        typer.Option(
            help="Console cookies without the Secure flag: only for plain HTTP on a "
            "host other than localhost, behind nothing (browsers send Secure cookies "
            "to https and to localhost)."
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes on the one port, each with its own engine and "
            "connections (uvicorn workers): more than 1 spreads requests over cores.",
        ),
    ] = 1,
) -> None:
    """Run the signed HTTP API (OpenAPI at /openapi.json, docs at /docs; /healthz,
    /readyz and /metrics unsigned) and the officers' console at /console."""
    from settlement.api.app import ConsoleOptions
    from settlement.api.server import serve as run_server

    options = ConsoleOptions(secure_cookies=not insecure_cookies) if console else None
    try:
        run_server(port, host=host, with_ledgers=ledgers, console=options, workers=workers)
    except (SettingsError, LedgerError) as exc:
        raise fail(str(exc), 2 if isinstance(exc, SettingsError) else 1) from exc


@db_app.command("up")
def db_up() -> None:
    """Start the embedded PostgreSQL (or reuse it) and print its owner URL."""
    settings = settings_or_exit()
    if not settings.uses_embedded_database:
        typer.echo(f"using the configured server; nothing to start: {settings.database_url}")
        return
    try:
        urls = bootstrap.database_urls(settings)
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    typer.echo(urls.owner)


@db_app.command("down")
def db_down() -> None:
    """Stop the embedded PostgreSQL."""
    settings = settings_or_exit()
    if not settings.uses_embedded_database:
        raise fail("SETTLEMENT_DATABASE_URL names an external server; it is not ours to stop")
    try:
        stopped = embedded.stop(settings.data_dir)
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    typer.echo("stopped" if stopped else "not running")


@db_app.command("migrate")
def db_migrate(
    revision: Annotated[str, typer.Option(help="Target revision; 'head' or e.g. '0001'.")] = "head",
    downgrade: Annotated[bool, typer.Option(help="Move down to REVISION (e.g. 'base').")] = False,
) -> None:
    """Apply the migrations as the owner role (starting the embedded server if needed)."""
    settings = settings_or_exit()
    try:
        urls = bootstrap.database_urls(settings)
        if downgrade:
            reached = migrate.downgrade(urls.owner, revision)
        elif revision == "head":
            reached = bootstrap.migrate_database(settings, urls)
        else:
            reached = migrate.upgrade(urls.owner, revision)
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"database at revision {reached}")


@audit_app.command("verify")
def audit_verify(
    *,
    as_json: JsonFlag = False,
    ledgers: Annotated[
        bool, typer.Option(help="Also check every ledger reference on the ledger it names.")
    ] = False,
    anchors: Annotated[
        bool,
        typer.Option(
            "--anchors",
            help="Also recompute every anchored root and check it on its ledgers.",
        ),
    ] = False,
    direct: Annotated[
        bool,
        typer.Option(
            "--direct",
            help="Check the database directly (operators on the database host; no key).",
        ),
    ] = False,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
) -> None:
    """Recompute every audit chain; exit 1 and name the first broken entry if any.

    Through the API when a key is given (--key or SETTLEMENT_API_KEY); on the database
    with --direct, or when no key is given.

    With --anchors it also recomputes every anchored root from the log and checks it on
    the ledgers, naming the first anchor whose root no longer matches (through the API
    too, where the API process's ledgers check it).

    Exit codes: 0 verified; 1 a chain, ledger reference or anchor failed, or the API
    refused; 2 usage error; 3 the API is unreachable or failing (5xx).
    """
    if direct or key is None:
        # as the help says: without a key the operator on the database host verifies there
        if anchors:
            audit_verify_with_anchors(as_json=as_json, ledgers=ledgers)
        else:
            _audit_verify_direct(as_json=as_json, ledgers=ledgers)
        return
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        report = client.verify_audit(ledgers=ledgers, anchors=anchors)
    if anchors:
        echo_anchor_verify(anchor_verify_of_api(report), as_json=as_json)
        return
    _echo_verify(report, as_json=as_json, ledgers=ledgers)


def _echo_verify(report: dict[str, Any], *, as_json: bool, ledgers: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    elif report["ok"]:
        refs = f", {report['ledger_refs_checked']} ledger references" if ledgers else ""
        typer.echo(f"ok: {report['chains']} chains, {report['entries']} entries verified{refs}")
    else:
        typer.echo(f"BROKEN: {len(report['breaks'])} of {report['chains']} chains")
        for problem in report["breaks"]:
            where = f" entry {problem['seq']}" if problem.get("seq") is not None else ""
            typer.echo(f"  commitment {problem['commitment_id']}{where}: {problem['problem']}")
    if not report["ok"]:
        raise typer.Exit(1)


def _audit_verify_direct(*, as_json: bool, ledgers: bool) -> None:
    engine = engine_or_exit()
    check = None
    if ledgers:
        try:
            check = ledger_ref_checker(bootstrap.build_chains(engine.settings))
        except (SettingsError, AdapterError, ValueError) as exc:
            engine.close()
            raise fail(str(exc), 2) from exc
    try:
        report = engine.commitments.verify_audit(check_ledger_ref=check)
    except SettlementError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.close()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    elif report.ok:
        refs = f", {report.ledger_refs_checked} ledger references" if ledgers else ""
        typer.echo(f"ok: {report.chains} chains, {report.entries} entries verified{refs}")
    else:
        typer.echo(f"BROKEN: {len(report.breaks)} of {report.chains} chains")
        for problem in report.breaks:
            typer.echo(f"  {problem}")
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("show")
def audit_show(
    commitment_id: UUID,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A commitment's audit entries through the API, oldest first, with ledger references.
    Exit codes: 0 shown; 1 refused (4xx); 2 usage error; 3 API unreachable or failing."""
    show_audit(target(url, key, key_id), commitment_id, as_json)


@app.command()
def demo() -> None:
    """Set up the embedded database, walk commitments through the machine, then settle a
    bond against USDC on local XRPL and Stellar networks (and abort one)."""
    from settlement.demo import settlements as demo_dvp
    from settlement.demo import story as demo_module
    from settlement.sealing import Sealer, local_key

    settings = settings_or_exit()
    try:
        urls = bootstrap.database_urls(settings)
        bootstrap.migrate_database(settings, urls)
        engine = bootstrap.build(settings, urls=urls)
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    try:
        ok = demo_module.run(engine)
        ok = demo_dvp.run(engine, Sealer(local_key(settings.data_dir))) and ok
    finally:
        engine.close()
    if not ok:
        raise typer.Exit(1)


# after every command is registered: help text reads as prose at any terminal width
unwrap_command_help(app)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
