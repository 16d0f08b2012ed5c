"""The API's read models: the paginated commitment list and settlement views.

Keyset pagination walks commitments in (created_at, id) order, oldest first; the cursor
is the last row's key, encoded opaquely. Rows inserted while a client pages never shift
the rows it has not read yet, so a walk sees every row that existed when it started
exactly once (new rows appear at the end).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from ledger import commitments
from ledger import settlements as settlement_records
from ledger.commitments import CommitmentRecord
from ledger.database import Database
from ledger.errors import RecordNotFound
from ledger.settlements import SettlementDetail, SettlementRow
from settlement import strict_json
from settlement.api import problems
from settlement.services.translate import translated


@dataclass(frozen=True)
class Page:
    items: list[CommitmentRecord]
    next_cursor: str | None


def encode_cursor(created_at: datetime, commitment_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(commitment_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The key a cursor names; ``invalid_cursor`` (400) for anything this API did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_text, id_text = strict_json.loads(raw)
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None:
            raise ValueError("naive time")
        return at, UUID(id_text)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise problems.ApiProblem("invalid_cursor", f"cursor {cursor[:40]!r} is not valid") from exc


def commitment_page(
    db: Database,
    *,
    state: str | None,
    party: str | None,
    deal_ref: str | None,
    limit: int,
    cursor: str | None,
) -> Page:
    after = decode_cursor(cursor) if cursor is not None else None
    with translated(), db.unit_of_work() as uow:
        # one row beyond the page says whether there is a next one
        rows = commitments.page(
            uow, state=state, party=party, deal_ref=deal_ref, after=after, limit=limit + 1
        )
    if len(rows) <= limit:
        return Page(rows, None)
    last = rows[limit - 1]
    return Page(rows[:limit], encode_cursor(last.created_at, last.id))


def latest_settlement(db: Database, commitment_id: UUID) -> SettlementDetail | None:
    with translated(), db.unit_of_work() as uow:
        found = settlement_records.settlements_of(uow, commitment_id)
        return settlement_records.detail(uow, found[-1]) if found else None


def settlement(db: Database, settlement_id: UUID) -> SettlementDetail:
    """One settlement with its legs and submissions; ``settlement_not_found`` (404)."""
    with translated(), db.unit_of_work() as uow:
        try:
            row = settlement_records.load_settlement(uow, settlement_id)
        except RecordNotFound as exc:
            raise problems.ApiProblem("settlement_not_found", str(exc)) from exc
        return settlement_records.detail(uow, row)


def settlements(
    db: Database, *, needs_review: bool | None, status: str | None, limit: int
) -> list[SettlementRow]:
    """Settlements, newest first, optionally only those flagged or in one status."""
    with translated(), db.unit_of_work() as uow:
        return settlement_records.list_settlements(
            uow, needs_review=needs_review, status=status, limit=limit
        )
