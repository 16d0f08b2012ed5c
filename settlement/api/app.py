"""The FastAPI application factory: ``create_app(engine)`` assembles the API from the
composition root's ``Services``.

Routes live one module per resource in ``settlement.api.routes`` (commitments, review,
audit, settlements, parties, operations) and share ``settlement.api.deps``; errors
become problems in ``settlement.api.problems``; the served OpenAPI document is
``settlement.api.openapi``'s. No business rule lives in the API: transitions, guards and
screening are the services' (and the database's); a route checks only which roles may
call it and, for reads, that an allocator reads its own party's records. Every route
except the public ones (``PUBLIC_PATHS``: health probes, metrics, the OpenAPI
documents) is behind ``settlement.api.guard`` (signature, size limit, idempotency), and
every request, refused or not, is counted by ``settlement.api.observe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from settlement import bootstrap
from settlement.api import problems
from settlement.api.deps import Operations
from settlement.api.framing import NotFramed
from settlement.api.guard import Guard
from settlement.api.metrics import ApiMetrics
from settlement.api.observe import RequestMetrics
from settlement.api.openapi import document_of
from settlement.api.routes import (
    audit,
    commitments,
    operations,
    parties,
    positions,
    review,
    settlements,
    webhooks,
)
from settlement.api.strict import RefuseControlCharacters, StrictJsonRoute
from settlement.breakers import BreakerBoard
from settlement.console import install_console
from settlement.services.keys import KeyService

DEFAULT_MAX_BODY_BYTES = 64 * 1024
CONSOLE_PREFIX = "/console"


@dataclass(frozen=True)
class ConsoleOptions:
    """How ``settle serve`` runs the console: Secure cookies unless told otherwise (a
    browser sends them to https and to localhost only), and optional explorer links."""

    secure_cookies: bool = True
    explorer_urls: Mapping[str, str] = field(default_factory=dict)
    #: signs the sign-in forms' tokens; the processes of one console share it (None:
    #: this process makes its own)
    sign_in_secret: bytes | None = None


#: the HTML pages of the OpenAPI document, which no other site may frame
DOCUMENT_PAGES = ("/docs", "/docs/oauth2-redirect", "/redoc")
#: unsigned: probes, scrapers, the OpenAPI documents and the webhook public keys
PUBLIC_PATHS = (
    "/health",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    webhooks.KEYS_PATH,
)
DEFAULT_READINESS_TIMEOUT_S = 3.0
DEFAULT_PUBLISH_EVERY_S = 5.0


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every API route, including those of included routers (which some FastAPI
    versions keep behind one wrapper route)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)


def default_scope() -> str:
    """The breaker scope of this API process: host and process id."""
    return f"api:{socket.gethostname()}:{os.getpid()}"


#: one router per resource, included in this order
ROUTERS = (
    commitments.router,
    review.router,
    audit.router,
    settlements.router,
    parties.router,
    positions.router,
    webhooks.router,
    operations.router,
)
DESCRIPTION = (
    "Signed API of the multi-leg settlement engine. Every route under /v1 is signed "
    "(RFC 9421, Ed25519); /health, /healthz, /readyz and /metrics are not. Errors are "
    "RFC 9457 problem+json; mutating routes need an Idempotency-Key, and transitions "
    "the expected version."
)


def create_app(
    engine: bootstrap.Services,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ledgers: bootstrap.Ledgers | None = None,
    scope: str | None = None,
    readiness_timeout_s: float = DEFAULT_READINESS_TIMEOUT_S,
    publish_breakers_every_s: float = DEFAULT_PUBLISH_EVERY_S,
    console: ConsoleOptions | None = None,
    multiprocess_metrics: bool = False,
) -> FastAPI:
    """The API over ``engine``. The caller owns the engine and the ledgers (and closes
    them). Without ``ledgers`` the settlement routes and ``audit/verify?ledgers=true``
    answer 503 ``ledgers_unavailable`` and readiness checks the database only.
    ``scope`` names this process in the shared breaker table (default: host and pid);
    while the app runs (its lifespan), it publishes its breakers every
    ``publish_breakers_every_s`` seconds, so reset requests reach it without a request.
    With ``console`` the officers' web console is served under /console; it signs its
    users in with its own sessions, so the signature guard lets that prefix through.
    ``multiprocess_metrics`` keeps the request metrics in prometheus-client's
    multiprocess mode, so that ``/metrics`` of any one worker counts them all
    (``ApiMetrics``).
    """
    ops = Operations(
        ledgers=ledgers,
        board=BreakerBoard(engine.db, engine.clock),
        metrics=ApiMetrics(
            engine.db,
            multiprocess=multiprocess_metrics,
            clock=engine.clock,
            anchor_chains=[name.value for name in bootstrap.anchor_accounts(engine.settings)],
        ),
        scope=scope or default_scope(),
        readiness_timeout_s=readiness_timeout_s,
    )
    app = FastAPI(
        title="Settlement engine API",
        version="1",
        description=DESCRIPTION,
        lifespan=_publishing(ops, publish_breakers_every_s),
    )
    app.state.engine = engine
    app.state.operations = ops
    _guard(app, engine, max_body_bytes=max_body_bytes, console=console is not None)
    _add_routes(app)
    app.add_middleware(NotFramed, paths=DOCUMENT_PAGES)
    # added last, so outermost: it sees the guard's refusals (401, 413) too
    app.add_middleware(RequestMetrics, metrics=ops.metrics, routes=list(api_routes(app.routes)))
    if console is not None:
        install_console(
            app,
            engine,
            secure_cookies=console.secure_cookies,
            # explorer links as asked, else as the settings name them
            explorer_urls=console.explorer_urls or engine.settings.explorer_tx_urls,
            sign_in_secret=console.sign_in_secret,
            # a party's page reads its balances from this process's ledgers, if any
            chains=ops.ledgers.chains if ops.ledgers is not None else None,
        )
    problems.install_handlers(app)
    app.openapi = document_of(app, PUBLIC_PATHS)  # type: ignore[method-assign]
    return app


def _publishing(
    ops: Operations, every_s: float
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: with ledgers, publish this process's breakers every
    ``every_s`` seconds while it runs (stopped when it shuts down)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        publisher = None
        if ops.ledgers is not None:
            publisher = asyncio.create_task(operations.publish_forever(ops, every_s))
        try:
            yield
        finally:
            if publisher is not None:
                publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publisher

    return lifespan


def _guard(app: FastAPI, engine: bootstrap.Services, *, max_body_bytes: int, console: bool) -> None:
    """The signature guard, and inside it the refusal of control characters."""
    # added first, so inside the guard: a request is authenticated before anything
    # else about it is refused, as the guard refuses everything else
    app.add_middleware(RefuseControlCharacters)
    app.add_middleware(
        Guard,
        keys=KeyService(engine.db, engine.clock),
        db=engine.db,
        clock=engine.clock,
        max_body_bytes=max_body_bytes,
        public_paths=PUBLIC_PATHS,
        public_prefixes=(CONSOLE_PREFIX,) if console else (),
    )


def _add_routes(app: FastAPI) -> None:
    # before any route exists: each takes the router's route class when it is added
    app.router.route_class = StrictJsonRoute
    for router in ROUTERS:
        app.include_router(router)
