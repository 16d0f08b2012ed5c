"""`settle node xrpl|stellar`: run a local ledger network in the foreground.

The networks live in ``adapters.localnet``; these commands only parse options and
start them. Ctrl-C stops a node; with ``--data-dir`` its state survives a restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

node_app = typer.Typer(
    help="Local XRPL and Stellar networks (offline default).", no_args_is_help=True
)

Port = Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port on 127.0.0.1.")]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Keep the ledger state here across restarts.")
]


IdleInterval = Annotated[
    float | None,
    typer.Option(
        min=0.001,
        help="Close a ledger holding no transaction only this long after the last "
        "close (rippled: 15 s). Each close time is at least its parent's + 1 s, so "
        "closing empty ledgers faster than once a second runs ledger time ahead of "
        "the wall clock. Default: 1 s when --close-interval is below 1 s.",
    ),
]
Amendments = Annotated[
    list[str] | None,
    typer.Option(
        "--amendments",
        help="Switch optional amendments, e.g. TokenEscrow=off,DeepFreeze=on "
        "(repeatable). The feature method lists them.",
    ),
]
NetworkId = Annotated[
    int,
    typer.Option(
        "--network-id",
        min=0,
        max=0xFFFFFFFF,
        help="NetworkID of this network; above 1024 every transaction must carry it.",
    ),
]
FeeEscalation = Annotated[
    bool,
    typer.Option(
        "--fee-escalation/--no-fee-escalation",
        help="Raise the open-ledger fee past --expected-ledger-size transactions and "
        "queue cheaper ones (terQUEUED), as rippled's TxQ does.",
    ),
]
ExpectedLedgerSize = Annotated[
    int | None,
    typer.Option(
        "--expected-ledger-size",
        min=1,
        help="Transactions a ledger takes at the reference fee before the fee "
        "escalates. Default: a standalone rippled's, as the node sets it.",
    ),
]


@node_app.command("xrpl")
def node_xrpl(  # noqa: PLR0917 - typer maps one parameter to each command-line option
    port: Port = 5005,
    close_interval: Annotated[
        float, typer.Option(min=0, help="Seconds between ledger closes; 0: only on ledger_accept.")
    ] = 0.0,
    data_dir: DataDir = None,
    idle_interval: IdleInterval = None,
    amendments: Amendments = None,
    network_id: NetworkId = 0,
    fee_escalation: FeeEscalation = True,
    expected_ledger_size: ExpectedLedgerSize = None,
) -> None:
    """An XRP Ledger speaking rippled's JSON-RPC (admin port), with a faucet."""
    # Imported here, not at the top: the node pulls in xrpl-py, which the rest of
    # the command line does not need; so the default is resolved here too.
    from adapters.localnet.xrpl import run_node
    from adapters.localnet.xrpl.amendments import UnknownAmendment, parse_switches
    from adapters.localnet.xrpl.txq import STANDALONE_EXPECTED_SIZE

    if idle_interval is None and 0 < close_interval < 1:
        idle_interval = 1.0
    try:
        switches = parse_switches(amendments) if amendments else None
    except UnknownAmendment as exc:
        raise typer.BadParameter(str(exc), param_hint="--amendments") from exc
    run_node(
        port=port,
        close_interval_s=close_interval,
        data_dir=data_dir,
        idle_interval_s=idle_interval,
        amendments=switches,
        network_id=network_id,
        fee_escalation=fee_escalation,
        expected_ledger_size=(
            STANDALONE_EXPECTED_SIZE if expected_ledger_size is None else expected_ledger_size
        ),
    )


@node_app.command("stellar")
def node_stellar(
    port: Port = 8000,
    close_interval: Annotated[
        float, typer.Option(min=0, help="Seconds between ledger closes; 0: only when told.")
    ] = 1.0,
    data_dir: DataDir = None,
    max_tx_set_size: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Operations a ledger holds before surge pricing (default: testnet's, 100); "
            "0: no limit, every valid transaction goes into the next ledger.",
        ),
    ] = None,
) -> None:
    """A Stellar network speaking Horizon's REST API, with friendbot."""
    from adapters.localnet.stellar import run_node
    from adapters.localnet.stellar.ledger import MAX_TX_SET_SIZE

    run_node(
        port=port,
        close_interval_s=close_interval,
        data_dir=data_dir,
        max_tx_set_size=MAX_TX_SET_SIZE if max_tx_set_size is None else max_tx_set_size or None,
    )
