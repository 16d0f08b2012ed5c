"""Settlements: fund a commitment, read its settlement, list them, and an admin's
force-cancel, retry and resolve.

Instructing a settlement needs this process's ledgers (the coordinator validates every
leg on its ledger before anything is written); without them the route answers 503
``ledgers_unavailable``. Driving the settlement is the workers' job.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response

from adapters.chain import Asset, ChainName
from settlement.api import reads, schemas
from settlement.api.deps import (
    API_PREFIX,
    READ_ERRORS,
    WRITE_ERRORS,
    Admin,
    AllocatorOrAdmin,
    EngineDep,
    IdempotencyKey,
    OpsDep,
    Reader,
    Verifier,
    own_or_forbidden,
    problem_responses,
)
from settlement.api.strict import StrictJsonRoute
from settlement.domain import errors
from settlement.dvp import LegInstruction
from settlement.services.translate import translated

router = APIRouter(route_class=StrictJsonRoute)
SETTLEMENT_WRITE_ERRORS = {**WRITE_ERRORS, **problem_responses(503)}


@router.post(
    f"{API_PREFIX}/commitments/{{commitment_id}}/settlement",
    status_code=202,
    response_model=schemas.SettlementOut,
    responses=SETTLEMENT_WRITE_ERRORS,
    tags=["allocator"],
)
def start_settlement(
    *,
    commitment_id: UUID,
    body: schemas.SettlementCreate,
    engine: EngineDep,
    ops: OpsDep,
    actor: AllocatorOrAdmin,
    key: IdempotencyKey,
    response: Response,
) -> schemas.SettlementOut:
    """Fund a VERIFIED commitment: attach its settlement instruction (202; workers lock
    and settle the legs). Every leg is checked on its ledger first; nothing is written
    when one fails (422)."""
    # who may act is told before whether this process can: 404 and 403 come before 503
    own_or_forbidden(actor, engine.commitments.get(commitment_id).owner_party)
    ledgers = ops.require_ledgers()
    legs = [
        LegInstruction(
            chain=ChainName(leg.chain),
            asset=Asset(leg.asset.code, leg.asset.issuer),
            amount=schemas.decimal_of(leg.amount),
            sender=leg.sender,
            receiver=leg.receiver,
            kind=leg.kind,
        )
        for leg in body.legs
    ]
    settlement_id = ledgers.coordinator.instruct(
        actor,
        commitment_id,
        legs,
        commit_deadline=body.commit_deadline,
        settle_not_before=body.settle_not_before,
    )
    response.headers["Location"] = f"{API_PREFIX}/commitments/{commitment_id}/settlement"
    return schemas.SettlementOut.full(reads.settlement(engine.db, settlement_id))


@router.get(
    f"{API_PREFIX}/commitments/{{commitment_id}}/settlement",
    response_model=schemas.SettlementOut,
    responses=READ_ERRORS,
    tags=["allocator"],
)
def get_settlement(commitment_id: UUID, engine: EngineDep, actor: Reader) -> schemas.SettlementOut:
    """The commitment's latest settlement: legs and every ledger submission (tx hash,
    ledger index and hash, outcome). 404 when it has none."""
    own_or_forbidden(actor, engine.commitments.get(commitment_id).owner_party)
    found = reads.latest_settlement(engine.db, commitment_id)
    if found is None:
        raise errors.SettlementNotFound(f"commitment {commitment_id} has no settlement")
    return schemas.SettlementOut.full(found)


@router.get(
    f"{API_PREFIX}/settlements",
    response_model=list[schemas.SettlementSummaryOut],
    responses=READ_ERRORS,
    tags=["admin"],
)
def list_settlements(
    engine: EngineDep,
    actor: Verifier,
    needs_review: Annotated[bool | None, Query(description="Only flagged (true) or not")] = None,
    status: Annotated[
        str | None,
        Query(pattern="^(LOCKING|COMMITTING|UNWINDING|SETTLED|UNWOUND)$"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> list[schemas.SettlementSummaryOut]:
    """Settlements, newest first; ``needs_review=true`` lists those a person must see."""
    rows = reads.settlements(engine.db, needs_review=needs_review, status=status, limit=limit)
    return [schemas.SettlementSummaryOut.of(r) for r in rows]


@router.post(
    f"{API_PREFIX}/settlements/{{settlement_id}}/force-cancel",
    status_code=202,
    response_model=schemas.SettlementOut,
    responses=SETTLEMENT_WRITE_ERRORS,
    tags=["admin"],
)
def force_cancel(
    *,
    settlement_id: UUID,
    body: schemas.ReasonOnlyBody,
    engine: EngineDep,
    ops: OpsDep,
    actor: Admin,
    key: IdempotencyKey,
) -> schemas.SettlementOut:
    """Ask for a settlement that has not decided COMMIT to be unwound (202: a worker
    unwinds it). 409 once it decided COMMIT or closed."""
    reads.settlement(engine.db, settlement_id)  # 404 before anything else
    ledgers = ops.require_ledgers()
    with translated():
        ledgers.coordinator.request_force_cancel(actor, settlement_id, body.reason)
    return schemas.SettlementOut.full(reads.settlement(engine.db, settlement_id))


@router.post(
    f"{API_PREFIX}/settlements/{{settlement_id}}/retry",
    response_model=schemas.SettlementOut,
    responses=WRITE_ERRORS,
    tags=["admin"],
)
def retry_settlement(
    settlement_id: UUID,
    body: schemas.NoteBody,
    engine: EngineDep,
    actor: Admin,
    key: IdempotencyKey,
) -> schemas.SettlementOut:
    """Clear a settlement's review flag and give its legs fresh attempts. 409 if not
    flagged."""
    reads.settlement(engine.db, settlement_id)
    engine.settlements.retry(actor, settlement_id, body.note)
    return schemas.SettlementOut.full(reads.settlement(engine.db, settlement_id))


@router.post(
    f"{API_PREFIX}/settlements/{{settlement_id}}/resolve",
    response_model=schemas.SettlementOut,
    responses=WRITE_ERRORS,
    tags=["admin"],
)
def resolve_settlement(
    settlement_id: UUID,
    body: schemas.NoteBody,
    engine: EngineDep,
    actor: Admin,
    key: IdempotencyKey,
) -> schemas.SettlementOut:
    """Clear a settlement's review flag: it was handled outside the engine (the note says
    how). 409 if not flagged."""
    reads.settlement(engine.db, settlement_id)
    engine.settlements.resolve(actor, settlement_id, body.note)
    return schemas.SettlementOut.full(reads.settlement(engine.db, settlement_id))
