"""The review queue: what compliance officers read and decide.

Only compliance officers call these routes. Whether an officer may decide (an active
registered officer, not the submitter, not twice in a round, a senior override for a
hard fail) is the service's and the database's to decide; a refusal comes back as the
engine error it is.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response

from settlement.api import schemas
from settlement.api.deps import (
    API_PREFIX,
    READ_ERRORS,
    WRITE_ERRORS,
    EngineDep,
    IdempotencyKey,
    IfMatch,
    Officer,
    etag,
    expected_version,
    transition,
)
from settlement.api.strict import StrictJsonRoute
from settlement.domain.states import Event

router = APIRouter(route_class=StrictJsonRoute)
REVIEW = f"{API_PREFIX}/review/{{commitment_id}}"


@router.get(
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


@router.get(
    REVIEW,
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


@router.post(
    f"{REVIEW}/approve",
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
    return transition(
        engine,
        response,
        actor,
        commitment_id,
        Event.APPROVE,
        key=key,
        version=version,
        override_reason=body.override_reason if body else None,
    )


@router.post(
    f"{REVIEW}/reject",
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
    return transition(
        engine,
        response,
        actor,
        commitment_id,
        Event.REJECT,
        key=key,
        version=version,
        reason=body.reason,
    )


@router.post(
    f"{REVIEW}/request-info",
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
    return transition(
        engine,
        response,
        actor,
        commitment_id,
        Event.REQUEST_INFO,
        key=key,
        version=version,
        reason=body.reason,
    )
