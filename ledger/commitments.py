"""Commitment records: the SQL behind every commitment write and read.

Writes go through the server-side functions of migration 0001 (``commitment_create``,
``commitment_transition``), one round trip each; the database checks the version, the
guards and the transition table, and writes history, audit and idempotency rows in the
same transaction. This module knows nothing of who may do what: ``settlement`` decides
that and passes the guard values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from ledger.database import Database
from ledger.errors import RecordNotFound, translate


@dataclass(frozen=True)
class CommitmentRecord:
    id: UUID
    owner_party: str
    deal_ref: str
    amount: Decimal
    currency: str
    state: str
    last_event: str
    version: int
    created_by: str
    submitted_by: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class HistoryRow:
    version: int
    from_state: str | None
    to_state: str
    event: str
    actor: str
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class WriteResult:
    """What a create or transition did; ``replayed`` when an idempotency key matched."""

    commitment_id: UUID
    event: str
    from_state: str | None
    to_state: str
    version: int
    audit_seq: int
    entry_hash: str
    replayed: bool

    @classmethod
    def from_response(cls, response: dict[str, Any], replayed: bool) -> WriteResult:
        return cls(
            commitment_id=UUID(response["commitment_id"]),
            event=response["event"],
            from_state=response["from_state"],
            to_state=response["to_state"],
            version=int(response["version"]),
            audit_seq=int(response["audit_seq"]),
            entry_hash=response["entry_hash"],
            replayed=replayed,
        )


@dataclass(frozen=True)
class LedgerRef:
    """Where a ledger transaction that caused an audit entry landed."""

    chain: str
    tx_hash: str
    ledger_index: int | None = None
    ledger_hash: str | None = None


_COLUMNS = (
    "id, owner_party, deal_ref, amount, currency, state, last_event, version, created_by,"
    " submitted_by, created_at, updated_at, expires_at"
)


def load(connection: Connection, commitment_id: UUID) -> CommitmentRecord:
    try:
        row = connection.execute(
            text(f"SELECT {_COLUMNS} FROM commitments WHERE id = :id"), {"id": commitment_id}
        ).one_or_none()
    except SQLAlchemyError as exc:
        raise translate(exc) from exc
    if row is None:
        raise RecordNotFound(f"commitment {commitment_id} not found")
    return CommitmentRecord(*row)


#: ``load`` as one statement that always answers one row (``Database.call_one_async``
#: expects one): the commitment's columns, all NULL when there is none (``id`` is never
#: NULL in a row that exists)
_LOAD_ONE = (
    "SELECT "
    + ", ".join(f"c.{name.strip()}" for name in _COLUMNS.split(","))
    + " FROM (SELECT 1) AS one LEFT JOIN commitments AS c ON c.id = %(id)s"
)


async def load_async(db: Database, commitment_id: UUID) -> CommitmentRecord:
    """``load`` on the running event loop, outside any unit of work: the same record,
    or ``RecordNotFound``; errors translated as ``Database.call_one_async`` does."""
    row = await db.call_one_async(_LOAD_ONE, {"id": commitment_id})
    if row[0] is None:
        raise RecordNotFound(f"commitment {commitment_id} not found")
    return CommitmentRecord(*row)


def list_records(
    connection: Connection, *, state: str | None = None, limit: int = 100
) -> list[CommitmentRecord]:
    try:
        rows = connection.execute(
            text(
                f"SELECT {_COLUMNS} FROM commitments"
                " WHERE (CAST(:state AS text) IS NULL OR state = :state)"
                " ORDER BY created_at DESC, id LIMIT :limit"
            ),
            {"state": state, "limit": limit},
        )
        return [CommitmentRecord(*row) for row in rows]
    except SQLAlchemyError as exc:
        raise translate(exc) from exc


def expired(
    connection: Connection, *, now: datetime, limit: int
) -> list[tuple[UUID, int, datetime]]:
    """Commitments past their expiry that are not settling: (id, version, expires_at)."""
    try:
        rows = connection.execute(
            text(
                "SELECT c.id, c.version, c.expires_at FROM commitments c"
                " WHERE c.state IN ('DRAFT', 'PENDING_REVIEW', 'VERIFIED')"
                "   AND c.expires_at <= :now"
                "   AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.commitment_id = c.id"
                "                   AND s.status IN ('LOCKING', 'COMMITTING', 'UNWINDING'))"
                " ORDER BY c.expires_at LIMIT :limit"
            ),
            {"now": now, "limit": limit},
        )
        return [(row[0], row[1], row[2]) for row in rows]
    except SQLAlchemyError as exc:
        raise translate(exc) from exc


def history(connection: Connection, commitment_id: UUID) -> list[HistoryRow]:
    try:
        rows = connection.execute(
            text(
                "SELECT version, from_state, to_state, event, actor, reason, at"
                " FROM state_transitions WHERE commitment_id = :id ORDER BY version"
            ),
            {"id": commitment_id},
        )
        return [HistoryRow(*row) for row in rows]
    except SQLAlchemyError as exc:
        raise translate(exc) from exc
