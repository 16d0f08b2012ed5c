"""The FastAPI application: routes that parse, authorise and call the engine's services.

``create_app(engine)`` builds it from the composition root's ``Engine``. No business
rule lives here: transitions, guards and screening are the services' (and the
database's); a route checks only which roles may call it and, for reads, that an
allocator reads its own party's commitments. Every route except the public ones
(``PUBLIC_PATHS``: health probes, metrics, the OpenAPI documents) is behind
``settlement.api.guard`` (signature, size limit, idempotency), and every request,
refused or not, is counted by ``settlement.api.observe``. Route modules live in
``settlement.api.routes``; shared dependencies in ``settlement.api.deps``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from settlement import bootstrap
from settlement.api import problems, schemas
from settlement.api.deps import (
    API_PREFIX,
    READ_ERRORS,
    WRITE_ERRORS,
    Allocator,
    EngineDep,
    IdempotencyKey,
    IfMatch,
    Officer,
    Operations,
    OpsDep,
    Reader,
    Verifier,
    etag,
    expected_version,
    own_or_forbidden,
)
from settlement.api.framing import NotFramed
from settlement.api.guard import Guard
from settlement.api.metrics import ApiMetrics
from settlement.api.observe import RequestMetrics
from settlement.api.routes import operations as operation_routes
from settlement.api.routes import parties, settlements
from settlement.api.strict import RefuseControlCharacters, StrictJsonRoute
from settlement.breakers import BreakerBoard
from settlement.console import install_console
from settlement.domain import errors
from settlement.domain.states import Event
from settlement.domain.values import Actor
from settlement.dvp.ledger_refs import ledger_ref_checker
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
#: unsigned: probes, scrapers and the OpenAPI documents
PUBLIC_PATHS = (
    "/health",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
)
DEFAULT_READINESS_TIMEOUT_S = 3.0
DEFAULT_PUBLISH_EVERY_S = 5.0


def _transition(
    engine: bootstrap.Engine,
    response: Response,
    actor: Actor,
    commitment_id: UUID,
    event: Event,
    *,
    key: str,
    version: int,
    reason: str | None = None,
    override_reason: str | None = None,
) -> schemas.TransitionOut:
    extra: dict[str, Any] = {}
    if override_reason is not None:
        extra["override_reason"] = override_reason
    result = engine.commitments.apply(
        actor,
        commitment_id,
        event,
        expected_version=version,
        reason=reason,
        idempotency_key=key,
        **extra,
    )
    response.headers["ETag"] = etag(result.version)
    return schemas.TransitionOut.of(result)


# -- routes -----------------------------------------------------------------------------


def _routes(app: FastAPI) -> None:
    @app.get("/health", response_model=schemas.HealthOut, tags=["health"])
    def health(engine: EngineDep, response: Response) -> schemas.HealthOut:
        """Liveness and database reachability; unsigned."""
        try:
            engine.db.call_one("SELECT 1", {})
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            response.status_code = 503
            return schemas.HealthOut(status="unavailable", database="unreachable")
        return schemas.HealthOut(status="ok", database="ok")

    @app.post(
        f"{API_PREFIX}/commitments",
        status_code=201,
        response_model=schemas.TransitionOut,
        responses=WRITE_ERRORS,
        tags=["allocator"],
    )
    def create_commitment(
        body: schemas.CommitmentCreate,
        engine: EngineDep,
        actor: Allocator,
        key: IdempotencyKey,
        response: Response,
    ) -> schemas.TransitionOut:
        """Create a DRAFT commitment owned by the key's party."""
        result = engine.commitments.create(
            actor,
            deal_ref=body.deal_ref,
            amount=body.amount,
            currency=body.currency,
            expires_at=body.expires_at,
            commitment_id=body.commitment_id,
            idempotency_key=key,
            counterparty=body.counterparty,
        )
        response.headers["ETag"] = etag(result.version)
        response.headers["Location"] = f"{API_PREFIX}/commitments/{result.commitment_id}"
        return schemas.TransitionOut.of(result)

    @app.get(
        f"{API_PREFIX}/commitments/{{commitment_id}}",
        response_model=schemas.CommitmentOut,
        responses=READ_ERRORS,
        tags=["allocator"],
    )
    async def get_commitment(
        commitment_id: UUID, engine: EngineDep, actor: Reader, response: Response
    ) -> schemas.CommitmentOut:
        """One commitment; its ETag is its version."""
        # the read clients poll: on the event loop, with no thread-pool hand-off (in
        # bench/api.py about 400 us of server CPU per request less, and from about 600
        # to 1,050 requests/s)
        record = await engine.commitments.get_async(commitment_id)
        own_or_forbidden(actor, record.owner_party)
        response.headers["ETag"] = etag(record.version)
        return schemas.CommitmentOut.of(record)

    @app.post(
        f"{API_PREFIX}/commitments/{{commitment_id}}/submit",
        response_model=schemas.TransitionOut,
        responses=WRITE_ERRORS,
        tags=["allocator"],
    )
    def submit(
        *,
        commitment_id: UUID,
        engine: EngineDep,
        actor: Allocator,
        key: IdempotencyKey,
        response: Response,
        if_match: IfMatch = None,
        body: schemas.VersionedBody | None = None,
    ) -> schemas.TransitionOut:
        """DRAFT -> PENDING_REVIEW; screens the commitment."""
        version = expected_version(if_match, body)
        return _transition(
            engine, response, actor, commitment_id, Event.SUBMIT, key=key, version=version
        )

    @app.post(
        f"{API_PREFIX}/commitments/{{commitment_id}}/withdraw",
        response_model=schemas.TransitionOut,
        responses=WRITE_ERRORS,
        tags=["allocator"],
    )
    def withdraw(
        *,
        commitment_id: UUID,
        engine: EngineDep,
        actor: Allocator,
        key: IdempotencyKey,
        response: Response,
        if_match: IfMatch = None,
        body: schemas.WithdrawBody | None = None,
    ) -> schemas.TransitionOut:
        """DRAFT or VERIFIED -> CANCELLED."""
        version = expected_version(if_match, body)
        return _transition(
            engine,
            response,
            actor,
            commitment_id,
            Event.WITHDRAW,
            key=key,
            version=version,
            reason=body.reason if body else None,
        )

    @app.get(
        f"{API_PREFIX}/review",
        response_model=list[schemas.QueueItemOut],
        responses=READ_ERRORS,
        tags=["compliance officer"],
    )
    def review_queue(
        engine: EngineDep,
        actor: Officer,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[schemas.QueueItemOut]:
        """Commitments under review, oldest submission first."""
        return [schemas.QueueItemOut.of(i) for i in engine.compliance.review_queue(limit=limit)]

    @app.get(
        f"{API_PREFIX}/review/{{commitment_id}}",
        response_model=schemas.ReviewDetailOut,
        responses=READ_ERRORS,
        tags=["compliance officer"],
    )
    def review_detail(
        commitment_id: UUID, engine: EngineDep, actor: Officer, response: Response
    ) -> schemas.ReviewDetailOut:
        """Terms, screenings, approvals and history of one commitment."""
        detail = engine.compliance.review_detail(commitment_id)
        response.headers["ETag"] = etag(detail.commitment.version)
        return schemas.ReviewDetailOut.of(detail)

    @app.post(
        f"{API_PREFIX}/review/{{commitment_id}}/approve",
        response_model=schemas.TransitionOut,
        responses=WRITE_ERRORS,
        tags=["compliance officer"],
    )
    def approve(
        *,
        commitment_id: UUID,
        engine: EngineDep,
        actor: Officer,
        key: IdempotencyKey,
        response: Response,
        if_match: IfMatch = None,
        body: schemas.ApproveBody | None = None,
    ) -> schemas.TransitionOut:
        """Record an approval; PENDING_REVIEW -> VERIFIED once the round has enough."""
        version = expected_version(if_match, body)
        return _transition(
            engine,
            response,
            actor,
            commitment_id,
            Event.APPROVE,
            key=key,
            version=version,
            override_reason=body.override_reason if body else None,
        )

    @app.post(
        f"{API_PREFIX}/review/{{commitment_id}}/reject",
        response_model=schemas.TransitionOut,
        responses=WRITE_ERRORS,
        tags=["compliance officer"],
    )
    def reject(
        *,
        commitment_id: UUID,
        body: schemas.ReasonBody,
        engine: EngineDep,
        actor: Officer,
        key: IdempotencyKey,
        response: Response,
        if_match: IfMatch = None,
    ) -> schemas.TransitionOut:
        """PENDING_REVIEW -> CANCELLED, with a reason."""
        version = expected_version(if_match, body)
        return _transition(
            engine,
            response,
            actor,
            commitment_id,
            Event.REJECT,
            key=key,
            version=version,
            reason=body.reason,
        )

    @app.post(
        f"{API_PREFIX}/review/{{commitment_id}}/request-info",
        response_model=schemas.TransitionOut,
        responses=WRITE_ERRORS,
        tags=["compliance officer"],
    )
    def request_info(
        *,
        commitment_id: UUID,
        body: schemas.ReasonBody,
        engine: EngineDep,
        actor: Officer,
        key: IdempotencyKey,
        response: Response,
        if_match: IfMatch = None,
    ) -> schemas.TransitionOut:
        """PENDING_REVIEW -> DRAFT, with what the allocator must supply."""
        version = expected_version(if_match, body)
        return _transition(
            engine,
            response,
            actor,
            commitment_id,
            Event.REQUEST_INFO,
            key=key,
            version=version,
            reason=body.reason,
        )

    @app.get(
        f"{API_PREFIX}/commitments/{{commitment_id}}/audit",
        response_model=list[schemas.AuditEntryOut],
        responses=READ_ERRORS,
        tags=["auditor"],
    )
    def commitment_audit(
        commitment_id: UUID, engine: EngineDep, actor: Reader
    ) -> list[schemas.AuditEntryOut]:
        """A commitment's audit chain, oldest entry first."""
        record = engine.commitments.get(commitment_id)
        own_or_forbidden(actor, record.owner_party)
        return [schemas.AuditEntryOut.of(e) for e in engine.commitments.audit_trail(commitment_id)]

    @app.get(
        f"{API_PREFIX}/audit/verify",
        response_model=schemas.VerifyOut,
        responses=READ_ERRORS,
        tags=["auditor"],
    )
    def audit_verify(
        engine: EngineDep,
        ops: OpsDep,
        actor: Verifier,
        ledgers: Annotated[
            bool,
            Query(description="Also check every ledger reference against its ledger"),
        ] = False,
    ) -> schemas.VerifyOut:
        """Recompute every audit chain; with ``ledgers=true`` also check that every
        ledger reference is a validated transaction with the recorded ledger hash (503
        when this process has no ledgers)."""
        check = ledger_ref_checker(ops.require_ledgers().chains) if ledgers else None
        report = engine.commitments.verify_audit(check_ledger_ref=check)
        return schemas.VerifyOut.model_validate(report.as_dict())


# -- errors -----------------------------------------------------------------------------


def _problem(
    code: str,
    status: int,
    detail: str,
    request: Request,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        content=problems.body(code, status, detail, instance=request.url.path, extra=extra),
        status_code=status,
        media_type=problems.MEDIA_TYPE,
        headers=headers,
    )


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(problems.ApiProblem)
    async def api_problem(request: Request, exc: problems.ApiProblem) -> Response:
        return _problem(exc.code, exc.status, exc.detail, request, headers=exc.headers)

    @app.exception_handler(errors.SettlementError)
    async def engine_error(request: Request, exc: errors.SettlementError) -> Response:
        headers = {"Retry-After": "1"} if isinstance(exc, errors.RequestInFlight) else None
        return _problem(exc.code, exc.http_status, str(exc), request, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        unparsed = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if unparsed:
            why = unparsed[0].get("ctx", {}).get("error", "")
            detail = f"the body is not valid JSON: {why}" if why else "the body is not valid JSON"
            return _problem("malformed_body", 400, detail, request)
        found = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in found)
        return _problem("validation_failed", 422, detail, request, extra={"errors": found})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _problem(
            code or f"http_{exc.status_code}", exc.status_code, str(exc.detail), request
        )

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        return _problem("internal_error", 500, "internal error", request)


# -- OpenAPI ----------------------------------------------------------------------------

_SIGNATURE_DOC = (
    'RFC 9421 HTTP Message Signature with Ed25519 over ("@method" "@target-uri" '
    '"content-digest") with parameters created, nonce, keyid and alg="ed25519"; send '
    "Signature-Input, Signature and Content-Digest (RFC 9530, sha-256 of the body, also "
    "of an empty one). created must be within 300 s of the server's clock and a nonce "
    "is accepted once per key."
)


def _is_problem(response: dict[str, Any]) -> bool:
    """Whether a documented error response is a problem (every one but readiness's
    503, which answers its checks)."""
    schemas_of = [c.get("schema", {}) for c in response.get("content", {}).values()]
    return not any(
        s.get("$ref", "").endswith("/ReadyOut") for s in schemas_of if isinstance(s, dict)
    )


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = document.setdefault("components", {})
        components.setdefault("securitySchemes", {})["httpMessageSignature"] = {
            "type": "apiKey",
            "in": "header",
            "name": "Signature",
            "description": _SIGNATURE_DOC,
        }
        schemas_doc = components.setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas_doc.pop(name, None)
        problem_ref = {"$ref": "#/components/schemas/Problem"}
        for path, operations in document.get("paths", {}).items():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if status.isdigit() and int(status) >= 400 and _is_problem(response):
                        response["content"] = {problems.MEDIA_TYPE: {"schema": problem_ref}}
                if path not in PUBLIC_PATHS:
                    operation["security"] = [{"httpMessageSignature": []}]
        app.openapi_schema = document
        return document

    return build


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


def create_app(
    engine: bootstrap.Engine,
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
    operations_state = Operations(
        ledgers=ledgers,
        board=BreakerBoard(engine.db, engine.clock),
        metrics=ApiMetrics(engine.db, multiprocess=multiprocess_metrics),
        scope=scope or default_scope(),
        readiness_timeout_s=readiness_timeout_s,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        publisher = None
        if ledgers is not None:
            publisher = asyncio.create_task(
                operation_routes.publish_forever(operations_state, publish_breakers_every_s)
            )
        try:
            yield
        finally:
            if publisher is not None:
                publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publisher

    app = FastAPI(
        title="Settlement engine API",
        version="1",
        description="Signed API of the multi-leg settlement engine. Every route under /v1 "
        "is signed (RFC 9421, Ed25519); /health, /healthz, /readyz and /metrics are not. "
        "Errors are RFC 9457 problem+json; mutating routes need an Idempotency-Key, and "
        "transitions the expected version.",
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.operations = operations_state
    keys = KeyService(engine.db, engine.clock)
    # added first, so inside the guard: a request is authenticated before anything
    # else about it is refused, as the guard refuses everything else
    app.add_middleware(RefuseControlCharacters)
    app.add_middleware(
        Guard,
        keys=keys,
        db=engine.db,
        clock=engine.clock,
        max_body_bytes=max_body_bytes,
        public_paths=PUBLIC_PATHS,
        public_prefixes=(CONSOLE_PREFIX,) if console is not None else (),
    )
    # before any route exists: each takes the router's route class when it is added
    app.router.route_class = StrictJsonRoute
    _routes(app)
    app.include_router(settlements.router)
    app.include_router(parties.router)
    app.include_router(operation_routes.router)
    app.add_middleware(NotFramed, paths=DOCUMENT_PAGES)
    # added last, so outermost: it sees the guard's refusals (401, 413) too
    app.add_middleware(
        RequestMetrics, metrics=operations_state.metrics, routes=list(api_routes(app.routes))
    )
    if console is not None:
        install_console(
            app,
            engine,
            secure_cookies=console.secure_cookies,
            explorer_urls=console.explorer_urls,
            sign_in_secret=console.sign_in_secret,
        )
    _error_handlers(app)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app
