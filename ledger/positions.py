"""A party's positions in the engine's books: the SQL behind balances and statements.

Read-only. A party's legs are the settlement legs whose sender or receiver is one of
its registered ledger accounts (``party_accounts``, matched on chain and address); an
account belongs to one party for good, so a leg's party never changes. This module
knows nothing of ledgers or of what the figures mean: ``settlement.services.positions``
defines them.

Times: a settled leg counts from the moment its commitment went ESCROWED -> SETTLED
(its ``state_transitions`` row): one audited instant per settlement, never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from ledger.database import Statements

#: settlement statuses that are not at rest (the funds of their legs may be locked)
_OPEN = "('LOCKING', 'COMMITTING', 'UNWINDING')"


@dataclass(frozen=True)
class AccountAsset:
    """A registered account of the party and an asset it settles (None: no leg yet)."""

    chain: str
    address: str
    asset_code: str | None
    asset_issuer: str | None


@dataclass(frozen=True)
class OpenLeg:
    """A leg of an open settlement that one of the party's accounts sends.

    ``lock_signed``: a lock transaction of the leg is recorded as signed or applied,
    so the ledger may hold its lock before the engine records the leg LOCKED.
    ``release_signed``: likewise a claim, commit or unwind, so the ledger may no
    longer hold the lock while the engine still records the leg LOCKED."""

    chain: str
    sender: str
    asset_code: str
    asset_issuer: str | None
    amount: Decimal
    state: str
    lock_kind: str
    lock_signed: bool
    release_signed: bool


@dataclass(frozen=True)
class UninstructedCommitments:
    """VERIFIED commitments of the party in one currency with no open settlement."""

    currency: str
    amount: Decimal
    count: int


@dataclass(frozen=True)
class SettledLeg:
    """A leg of a SETTLED settlement touching the party, with when it settled."""

    commitment_id: UUID
    settlement_id: UUID
    leg_no: int
    kind: str
    chain: str
    asset_code: str
    asset_issuer: str | None
    amount: Decimal
    sender: str
    receiver: str
    party_sends: bool
    party_receives: bool
    settled_at: datetime
    released_tx_hash: str | None
    released_ledger_index: int | None
    released_ledger_hash: str | None
    released_to: str | None


@dataclass(frozen=True)
class AppliedSubmission:
    """A transaction of a leg that a validated ledger applied, as the engine recorded it."""

    settlement_id: UUID
    leg_no: int
    purpose: str
    tx_hash: str
    ledger_index: int
    ledger_hash: str
    finalized_at: datetime | None


@dataclass(frozen=True)
class NetPosition:
    """What the party's settled legs of one asset added up to: received less sent."""

    chain: str
    asset_code: str
    asset_issuer: str | None
    net: Decimal


def account_assets(uow: Statements, party: str) -> list[AccountAsset]:
    """Each registered account of ``party`` with each asset a leg of it moved on its
    chain (as sender or receiver, in any settlement); an account no leg names yet comes
    once, with no asset. Ordered by chain, address, asset."""
    rows = uow.execute(
        "SELECT a.chain, a.address, l.asset_code, l.asset_issuer"
        " FROM party_accounts a"
        " LEFT JOIN LATERAL ("
        "   SELECT DISTINCT asset_code, asset_issuer FROM settlement_legs l"
        "   WHERE l.chain = a.chain AND (l.sender = a.address OR l.receiver = a.address)"
        " ) l ON true"
        " WHERE a.party = :party"
        " ORDER BY a.chain, a.address, l.asset_code, l.asset_issuer NULLS FIRST",
        {"party": party},
    )
    return [AccountAsset(*tuple(row)) for row in rows]


def open_sent_legs(uow: Statements, party: str) -> list[OpenLeg]:
    """Legs of open settlements sent by an account of ``party``."""
    rows = uow.execute(
        "SELECT l.chain, l.sender, l.asset_code, l.asset_issuer, l.amount, l.state,"
        "  l.lock_kind, EXISTS ("
        "    SELECT 1 FROM ledger_submissions s"
        "    WHERE s.settlement_id = l.settlement_id AND s.leg_no = l.leg_no"
        "      AND s.purpose = 'lock' AND s.status IN ('SIGNED', 'APPLIED')),"
        "  EXISTS ("
        "    SELECT 1 FROM ledger_submissions s"
        "    WHERE s.settlement_id = l.settlement_id AND s.leg_no = l.leg_no"
        "      AND s.purpose <> 'lock' AND s.status IN ('SIGNED', 'APPLIED'))"
        " FROM settlement_legs l"
        " JOIN settlements st ON st.id = l.settlement_id"
        " JOIN party_accounts a ON a.chain = l.chain AND a.address = l.sender"
        f" WHERE a.party = :party AND st.status IN {_OPEN}"
        " ORDER BY l.chain, l.sender, l.settlement_id, l.leg_no",
        {"party": party},
    )
    return [OpenLeg(*tuple(row)) for row in rows]


def uninstructed_commitments(uow: Statements, party: str) -> list[UninstructedCommitments]:
    """Per currency, the VERIFIED commitments of ``party`` that no open settlement
    funds yet (never instructed, or released back to VERIFIED)."""
    rows = uow.execute(
        "SELECT c.currency, sum(c.amount), count(*) FROM commitments c"
        " WHERE c.owner_party = :party AND c.state = 'VERIFIED' AND NOT EXISTS ("
        "   SELECT 1 FROM settlements s"
        f"   WHERE s.commitment_id = c.id AND s.status IN {_OPEN})"
        " GROUP BY c.currency ORDER BY c.currency",
        {"party": party},
    )
    return [UninstructedCommitments(str(c), Decimal(a), int(n)) for c, a, n in rows]


#: the party's legs of SETTLED settlements, with the time each settled. It starts from
#: the party's accounts (indexes ``settlement_legs_by_sender`` / ``_by_receiver``), so
#: it reads the party's legs alone, not every leg ever settled; a leg between two
#: accounts of the party comes once
_SETTLED_LEGS = (
    "WITH mine AS ("
    "   SELECT l.settlement_id, l.leg_no FROM party_accounts a"
    "   JOIN settlement_legs l ON l.chain = a.chain AND l.sender = a.address"
    "   WHERE a.party = :party"
    "   UNION"
    "   SELECT l.settlement_id, l.leg_no FROM party_accounts a"
    "   JOIN settlement_legs l ON l.chain = a.chain AND l.receiver = a.address"
    "   WHERE a.party = :party)"
    " SELECT st.commitment_id, l.settlement_id, l.leg_no, l.kind, l.chain, l.asset_code,"
    "  l.asset_issuer, l.amount, l.sender, l.receiver,"
    "  ps.party IS NOT NULL AS party_sends, pr.party IS NOT NULL AS party_receives,"
    "  t.at AS settled_at, l.released_tx_hash, l.released_ledger_index,"
    "  l.released_ledger_hash, l.released_to"
    " FROM mine"
    " JOIN settlement_legs l ON l.settlement_id = mine.settlement_id AND l.leg_no = mine.leg_no"
    " JOIN settlements st ON st.id = l.settlement_id"
    " JOIN state_transitions t ON t.commitment_id = st.commitment_id AND t.to_state = 'SETTLED'"
    " LEFT JOIN party_accounts ps"
    "   ON ps.chain = l.chain AND ps.address = l.sender AND ps.party = :party"
    " LEFT JOIN party_accounts pr"
    "   ON pr.chain = l.chain AND pr.address = l.receiver AND pr.party = :party"
    " WHERE st.status = 'SETTLED'"
)


def settled_legs(
    uow: Statements, party: str, *, since: datetime, until: datetime
) -> list[SettledLeg]:
    """The party's settled legs with ``since <= settled_at < until``, oldest first."""
    rows = uow.execute(
        f"{_SETTLED_LEGS} AND t.at >= :since AND t.at < :until"
        " ORDER BY t.at, l.settlement_id, l.leg_no",
        {"party": party, "since": since, "until": until},
    )
    return [SettledLeg(*tuple(row)) for row in rows]


def net_positions(uow: Statements, party: str, *, before: datetime) -> list[NetPosition]:
    """Per chain and asset, what the party's legs settled before ``before`` added up
    to: the amounts its accounts received less those they sent."""
    rows = uow.execute(
        "SELECT chain, asset_code, asset_issuer,"
        "  sum(CASE WHEN party_receives THEN amount ELSE 0 END)"
        "  - sum(CASE WHEN party_sends THEN amount ELSE 0 END)"
        f" FROM ({_SETTLED_LEGS} AND t.at < :before) legs"
        " GROUP BY chain, asset_code, asset_issuer"
        " ORDER BY chain, asset_code, asset_issuer NULLS FIRST",
        {"party": party, "before": before},
    )
    return [NetPosition(str(c), str(a), i, Decimal(n)) for c, a, i, n in rows]


def applied_submissions(uow: Statements, settlement_ids: list[UUID]) -> list[AppliedSubmission]:
    """The applied transactions of the given settlements' legs, in signing order."""
    if not settlement_ids:
        return []
    rows = uow.execute(
        "SELECT settlement_id, leg_no, purpose, tx_hash, ledger_index, ledger_hash,"
        "  finalized_at FROM ledger_submissions"
        " WHERE settlement_id = ANY(:ids) AND status = 'APPLIED' ORDER BY id",
        {"ids": settlement_ids},
    )
    return [AppliedSubmission(*tuple(row)) for row in rows]
