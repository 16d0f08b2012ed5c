"""Read-only views the console shows beside the services' own reads: a commitment's
settlement legs and the latest ledger references of the audit log.

Nothing here writes or decides; it only gathers rows for display.
"""

from __future__ import annotations

from uuid import UUID

from ledger import audit
from ledger import settlements as settlement_records
from ledger.audit import LedgerRefEntry
from ledger.database import Database
from ledger.settlements import SettlementDetail
from settlement.services.translate import translated

#: the name the console's views know an audit entry with a ledger reference by
LedgerRefView = LedgerRefEntry


def settlements_of(db: Database, commitment_id: UUID) -> list[SettlementDetail]:
    """Every settlement of a commitment with its legs and ledger submissions."""
    with translated(), db.unit_of_work() as uow:
        return settlement_records.details_of(uow, commitment_id)


def recent_ledger_refs(db: Database, *, limit: int = 50) -> list[LedgerRefEntry]:
    """The latest audit entries that name a ledger transaction, newest first."""
    with translated(), db.unit_of_work() as uow:
        return audit.recent_ledger_refs(uow, limit=limit)
