"""``settle serve``: the API on uvicorn against the configured database and ledgers."""

from __future__ import annotations

import atexit
import gc
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from settlement import bootstrap
from settlement.api.app import ConsoleOptions, create_app
from settlement.api.metrics import MULTIPROC_DIR_ENV
from settlement.settings import Settings

log = logging.getLogger(__name__)


#: the collector's first threshold while serving (CPython's default is 700): how many
#: more container objects may be allocated than freed before a young collection
SERVING_YOUNG_THRESHOLD = 10_000


def freeze_startup_heap() -> None:
    """Set the garbage collector up for serving, once, after building the app.

    First, move every object alive now (modules, the app, its routes and models, the
    engine) out of the collector's sight. Those objects live as long as the process,
    yet each full collection walked all of them: about two hundred thousand, tens of
    milliseconds a pass, paid by whichever requests were in flight (a latency spike in
    the p99) and several times a minute under load (bench/api.py). Frozen, they are
    never scanned again; objects made afterwards are collected as usual.

    Then raise the first threshold to ``SERVING_YOUNG_THRESHOLD``. A request's
    objects are nearly all freed by reference counting when it ends, but under load
    dozens of requests wait at once (for their guard statement, or a database
    connection), and the objects they hold pass 700 in a burst: at the default, a
    signed GET paid about 40 us of collections, young ones that found nothing to free
    and moved live requests' objects to older generations, whose collections then
    walked them again (bench/api.py prints the collector's time). At 10,000 a young
    collection runs rarely and a reference cycle waits a little longer to be freed: a
    few megabytes at most. The other thresholds are left as they are.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, SERVING_YOUNG_THRESHOLD), middle, old)


#: what ``serve`` tells its worker processes, as JSON: whether to build ledgers and
#: how to run the console (each worker builds its engine from the same settings)
WORKER_OPTIONS_ENV = "SETTLEMENT_SERVE_WORKER"


def serve(
    port: int,
    *,
    host: str = "127.0.0.1",
    settings: Settings | None = None,
    engine: bootstrap.Services | None = None,
    with_ledgers: bool | None = None,
    console: ConsoleOptions | None = None,
    workers: int = 1,
) -> None:
    """Run the API until interrupted; builds the engine from settings unless given one.

    Ledgers (both chains, their breakers and the DVP coordinator) are built when
    ``with_ledgers`` is true, or when it is None and both settlement agents are
    configured; without them the settlement routes answer 503 and readiness checks the
    database only. Raises what ``bootstrap.build`` and ``bootstrap.build_ledgers`` raise
    (``SettingsError``, ``DatabaseUnavailable``) before listening. ``console`` serves
    the officers' web console under /console (None: no console).

    With ``workers`` above 1, uvicorn runs that many server processes on the one
    socket (its supervisor restarts one that dies), each with the engine, ledgers and
    app ``worker_app`` builds from the environment's settings, so a CPU-bound request
    path (signature checks, serialisation) uses every core. The settings (and the
    ledgers, if wanted) are checked here first, with an engine that is closed before the
    workers start, so the same errors are raised before listening. Whatever
    a worker holds that another must see is in PostgreSQL already: nonces, idempotency
    claims, console sessions, published breakers; request metrics go through
    prometheus-client's multiprocess files, in a directory made for this run.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if workers > 1:
        if engine is not None or settings is not None:
            # a spawned worker starts from nothing but the environment
            raise ValueError("workers build their engines from the environment's settings")
        _serve_workers(
            port,
            host=host,
            with_ledgers=with_ledgers,
            console=console,
            workers=workers,
        )
        return
    owned = engine is None
    built = engine or bootstrap.build(settings)
    ledgers: bootstrap.Ledgers | None = None
    try:
        ledgers = _ledgers_for(built, with_ledgers)
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


def _ledgers_for(built: bootstrap.Services, wanted: bool | None) -> bootstrap.Ledgers | None:
    """Both ledgers when asked, or by default when both settlement agents are set."""
    if wanted is None:
        wanted = bool(built.settings.xrpl_agent and built.settings.stellar_agent)
    if wanted:
        return bootstrap.build_ledgers(built)
    log.warning("serving without ledgers: settlement routes answer 503")
    return None


def _serve_workers(
    port: int,
    *,
    host: str,
    with_ledgers: bool | None,
    console: ConsoleOptions | None,
    workers: int,
) -> None:
    # refuse bad settings, an old schema or an unreachable ledger now, as one process
    # would, rather than in workers that uvicorn would restart again and again
    checked = bootstrap.build()
    try:
        log_level = checked.settings.log_level.lower()
        checked_ledgers = _ledgers_for(checked, with_ledgers)
        if checked_ledgers is not None:
            checked_ledgers.close()
    finally:
        checked.close()
    options = {
        "with_ledgers": with_ledgers,
        "console": None
        if console is None
        else {
            "secure_cookies": console.secure_cookies,
            "explorer_urls": dict(console.explorer_urls),
            # one for all the workers: a sign-in form one served, another accepts
            "sign_in_secret": (console.sign_in_secret or secrets.token_bytes(32)).hex(),
        },
    }
    with _worker_environment(options):
        uvicorn.run(
            f"{__name__}:worker_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=log_level,
            server_header=False,
            proxy_headers=False,
        )


@contextmanager
def _worker_environment(options: Mapping[str, object]) -> Iterator[None]:
    """The variables the spawned workers read, set for as long as they run; a fresh
    metrics directory, removed afterwards (prometheus-client reads every file there,
    so one left by an earlier run would count again)."""
    metrics_dir = tempfile.mkdtemp(prefix="settlement-metrics-")
    saved = {name: os.environ.get(name) for name in (WORKER_OPTIONS_ENV, MULTIPROC_DIR_ENV)}
    os.environ[WORKER_OPTIONS_ENV] = json.dumps(options)
    os.environ[MULTIPROC_DIR_ENV] = metrics_dir
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(metrics_dir, ignore_errors=True)


def worker_app() -> FastAPI:
    """The app of one ``serve --workers N`` process (uvicorn calls it in the worker):
    its own engine, ledgers if asked, and the console, from the settings in the
    environment and ``SETTLEMENT_SERVE_WORKER``; closed when the process exits."""
    options = json.loads(os.environ[WORKER_OPTIONS_ENV])
    built = bootstrap.build()
    ledgers = _ledgers_for(built, options["with_ledgers"])

    def close() -> None:
        if ledgers is not None:
            ledgers.close()
        built.close()

    atexit.register(close)
    console = options["console"]
    app = create_app(
        built,
        ledgers=ledgers,
        console=None if console is None else _console_options(console),
        multiprocess_metrics=True,
    )
    freeze_startup_heap()
    return app


def _console_options(options: Mapping[str, Any]) -> ConsoleOptions:
    return ConsoleOptions(
        secure_cookies=options["secure_cookies"],
        explorer_urls=options["explorer_urls"],
        sign_in_secret=bytes.fromhex(options["sign_in_secret"]),
    )
