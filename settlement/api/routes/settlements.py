"""Commitment lists, settlements (fund, read, force-cancel, retry, resolve) and a
commitment's ledger references.

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
from settlement.domain.states import State
from settlement.domain.values import Role
from settlement.dvp import LegInstruction
from settlement.services.translate import translated

router = APIRouter(route_class=StrictJsonRoute)
SETTLEMENT_WRITE_ERRORS = {**WRITE_ERRORS, **problem_responses(503)}


@router.get(
    f"{API_PREFIX}/commitments",
    response_model=schemas.CommitmentPage,
    responses=READ_ERRORS,
    tags=["allocator"],
)
def list_commitments(
    *,
    engine: EngineDep,
    actor: Reader,
    state: Annotated[State | None, Query(description="Only commitments in this state")] = None,
    party: Annotated[
        str | None,
        Query(max_length=200, description="Owning party; an allocator may name only its own"),
    ] = None,
    deal_ref: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> schemas.CommitmentPage:
    """Commitments oldest first, a page at a time (keyset on created_at and id).

    An allocator sees only its own party's: without ``party`` the list is filtered to
    it, and naming another party is 403.
    """
    if actor.role is Role.ALLOCATOR:
        if party is not None:
            own_or_forbidden(actor, party)
        party = actor.party
    page = reads.commitment_page(
        engine.db,
        state=state.value if state is not None else None,
        party=party,
        deal_ref=deal_ref,
        limit=limit,
        cursor=cursor,
    )
    return schemas.CommitmentPage(
        items=[schemas.CommitmentOut.of(r) for r in page.items], next_cursor=page.next_cursor
    )


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


@router.get(
    f"{API_PREFIX}/commitments/{{commitment_id}}/ledger-references",
    response_model=list[schemas.LedgerRefOut],
    responses=READ_ERRORS,
    tags=["auditor"],
)
def ledger_references(
    commitment_id: UUID, engine: EngineDep, actor: Reader
) -> list[schemas.LedgerRefOut]:
    """Every audit entry of the commitment that names a ledger transaction."""
    own_or_forbidden(actor, engine.commitments.get(commitment_id).owner_party)
    return [
        schemas.LedgerRefOut(
            seq=e.seq,
            action=e.action,
            recorded_at=e.recorded_at,
            chain=e.chain,
            tx_hash=e.tx_hash,
            ledger_index=e.ledger_index,
            ledger_hash=e.ledger_hash,
        )
        for e in engine.commitments.audit_trail(commitment_id)
        if e.chain is not None and e.tx_hash is not None
    ]
