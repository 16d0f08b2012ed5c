"""The FastAPI application: routes that parse, authorise and call the engine's services.

``create_app(engine)`` builds it from the composition root's ``Engine``. No business
rule lives here: transitions, guards and screening are the services' (and the
database's); a route checks only which roles may call it and, for reads, that an
allocator reads its own party's commitments. Every route except ``/health`` and the
OpenAPI documents is behind ``settlement.api.guard`` (signature, size limit,
idempotency).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException

from settlement import bootstrap, errors
from settlement.api import problems, schemas
from settlement.api.guard import Guard
from settlement.api.keys import KeyService
from settlement.domain import Actor, Role
from settlement.states import Event

API_PREFIX = "/v1"
DEFAULT_MAX_BODY_BYTES = 64 * 1024
PUBLIC_PATHS = ("/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
_IF_MATCH = re.compile(r'"([1-9][0-9]{0,9})"')

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Chosen by the client; a retry with the same key and request replays "
        "the stored response (DESIGN 6).",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description='The version read, as an ETag: "3"'),
]


def _problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Malformed header, body or missing Idempotency-Key",
        401: "Missing or bad signature, digest mismatch, stale created, reused nonce, "
        "unknown or revoked key",
        403: "The key's role or party may not do this",
        404: "No such commitment",
        409: "Stale version, transition not allowed, or the same key in flight",
        413: "Body over the size limit",
        422: "Schema violation, invalid value, or idempotency key reused",
        428: "No expected version given",
        503: "The database is unavailable",
    }
    return {s: {"model": schemas.Problem, "description": descriptions[s]} for s in statuses}


READ_ERRORS = _problem_responses(400, 401, 403, 404, 413, 422, 503)
WRITE_ERRORS = _problem_responses(400, 401, 403, 404, 409, 413, 422, 428, 503)


# -- dependencies -----------------------------------------------------------------------


def engine_of(request: Request) -> bootstrap.Engine:
    engine = request.app.state.engine
    assert isinstance(engine, bootstrap.Engine)
    return engine


def current_actor(request: Request) -> Actor:
    actor = getattr(request.state, "actor", None)
    assert isinstance(actor, Actor), "the guard sets the actor of every signed route"
    return actor


def require(*roles: Role) -> Callable[[Actor], Actor]:
    allowed = frozenset(roles)
    names = ", ".join(sorted(r.value for r in allowed))

    def dependency(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
        if actor.role not in allowed:
            raise problems.ApiProblem(
                "forbidden", f"this route is for {names}; key {actor.id} acts as {actor.role}"
            )
        return actor

    return dependency


EngineDep = Annotated[bootstrap.Engine, Depends(engine_of)]
Allocator = Annotated[Actor, Depends(require(Role.ALLOCATOR))]
Officer = Annotated[Actor, Depends(require(Role.COMPLIANCE_OFFICER))]
Reader = Annotated[
    Actor,
    Depends(require(Role.ALLOCATOR, Role.COMPLIANCE_OFFICER, Role.ADMIN, Role.AUDITOR)),
]
Verifier = Annotated[Actor, Depends(require(Role.AUDITOR, Role.ADMIN))]


def expected_version(if_match: str | None, body: schemas.VersionedBody | None) -> int:
    """The version the caller read: If-Match or the body's field (equal if both)."""
    from_header: int | None = None
    if if_match is not None:
        found = _IF_MATCH.fullmatch(if_match.strip())
        if found is None:
            raise problems.ApiProblem("invalid_header", 'If-Match must be one ETag: "<version>"')
        from_header = int(found.group(1))
    from_body = body.expected_version if body is not None else None
    if from_header is not None and from_body is not None and from_header != from_body:
        raise problems.ApiProblem(
            "invalid_header", "If-Match and expected_version name different versions"
        )
    version = from_header if from_header is not None else from_body
    if version is None:
        raise problems.ApiProblem(
            "precondition_required", 'send the version you read as If-Match: "<version>"'
        )
    return version


def _own_or_forbidden(actor: Actor, owner_party: str) -> None:
    if actor.role is Role.ALLOCATOR and owner_party != actor.party:
        raise problems.ApiProblem(
            "forbidden", f"key {actor.id} acts for {actor.party}, not for this commitment's party"
        )


def _etag(version: int) -> str:
    return f'"{version}"'


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
    response.headers["ETag"] = _etag(result.version)
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
        response.headers["ETag"] = _etag(result.version)
        response.headers["Location"] = f"{API_PREFIX}/commitments/{result.commitment_id}"
        return schemas.TransitionOut.of(result)

    @app.get(
        f"{API_PREFIX}/commitments/{{commitment_id}}",
        response_model=schemas.CommitmentOut,
        responses=READ_ERRORS,
        tags=["allocator"],
    )
    def get_commitment(
        commitment_id: UUID, engine: EngineDep, actor: Reader, response: Response
    ) -> schemas.CommitmentOut:
        """One commitment; its ETag is its version."""
        record = engine.commitments.get(commitment_id)
        _own_or_forbidden(actor, record.owner_party)
        response.headers["ETag"] = _etag(record.version)
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
        response.headers["ETag"] = _etag(detail.commitment.version)
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
        _own_or_forbidden(actor, record.owner_party)
        return [schemas.AuditEntryOut.of(e) for e in engine.commitments.audit_trail(commitment_id)]

    @app.get(
        f"{API_PREFIX}/audit/verify",
        response_model=schemas.VerifyOut,
        responses=READ_ERRORS,
        tags=["auditor"],
    )
    def audit_verify(engine: EngineDep, actor: Verifier) -> schemas.VerifyOut:
        """Recompute every audit chain (ledger references are not yet checked here)."""
        return schemas.VerifyOut.model_validate(engine.commitments.verify_audit().as_dict())


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
        return _problem(exc.code, problems.status_of(exc), str(exc), request, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        found = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in found):
            return _problem("malformed_body", 400, "the body is not valid JSON", request)
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
                    if status.isdigit() and int(status) >= 400:
                        response["content"] = {problems.MEDIA_TYPE: {"schema": problem_ref}}
                if path not in PUBLIC_PATHS:
                    operation["security"] = [{"httpMessageSignature": []}]
        app.openapi_schema = document
        return document

    return build


def create_app(
    engine: bootstrap.Engine, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    """The API over ``engine``. The caller owns the engine (and closes it)."""
    app = FastAPI(
        title="Settlement engine API",
        version="1",
        description="Signed API of the multi-leg settlement engine. Every route but "
        "/health is signed (RFC 9421, Ed25519); errors are RFC 9457 problem+json; "
        "mutating routes need an Idempotency-Key and the expected version.",
    )
    app.state.engine = engine
    keys = KeyService(engine.db, engine.clock)
    app.add_middleware(
        Guard,
        keys=keys,
        db=engine.db,
        clock=engine.clock,
        max_body_bytes=max_body_bytes,
        public_paths=PUBLIC_PATHS,
    )
    _routes(app)
    _error_handlers(app)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app
