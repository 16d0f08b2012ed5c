"""What every route module shares: dependencies (engine, actor, roles, ledgers),
header types, the problem responses documented per route, and small helpers.

A role check here is function-level authorisation; object-level checks (an allocator
and its own party) are ``own_or_forbidden`` in the routes, and the services check again.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Header, Request, Response

from adapters.chain import ChainName
from adapters.resilience import ChainGuard
from settlement import bootstrap
from settlement.api import problems, schemas
from settlement.api.metrics import ApiMetrics
from settlement.breakers import BreakerBoard
from settlement.domain.states import Event
from settlement.domain.values import Actor, Role

API_PREFIX = "/v1"
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

_DESCRIPTIONS = {
    400: "Malformed header, body, cursor or missing Idempotency-Key",
    401: "Missing or bad signature, digest mismatch, stale created, reused nonce, "
    "unknown or revoked key",
    403: "The key's role or party may not do this",
    404: "No such commitment, settlement or party",
    409: "Stale version, transition not allowed, or the same key in flight",
    413: "Body over the size limit",
    422: "Schema violation, invalid value, or idempotency key reused",
    428: "No expected version given",
    503: "The database or a ledger is unavailable, or no ledgers are configured",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": schemas.Problem, "description": _DESCRIPTIONS[s]} for s in statuses}


READ_ERRORS = problem_responses(400, 401, 403, 404, 413, 422, 503)
WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 413, 422, 428, 503)


@dataclass
class Operations:
    """The API process's own operational parts: its ledgers (optional), the shared
    breaker board, its metrics, and the scope it publishes its breakers under."""

    ledgers: bootstrap.Ledgers | None
    board: BreakerBoard
    metrics: ApiMetrics
    scope: str
    readiness_timeout_s: float

    @property
    def guards(self) -> dict[ChainName, ChainGuard]:
        return dict(self.ledgers.guards) if self.ledgers is not None else {}

    def require_ledgers(self) -> bootstrap.Ledgers:
        if self.ledgers is None:
            raise problems.ApiProblem(
                "ledgers_unavailable", "this API process has no ledgers configured"
            )
        return self.ledgers

    def publish_breakers(self) -> list[ChainName]:
        """Publish this process's breakers (applying pending resets); none without ledgers."""
        if self.ledgers is None:
            return []
        return self.board.publish(self.scope, self.ledgers.guards)


# The dependencies below only read what the app or the guard already holds, so they are
# coroutines: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hand-off
# (and a turn at the GIL) per dependency per request, for a few attribute reads.


async def engine_of(request: Request) -> bootstrap.Services:
    engine = request.app.state.engine
    assert isinstance(engine, bootstrap.Services)
    return engine


async def operations_of(request: Request) -> Operations:
    ops = request.app.state.operations
    assert isinstance(ops, Operations)
    return ops


async def current_actor(request: Request) -> Actor:
    actor = getattr(request.state, "actor", None)
    assert isinstance(actor, Actor), "the guard sets the actor of every signed route"
    return actor


def require(*roles: Role) -> Callable[[Actor], Awaitable[Actor]]:
    allowed = frozenset(roles)
    names = ", ".join(sorted(r.value for r in allowed))

    async def dependency(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
        if actor.role not in allowed:
            raise problems.ApiProblem(
                "forbidden", f"this route is for {names}; key {actor.id} acts as {actor.role}"
            )
        return actor

    return dependency


EngineDep = Annotated[bootstrap.Services, Depends(engine_of)]
OpsDep = Annotated[Operations, Depends(operations_of)]
Allocator = Annotated[Actor, Depends(require(Role.ALLOCATOR))]
Officer = Annotated[Actor, Depends(require(Role.COMPLIANCE_OFFICER))]
Admin = Annotated[Actor, Depends(require(Role.ADMIN))]
Reader = Annotated[
    Actor,
    Depends(require(Role.ALLOCATOR, Role.COMPLIANCE_OFFICER, Role.ADMIN, Role.AUDITOR)),
]
Verifier = Annotated[Actor, Depends(require(Role.AUDITOR, Role.ADMIN))]
AllocatorOrAdmin = Annotated[Actor, Depends(require(Role.ALLOCATOR, Role.ADMIN))]
Staff = Annotated[Actor, Depends(require(Role.COMPLIANCE_OFFICER, Role.ADMIN, Role.AUDITOR))]


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


def own_or_forbidden(actor: Actor, owner_party: str, what: str = "commitment") -> None:
    """An allocator acts only for its own party (object-level authorisation)."""
    if actor.role is Role.ALLOCATOR and owner_party != actor.party:
        raise problems.ApiProblem(
            "forbidden", f"key {actor.id} acts for {actor.party}, not for this {what}'s party"
        )


def etag(version: int) -> str:
    return f'"{version}"'


def transition(
    engine: bootstrap.Services,
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
    """Apply ``event`` to the commitment as ``actor`` and answer its new version as
    the ETag. Whether the event may happen is the service's to decide (and raise)."""
    result = engine.commitments.apply(
        actor,
        commitment_id,
        event,
        expected_version=version,
        reason=reason,
        idempotency_key=key,
        override_reason=override_reason,
    )
    response.headers["ETag"] = etag(result.version)
    return schemas.TransitionOut.of(result)
