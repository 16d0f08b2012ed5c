"""`settle xrpl tickets`: keep the XRPL accounts the engine signs for supplied with Tickets.

The top-up itself lives in ``settlement.dvp.tickets``; this command parses, has
``settlement.bootstrap`` build the XRPL adapter from settings and prints what happened.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from adapters.chain import Applied
from adapters.errors import AdapterError, TransportError
from adapters.keystore import KeystoreError
from adapters.xrpl.chain import MAX_TICKETS_PER_ACCOUNT
from settlement import bootstrap
from settlement.cli.common import JsonFlag, fail, settings_or_exit
from settlement.dvp.tickets import describe, top_up_tickets
from settlement.settings import SettingsError

xrpl_app = typer.Typer(help="XRP Ledger account set-up.", no_args_is_help=True)


@xrpl_app.command("tickets")
def tickets(
    accounts: Annotated[
        list[str] | None,
        typer.Argument(help="XRPL accounts whose keys are in the keystore; default: the agent."),
    ] = None,
    target: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_TICKETS_PER_ACCOUNT,
            help="Tickets each account should hold; each costs the owner reserve.",
        ),
    ] = 32,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait per account.")] = 60.0,
    as_json: JsonFlag = False,
) -> None:
    """Create Tickets so each account holds at least --target; exit 1 if one could not
    be brought there, 2 for bad settings, an unknown account or a key not held, 3 if
    the ledger cannot be reached."""
    settings = settings_or_exit()
    try:
        chain = bootstrap.build_xrpl_chain(settings)
    except (SettingsError, KeystoreError, ValueError) as exc:
        raise fail(str(exc), 2) from exc
    reports = []
    for account in accounts or [settings.xrpl_agent]:
        try:
            reports.append(top_up_tickets(chain, account, target, timeout_s=timeout))
        except TransportError as exc:
            raise fail(f"{account}: {exc}", 3) from exc
        except (AdapterError, ValueError) as exc:
            raise fail(f"{account}: {exc}", 2) from exc
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "account": r.account,
                        "before": r.before,
                        "after": r.after,
                        "ok": r.ok,
                        "tx_hash": getattr(r.outcome, "tx_hash", None),
                        "ledger_index": (
                            r.outcome.ledger_index if isinstance(r.outcome, Applied) else None
                        ),
                        "ledger_hash": (
                            r.outcome.ledger_hash if isinstance(r.outcome, Applied) else None
                        ),
                        "detail": describe(r.outcome),
                    }
                    for r in reports
                ],
                indent=2,
            )
        )
    else:
        for r in reports:
            typer.echo(f"{r.account}: {r.before} -> {r.after} tickets; {describe(r.outcome)}")
    raise typer.Exit(0 if all(r.ok and r.after >= target for r in reports) else 1)
