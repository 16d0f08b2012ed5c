"""The audit log: a commitment's chain, the entries of it that name a ledger
transaction, and a verification of every chain (and, if asked, of every audit anchor).

A commitment's entries are read by anyone who may read the commitment (an allocator its
own party's only); verifying every chain is for auditors and admins.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from adapters.chain import Anchoring
from settlement import bootstrap
from settlement.api import schemas
from settlement.api.deps import (
    API_PREFIX,
    READ_ERRORS,
    EngineDep,
    Operations,
    OpsDep,
    Reader,
    Verifier,
    own_or_forbidden,
    problem_responses,
)
from settlement.api.strict import StrictJsonRoute
from settlement.dvp.ledger_refs import ledger_ref_checker
from settlement.services.anchors import AnchorReport, verify_anchors
from settlement.services.translate import translated

router = APIRouter(route_class=StrictJsonRoute)
COMMITMENT = f"{API_PREFIX}/commitments/{{commitment_id}}"


@router.get(
    f"{COMMITMENT}/audit",
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


@router.get(
    f"{COMMITMENT}/ledger-references",
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


@router.get(
    f"{API_PREFIX}/audit/verify",
    response_model=schemas.VerifyOut,
    responses={**READ_ERRORS, **problem_responses(503)},
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
    anchors: Annotated[
        bool,
        Query(description="Also recompute every audit anchor and check it on its ledgers"),
    ] = False,
) -> schemas.VerifyOut:
    """Recompute every audit chain; with ``ledgers=true`` also check that every
    ledger reference is a validated transaction with the recorded ledger hash; with
    ``anchors=true`` also recompute every anchored root from the log and check it, and
    the anchor accounts' history, on the ledgers (``anchors`` names the first anchor
    that no longer matches, and the chains that differ). 503 when a ledger is needed
    and this process has none: always for ``ledgers``, for ``anchors`` once an anchor
    exists. ``ok`` is true only when every check asked for passed."""
    check = ledger_ref_checker(ops.require_ledgers().chains) if ledgers else None
    report = engine.commitments.verify_audit(check_ledger_ref=check)
    out = schemas.VerifyOut.model_validate(report.as_dict())
    if not anchors:
        return out
    checked = _verify_anchors(engine, ops)
    return out.model_copy(
        update={
            "ok": out.ok and checked.ok,
            "anchors": schemas.AnchorReportOut.model_validate(checked.as_dict()),
        }
    )


def _verify_anchors(engine: bootstrap.Services, ops: Operations) -> AnchorReport:
    """Every anchor checked on this process's ledgers; without ledgers only when there
    is no anchor yet (an anchor checked on no ledger proves nothing)."""
    chains = {} if ops.ledgers is None else ops.ledgers.chains
    anchoring = {name: c for name, c in chains.items() if isinstance(c, Anchoring)}
    with translated():
        checked = verify_anchors(engine.db, anchoring, bootstrap.anchor_accounts(engine.settings))
    if checked.anchors and ops.ledgers is None:
        ops.require_ledgers()  # raises: the anchors cannot be checked here
    return checked
