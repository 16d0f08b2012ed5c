"""Read-only views the console shows beside the services' own reads: a commitment's
settlement legs and the latest ledger references of the audit log.

Nothing here writes or decides; it only gathers rows for display.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import text

from ledger import settlements as records
from ledger.database import Database
from ledger.settlements import SettlementDetail
from settlement.services.translate import translated


@dataclass(frozen=True)
class LedgerRefView:
    commitment_id: UUID
    seq: int
    recorded_at: datetime
    action: str
    chain: str
    tx_hash: str
    ledger_index: int | None
    ledger_hash: str | None


def settlements_of(db: Database, commitment_id: UUID) -> list[SettlementDetail]:
    """Every settlement of a commitment with its legs and ledger submissions."""
    with translated(), db.unit_of_work() as uow:
        return records.details_of(uow, commitment_id)


def recent_ledger_refs(db: Database, *, limit: int = 50) -> list[LedgerRefView]:
    """The latest audit entries that name a ledger transaction, newest first."""
    with translated(), db.unit_of_work() as uow:
        rows = uow.connection.execute(
            text(
                "SELECT commitment_id, seq, recorded_at, action, chain, tx_hash, ledger_index,"
                " ledger_hash FROM audit_log WHERE tx_hash IS NOT NULL"
                " ORDER BY recorded_at DESC, commitment_id, seq DESC LIMIT :limit"
            ),
            {"limit": limit},
        )
        return [LedgerRefView(*tuple(row)) for row in rows]
