"""`settle webhooks`: endpoints through the signed API (add, list, disable, replay,
deliveries), and `settle webhooks deliver`, the delivery worker on its own (it also runs
inside `settle worker`)."""

from __future__ import annotations

import logging
import signal
from typing import Annotated
from uuid import UUID

import typer

from ledger.errors import LedgerError
from ledger.webhooks import EventType
from settlement import bootstrap
from settlement.cli.common import engine_or_exit, fail
from settlement.cli.remote import (
    DEFAULT_URL,
    EXIT_CODES_HELP,
    Column,
    JsonFlag,
    KeyIdOption,
    KeyOption,
    UrlOption,
    api_call,
    col,
    echo_json,
    echo_table,
    short_time,
    target,
)
from settlement.settings import SettingsError

webhooks_app = typer.Typer(
    help="Webhook endpoints (signed API) and their delivery worker. " + EXIT_CODES_HELP,
    no_args_is_help=True,
)

ENDPOINT_COLUMNS: list[Column] = [
    ("ID", col("id")),
    ("PARTY", lambda r: r.get("party") or "(every party)"),
    ("ACTIVE", lambda r: "yes" if r.get("active") else "no"),
    ("CREATED", lambda r: short_time(r.get("created_at"))),
    ("URL", col("url")),
    ("EVENTS", lambda r: ",".join(r.get("event_types") or [])),
]
DELIVERY_COLUMNS: list[Column] = [
    ("ID", col("id")),
    ("STATUS", col("status")),
    ("TRIES", col("attempts")),
    ("EVENT", col("event_type")),
    ("COMMITMENT", col("commitment_id")),
    ("#", col("sequence")),
    ("LAST", lambda r: r.get("last_status") or ""),
    ("ERROR", lambda r: r.get("last_error") or ""),
]


@webhooks_app.command("add")
def add(
    endpoint_url: Annotated[str, typer.Argument(help="The https URL to POST events to.")],
    *,
    event: Annotated[
        list[str],
        typer.Option("--event", help=f"An event type (repeatable): {', '.join(EventType)}."),
    ],
    party: Annotated[
        str | None,
        typer.Option(help="Admins: the party (default: every party). Allocators: their own."),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Register an endpoint for the event types named."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        created = client.add_webhook(endpoint_url, list(event), party=party)
    if as_json:
        echo_json(created)
        return
    typer.echo(f"{created['id']}: {created['url']} ({', '.join(created['event_types'])})")


@webhooks_app.command("list")
def list_endpoints(
    party: Annotated[str | None, typer.Option(help="Only this party's endpoints.")] = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Endpoints: an allocator's own party's; an admin's all."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        found = client.webhooks(party=party)
    if as_json:
        echo_json(found)
        return
    echo_table(found, ENDPOINT_COLUMNS, "no webhook endpoints")


@webhooks_app.command("disable")
def disable(
    endpoint_id: UUID,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Stop delivering to an endpoint."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        result = client.disable_webhook(endpoint_id)
    if as_json:
        echo_json(result)
        return
    typer.echo(f"{result['id']}: disabled")


@webhooks_app.command("deliveries")
def deliveries(
    endpoint_id: UUID,
    *,
    status: Annotated[
        str | None, typer.Option(help="pending, delivered or dead (dead letters).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """An endpoint's deliveries, newest first."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        found = client.webhook_deliveries(endpoint_id, status=status)
    if as_json:
        echo_json(found)
        return
    echo_table(found, DELIVERY_COLUMNS, "no deliveries")


@webhooks_app.command("replay")
def replay(
    endpoint_id: UUID,
    *,
    delivery: Annotated[
        list[int] | None,
        typer.Option("--delivery", help="A dead delivery to replay (repeatable; default all)."),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    key_id: KeyIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Deliver an endpoint's dead letters again."""
    with api_call(target(url, key, key_id), as_json=as_json) as client:
        result = client.replay_webhooks(endpoint_id, list(delivery) if delivery else None)
    if as_json:
        echo_json(result)
        return
    typer.echo(f"replayed {len(result['replayed'])} dead deliveries")


@webhooks_app.command("deliver")
def deliver(
    once: Annotated[bool, typer.Option(help="One round over what is due, then exit.")] = False,
) -> None:
    """Deliver webhook events (on the database host, like `settle worker`). Several may
    run at once."""
    engine = engine_or_exit()
    try:
        runner = bootstrap.build_delivery_worker(engine)
    except SettingsError as exc:
        engine.close()
        raise fail(str(exc), 2) from exc
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    try:
        if once:
            typer.echo(f"delivered or retried {runner.run_once()} deliveries")
        else:
            logging.getLogger(__name__).info("webhook delivery running; Ctrl-C stops it")
            try:
                runner.run()
            except KeyboardInterrupt:
                runner.stop()
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    finally:
        runner.close()
        engine.close()
