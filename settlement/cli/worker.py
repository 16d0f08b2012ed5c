"""`settle keystore` and `settle worker`: the keys the engine signs with, and the
process that drives settlements."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from adapters.keystore import KeystoreError
from ledger.errors import LedgerError
from settlement import bootstrap
from settlement.cli.common import JsonFlag, engine_or_exit, fail, settings_or_exit
from settlement.dvp.worker import WorkerPolicy
from settlement.settings import SettingsError

keystore_app = typer.Typer(help="The encrypted keystore of ledger accounts.", no_args_is_help=True)


@keystore_app.command("add")
def keystore_add(
    chain: Annotated[str, typer.Argument(help="xrpl or stellar")],
) -> None:
    """Add an account by its secret (an XRPL seed or a Stellar S... secret), read from
    standard input so it never appears in a process list or shell history."""
    if chain not in ("xrpl", "stellar"):
        raise fail("chain must be xrpl or stellar", 2)
    secret = sys.stdin.readline().strip()
    if not secret:
        raise fail("no secret on standard input", 2)
    try:
        keystore = bootstrap.keystore_file(settings_or_exit())
        address = keystore.add_xrpl(secret) if chain == "xrpl" else keystore.add_stellar(secret)
    except SettingsError as exc:
        raise fail(str(exc), 2) from exc
    except KeystoreError as exc:
        raise fail(str(exc)) from exc
    typer.echo(address)


@keystore_app.command("list")
def keystore_list(as_json: JsonFlag = False) -> None:
    """The accounts the engine can sign for (addresses only)."""
    try:
        accounts = bootstrap.keystore_file(settings_or_exit()).accounts()
    except (SettingsError, KeystoreError) as exc:
        raise fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(accounts, indent=2))
        return
    for chain, addresses in accounts.items():
        for address in addresses:
            typer.echo(f"{chain:<8} {address}")


def worker(
    once: Annotated[bool, typer.Option(help="One pass over what is due, then exit.")] = False,
    until_idle: Annotated[
        bool, typer.Option(help="Run until no settlement is open, then exit.")
    ] = False,
    lease: Annotated[float, typer.Option(min=1, help="Lease per claimed settlement, s.")] = 30,
    concurrency: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Settlements stepped at once. Above 1, give the XRPL signers Tickets and "
            "Stellar channel accounts, or their transactions race for one sequence.",
        ),
    ] = 1,
) -> None:
    """Drive settlements (lock, decide, commit or unwind) and expire stale commitments.
    Several workers may run against one database. Running on (neither --once nor
    --until-idle), it also takes and publishes audit anchors when anchor accounts are
    configured (anchor_interval_s, anchor_every_entries)."""
    engine = engine_or_exit()
    try:
        ledgers = bootstrap.build_ledgers(engine)
    except (SettingsError, KeystoreError, ValueError) as exc:
        engine.close()
        raise fail(str(exc), 2) from exc
    runner = bootstrap.build_worker(
        engine, ledgers, policy=WorkerPolicy(lease_s=lease, concurrency=concurrency)
    )
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    try:
        running_on = not (once or until_idle)
        with _anchoring(engine, running_on=running_on), _delivering(engine, running_on=running_on):
            if once:
                runner.run_once()
            elif until_idle:
                while runner.open_settlements() > 0:
                    if runner.run_once() == 0:
                        runner.wait(runner.policy.idle_s)
            else:
                logging.getLogger(__name__).info("worker %s running; Ctrl-C stops it", runner.name)
                try:
                    runner.run()
                except KeyboardInterrupt:
                    runner.stop()
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    finally:
        ledgers.close()
        engine.close()


@contextmanager
def _anchoring(engine: bootstrap.Services, *, running_on: bool) -> Iterator[None]:
    """Audit anchors in a thread of their own while a worker runs on (never in
    settlement's way), when anchor accounts are configured; exit 2 when they are but the
    ledgers cannot be built."""
    try:
        loop = bootstrap.build_anchor_loop(engine) if running_on else None
    except (SettingsError, KeystoreError, ValueError) as exc:
        raise fail(str(exc), 2) from exc
    if loop is None:
        yield
        return
    loop.start()
    try:
        yield
    finally:
        loop.stop()


@contextmanager
def _delivering(engine: bootstrap.Services, *, running_on: bool) -> Iterator[None]:
    """Webhook deliveries in a thread of their own while a worker runs on: a slow or
    unreachable receiver never holds a settlement up. Exit 2 when the signing key
    cannot be had."""
    if not running_on:
        yield
        return
    try:
        delivery = bootstrap.build_delivery_worker(engine)
    except SettingsError as exc:
        raise fail(str(exc), 2) from exc
    delivery.start()
    try:
        yield
    finally:
        delivery.stop()
        delivery.close()


def reconcile(as_json: JsonFlag = False) -> None:
    """Compare the engine's records with the ledgers; exit 1 on breaks, 2 when a ledger
    could not be checked (and nothing else was wrong), 0 when everything agrees."""
    from settlement.dvp.reconcile import Reconciler

    engine = engine_or_exit()
    try:
        chains = bootstrap.build_chains(engine.settings)
    except (SettingsError, KeystoreError, ValueError) as exc:
        engine.close()
        raise fail(str(exc), 2) from exc
    try:
        report = Reconciler(engine.db, chains).run()
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.close()
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        typer.echo(f"reconcile: {report.status}")
        for item in report.breaks:
            # a partial settlement or a delivered amount is about one settlement's leg
            where = "" if item.settlement_id is None else f" settlement {item.settlement_id}"
            where += "" if item.leg_no is None else f" leg {item.leg_no}"
            typer.echo(
                f"  break {item.kind} [{item.chain}]{where} expected {item.expected}; "
                f"found {item.found}" + (f" ({item.detail})" if item.detail else "")
            )
        for down in report.unreachable:
            typer.echo(
                f"  unreachable {down.chain}: {down.reason} ({down.unchecked} checks skipped)"
            )
        for unsure in report.unverified:
            typer.echo(f"  unverified [{unsure.chain}] {unsure.item}: {unsure.reason}")
    raise typer.Exit(report.exit_code)
