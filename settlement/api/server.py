"""``settle serve``: the API on uvicorn against the configured database and ledgers."""

from __future__ import annotations

import logging

import uvicorn

from settlement import bootstrap
from settlement.api.app import ConsoleOptions, create_app
from settlement.settings import Settings

log = logging.getLogger(__name__)


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
        uvicorn.run(
            create_app(built, ledgers=ledgers, console=console),
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
