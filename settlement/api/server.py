"""``settle serve``: the API on uvicorn against the configured database and ledgers."""

from __future__ import annotations

import gc
import logging

import uvicorn

from settlement import bootstrap
from settlement.api.app import ConsoleOptions, create_app
from settlement.settings import Settings

log = logging.getLogger(__name__)


def freeze_startup_heap() -> None:
    """Move every object alive now (modules, the app, its routes and models, the
    engine) out of the garbage collector's sight, just before serving.

    Those objects live as long as the process, yet each full collection walked all of
    them: about two hundred thousand, tens of milliseconds a pass, paid by whichever
    requests were in flight (a latency spike in the p99) and several times a minute
    under load (bench/api.py). Frozen, they are never scanned again; objects made
    afterwards are collected as usual. Call it once, after building the app.
    """
    gc.collect()
    gc.freeze()


def serve(
    port: int,
    *,
    host: str = "127.0.0.1",
    settings: Settings | None = None,
    engine: bootstrap.Engine | None = None,
    with_ledgers: bool | None = None,
    console: ConsoleOptions | None = None,
) -> None:
    """Run the API until interrupted; builds the engine from settings unless given one.

    Ledgers (both chains, their breakers and the DVP coordinator) are built when
    ``with_ledgers`` is true, or when it is None and both settlement agents are
    configured; without them the settlement routes answer 503 and readiness checks the
    database only. Raises what ``bootstrap.build`` and ``bootstrap.build_ledgers`` raise
    (``SettingsError``, ``DatabaseUnavailable``) before listening. ``console`` serves
    the officers' web console under /console (None: no console).
    """
    owned = engine is None
    built = engine or bootstrap.build(settings)
    ledgers: bootstrap.Ledgers | None = None
    try:
        wanted = with_ledgers
        if wanted is None:
            wanted = bool(built.settings.xrpl_agent and built.settings.stellar_agent)
        if wanted:
            ledgers = bootstrap.build_ledgers(built)
        else:
            log.warning("serving without ledgers: settlement routes answer 503")
        app = create_app(built, ledgers=ledgers, console=console)
        freeze_startup_heap()
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=built.settings.log_level.lower(),
            server_header=False,
            proxy_headers=False,
        )
    finally:
        if ledgers is not None:
            ledgers.close()
        if owned:
            built.close()
