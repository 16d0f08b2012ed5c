"""A party's balances beside its ledgers, and its statement of a period.

Staff (compliance officers, admins, auditors) read any party; an allocator its own
party alone. Balances ask this process's ledgers; without them (or with one down) each
position's ledger side says ``unavailable`` and its figures are null, never 0.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from settlement.api import position_schemas as out
from settlement.api.deps import API_PREFIX, READ_ERRORS, EngineDep, OpsDep, Reader, own_or_forbidden
from settlement.api.strict import StrictJsonRoute

router = APIRouter(route_class=StrictJsonRoute)
PARTY = f"{API_PREFIX}/parties/{{party}}"

_CSV: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The statement: JSON by default; with format=csv, text/csv with the "
        f"columns {', '.join(out.CSV_COLUMNS)}; per asset an opening row, the legs, a "
        "closing row (opening + the legs' signed_amount = closing)",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


@router.get(
    f"{PARTY}/balances",
    response_model=out.BalancesOut,
    responses=READ_ERRORS,
    tags=["allocator"],
)
def balances(party: str, engine: EngineDep, ops: OpsDep, actor: Reader) -> out.BalancesOut:
    """Per registered ledger account and asset: what the ledger holds, what the party's
    open settlements have locked and committed, what is available (held - committed),
    and any break between the ledger's locks and the engine's records; totals per
    currency also count VERIFIED commitments not yet instructed. A ledger that cannot
    be asked shows as unavailable (figures null), not as zero."""
    own_or_forbidden(actor, party, "party")
    chains = ops.ledgers.chains if ops.ledgers is not None else {}
    return out.BalancesOut.of(engine.positions.balances(actor, party, chains))


@router.get(
    f"{PARTY}/statement",
    response_model=out.StatementOut,
    responses={**READ_ERRORS, **_CSV},
    tags=["allocator"],
)
def statement(
    *,
    party: str,
    engine: EngineDep,
    actor: Reader,
    since: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=40,
            description="Start, inclusive: an ISO-8601 time with its zone, or a date "
            "(midnight UTC). Required.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            alias="to",
            max_length=40,
            description="End, exclusive, as from; at most 366 days after it. Required.",
        ),
    ] = None,
    as_format: Annotated[
        Literal["json", "csv"], Query(alias="format", description="json (default) or csv")
    ] = "json",
) -> Any:
    """Each settled leg of the party in [from, to) with amounts, times, the applied
    transactions' hashes and ledger hashes, and per asset the opening and closing
    positions in the engine's books (net of the party's settled legs before from and
    before to). A missing, malformed, reversed or over-long period is 422
    invalid_period."""
    own_or_forbidden(actor, party, "party")
    found = engine.positions.statement(actor, party, since, until)
    if as_format == "csv":
        return Response(out.statement_csv(found), media_type="text/csv; charset=utf-8")
    return out.StatementOut.of(found)
