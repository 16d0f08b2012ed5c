"""``settle serve``: the API on uvicorn against the configured database."""

from __future__ import annotations

import uvicorn

from settlement import bootstrap
from settlement.api.app import create_app
from settlement.settings import Settings


def serve(
    port: int,
    *,
    host: str = "127.0.0.1",
    settings: Settings | None = None,
    engine: bootstrap.Engine | None = None,
) -> None:
    """Run the API until interrupted; builds the engine from settings unless given one.

    Raises what ``bootstrap.build`` raises (``SettingsError``, ``DatabaseUnavailable``)
    before listening.
    """
    owned = engine is None
    built = engine or bootstrap.build(settings)
    try:
        uvicorn.run(
            create_app(built),
            host=host,
            port=port,
            log_level=built.settings.log_level.lower(),
            server_header=False,
            proxy_headers=False,
        )
    finally:
        if owned:
            built.close()
