"""Settlement records: the write-ahead bookkeeping of delivery versus payment.

All SQL of settlements, legs and ledger submissions lives here; the coordinator
(``settlement.dvp``) decides what to write. Every function takes a unit of work
(``Statements``: SQLAlchemy's or the driver's) so the caller chooses the transaction
boundaries (the write-ahead rule needs a submission committed before it is sent).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from ledger.database import Statements
from ledger.errors import RecordNotFound


@dataclass(frozen=True)
class SettlementRow:
    id: UUID
    commitment_id: UUID
    status: str
    decision: str | None
    decision_reason: str | None
    decided_at: datetime | None
    settle_not_before: datetime | None
    commit_deadline: datetime
    cancel_after: datetime
    condition_hex: str
    secret_sealed: bytes
    needs_review: bool
    review_reason: str | None
    cancel_requested_by: str | None
    cancel_reason: str | None
    attempts_reset_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    #: the API key that signed the force-cancel request, if one did (migration 0012)
    cancel_requested_key_id: str | None = None


@dataclass(frozen=True)
class LegRow:
    settlement_id: UUID
    leg_no: int
    kind: str
    chain: str
    asset_code: str
    asset_issuer: str | None
    amount: Decimal
    sender: str
    receiver: str
    state: str
    lock_owner: str | None
    lock_sequence: int | None
    lock_balance_id: str | None
    #: escrow, claimable or custody (migration 0011), fixed when instructed
    lock_kind: str = "escrow"
    #: a release by someone else (the receiver finished, the sender reclaimed): the
    #: validated transaction that took the lock, and to whom the funds went
    released_tx_hash: str | None = None
    released_ledger_index: int | None = None
    released_ledger_hash: str | None = None
    released_to: str | None = None


@dataclass(frozen=True)
class SubmissionRow:
    id: int
    settlement_id: UUID
    leg_no: int
    purpose: str
    chain: str
    tx_hash: str
    blob: str
    expires_ledger: int | None
    expires_at: datetime | None
    status: str
    result_code: str | None
    ledger_index: int | None
    ledger_hash: str | None
    signed_at: datetime
    finalized_at: datetime | None
    #: the channel account that is the transaction's source (Stellar), if any
    channel: str | None = None


_SETTLEMENT_COLUMNS = (
    "id, commitment_id, status, decision, decision_reason, decided_at, settle_not_before,"
    " commit_deadline,"
    " cancel_after, condition_hex, secret_sealed, needs_review, review_reason,"
    " cancel_requested_by, cancel_reason, attempts_reset_at, created_by, created_at, updated_at,"
    " cancel_requested_key_id"
)
_LEG_COLUMNS = (
    "settlement_id, leg_no, kind, chain, asset_code, asset_issuer, amount, sender, receiver,"
    " state, lock_owner, lock_sequence, lock_balance_id, lock_kind, released_tx_hash,"
    " released_ledger_index, released_ledger_hash, released_to"
)
_SUBMISSION_COLUMNS = (
    "id, settlement_id, leg_no, purpose, chain, tx_hash, blob, expires_ledger, expires_at,"
    " status, result_code, ledger_index, ledger_hash, signed_at, finalized_at, channel"
)


def insert_settlement(
    uow: Statements,
    *,
    settlement_id: UUID,
    commitment_id: UUID,
    settle_not_before: datetime | None,
    commit_deadline: datetime,
    cancel_after: datetime,
    condition_hex: str,
    secret_sealed: bytes,
    created_by: str,
    at: datetime,
    legs: list[dict[str, Any]],
) -> None:
    uow.execute(
        "INSERT INTO settlements (id, commitment_id, status, settle_not_before, commit_deadline,"
        " cancel_after, condition_hex, secret_sealed, created_by, created_at, updated_at)"
        " VALUES (:id, :commitment_id, 'LOCKING', :settle_not_before, :commit_deadline,"
        " :cancel_after, :condition_hex, :secret_sealed, :created_by, :at, :at)",
        {
            "id": settlement_id,
            "commitment_id": commitment_id,
            "settle_not_before": settle_not_before,
            "commit_deadline": commit_deadline,
            "cancel_after": cancel_after,
            "condition_hex": condition_hex,
            "secret_sealed": secret_sealed,
            "created_by": created_by,
            "at": at,
        },
    )
    for leg in legs:
        uow.execute(
            "INSERT INTO settlement_legs (settlement_id, leg_no, kind, chain, asset_code,"
            " asset_issuer, amount, sender, receiver, state, lock_kind) VALUES (:settlement_id,"
            " :leg_no, :kind, :chain, :asset_code, :asset_issuer, :amount, :sender, :receiver,"
            " 'PENDING', :lock_kind)",
            # a leg given without its lock kind takes its chain's own primitive
            {
                "settlement_id": settlement_id,
                "lock_kind": "escrow" if leg.get("chain") == "xrpl" else "claimable",
                **leg,
            },
        )


def load_settlement(
    uow: Statements, settlement_id: UUID, *, for_update: bool = False
) -> SettlementRow:
    lock = " FOR UPDATE" if for_update else ""
    row = uow.execute(
        f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements WHERE id = :id{lock}", {"id": settlement_id}
    ).one_or_none()
    if row is None:
        raise RecordNotFound(f"settlement {settlement_id} not found")
    return SettlementRow(*tuple(row))


def settlements_of(uow: Statements, commitment_id: UUID) -> list[SettlementRow]:
    rows = uow.execute(
        f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements WHERE commitment_id = :id"
        " ORDER BY created_at",
        {"id": commitment_id},
    )
    return [SettlementRow(*tuple(row)) for row in rows]


def load_legs(uow: Statements, settlement_id: UUID) -> list[LegRow]:
    rows = uow.execute(
        f"SELECT {_LEG_COLUMNS} FROM settlement_legs WHERE settlement_id = :id ORDER BY leg_no",
        {"id": settlement_id},
    )
    return [LegRow(*tuple(row)) for row in rows]


def submissions(uow: Statements, settlement_id: UUID) -> list[SubmissionRow]:
    rows = uow.execute(
        f"SELECT {_SUBMISSION_COLUMNS} FROM ledger_submissions WHERE settlement_id = :id"
        " ORDER BY id",
        {"id": settlement_id},
    )
    return [SubmissionRow(*tuple(row)) for row in rows]


def record_submission(
    uow: Statements,
    *,
    settlement_id: UUID,
    leg_no: int,
    purpose: str,
    chain: str,
    tx_hash: str,
    blob: str,
    expires_ledger: int | None,
    expires_at: datetime | None,
    at: datetime,
    channel: str | None = None,
) -> None:
    """Write-ahead: record a signed transaction before it is sent.

    The partial unique index refuses a second open submission for the same leg and
    purpose (``ConstraintViolation``), so a purpose is never signed twice while an
    earlier signature could still apply. With ``channel``, another refuses a second
    open submission on that channel account (``ConstraintViolation`` naming
    ``CHANNEL_TAKEN``): one transaction at a time per channel.
    """
    uow.execute(
        "INSERT INTO ledger_submissions (settlement_id, leg_no, purpose, chain, tx_hash, blob,"
        " expires_ledger, expires_at, status, signed_at, channel) VALUES (:settlement_id,"
        " :leg_no, :purpose, :chain, :tx_hash, :blob, :expires_ledger, :expires_at, 'SIGNED',"
        " :at, :channel)",
        {
            "settlement_id": settlement_id,
            "leg_no": leg_no,
            "purpose": purpose,
            "chain": chain,
            "tx_hash": tx_hash,
            "blob": blob,
            "expires_ledger": expires_ledger,
            "expires_at": expires_at,
            "at": at,
            "channel": channel,
        },
    )


#: the index that holds a channel account for its one open submission (migration 0009)
CHANNEL_TAKEN = "ledger_submissions_one_open_per_channel"


def busy_channels(uow: Statements, chain: str) -> set[str]:
    """The channels of ``chain`` that carry a submission that could still apply (status
    SIGNED). A snapshot: another worker may take a free one before this one records
    it, which the unique index then refuses."""
    rows = uow.execute(
        "SELECT channel FROM ledger_submissions"
        " WHERE chain = :chain AND status = 'SIGNED' AND channel IS NOT NULL",
        {"chain": chain},
    )
    return {str(row[0]) for row in rows}


def finalize_submission(
    uow: Statements,
    *,
    tx_hash: str,
    status: str,
    result_code: str | None,
    ledger_index: int | None,
    ledger_hash: str | None,
    at: datetime,
) -> None:
    updated = uow.execute(
        "UPDATE ledger_submissions SET status = :status, result_code = :code,"
        " ledger_index = :ledger_index, ledger_hash = :ledger_hash, finalized_at = :at"
        " WHERE tx_hash = :tx_hash AND status = 'SIGNED'",
        {
            "status": status,
            "code": result_code,
            "ledger_index": ledger_index,
            "ledger_hash": ledger_hash,
            "at": at,
            "tx_hash": tx_hash,
        },
    ).rowcount
    if updated != 1:
        raise RecordNotFound(f"no open submission {tx_hash}")


def set_leg_state(
    uow: Statements,
    settlement_id: UUID,
    leg_no: int,
    state: str,
    *,
    lock_owner: str | None = None,
    lock_sequence: int | None = None,
    lock_balance_id: str | None = None,
) -> None:
    uow.execute(
        "UPDATE settlement_legs SET state = :state,"
        " lock_owner = coalesce(:lock_owner, lock_owner),"
        " lock_sequence = coalesce(:lock_sequence, lock_sequence),"
        " lock_balance_id = coalesce(:lock_balance_id, lock_balance_id)"
        " WHERE settlement_id = :settlement_id AND leg_no = :leg_no",
        {
            "state": state,
            "lock_owner": lock_owner,
            "lock_sequence": lock_sequence,
            "lock_balance_id": lock_balance_id,
            "settlement_id": settlement_id,
            "leg_no": leg_no,
        },
    )


def record_release(
    uow: Statements,
    settlement_id: UUID,
    leg_no: int,
    state: str,
    *,
    tx_hash: str,
    ledger_index: int,
    ledger_hash: str,
    to: str,
) -> None:
    """A leg whose lock someone else took off the ledger: its new state (COMMITTED when
    the receiver got the funds, UNWOUND when the sender did) and the transaction."""
    uow.execute(
        "UPDATE settlement_legs SET state = :state, released_tx_hash = :tx_hash,"
        " released_ledger_index = :ledger_index, released_ledger_hash = :ledger_hash,"
        " released_to = :to WHERE settlement_id = :settlement_id AND leg_no = :leg_no",
        {
            "state": state,
            "tx_hash": tx_hash,
            "ledger_index": ledger_index,
            "ledger_hash": ledger_hash,
            "to": to,
            "settlement_id": settlement_id,
            "leg_no": leg_no,
        },
    )


def decide(uow: Statements, settlement_id: UUID, decision: str, reason: str, at: datetime) -> None:
    status = "COMMITTING" if decision == "COMMIT" else "UNWINDING"
    uow.execute(
        "UPDATE settlements SET decision = :decision, decision_reason = :reason, decided_at = :at,"
        " status = :status, updated_at = :at WHERE id = :id",
        {"decision": decision, "reason": reason, "at": at, "status": status, "id": settlement_id},
    )


def close(uow: Statements, settlement_id: UUID, status: str, at: datetime) -> None:
    uow.execute(
        "UPDATE settlements SET status = :status, updated_at = :at, lease_owner = NULL,"
        " lease_until = NULL WHERE id = :id",
        {"status": status, "at": at, "id": settlement_id},
    )


def flag_for_review(uow: Statements, settlement_id: UUID, reason: str, at: datetime) -> bool:
    """Flag a settlement for a person; return True if it was not flagged before."""
    return bool(
        uow.execute(
            "UPDATE settlements SET needs_review = true, review_reason = :reason, updated_at = :at"
            " WHERE id = :id AND NOT needs_review",
            {"reason": reason, "at": at, "id": settlement_id},
        ).rowcount
    )


def request_cancel(
    uow: Statements,
    settlement_id: UUID,
    actor: str,
    reason: str,
    at: datetime,
    *,
    key_id: str | None = None,
) -> None:
    uow.execute(
        "UPDATE settlements SET cancel_requested_by = :actor, cancel_reason = :reason,"
        " cancel_requested_key_id = :key_id, updated_at = :at,"
        # due at once, unless a worker holds it: that worker sees the request next step
        " lease_until = CASE WHEN lease_owner IS NULL THEN NULL ELSE lease_until END"
        " WHERE id = :id",
        {"actor": actor, "reason": reason, "at": at, "id": settlement_id, "key_id": key_id},
    )


def claim_due(
    uow: Statements, *, worker: str, now: datetime, lease_s: float, limit: int
) -> list[UUID]:
    """Lease open settlements nobody holds: ``FOR UPDATE SKIP LOCKED`` so several
    workers never take the same one; an expired lease (a dead worker) is taken over."""
    rows = uow.execute(
        "WITH due AS (SELECT id FROM settlements"
        "   WHERE status IN ('LOCKING', 'COMMITTING', 'UNWINDING')"
        "     AND (lease_until IS NULL OR lease_until < :now)"
        "   ORDER BY lease_until NULLS FIRST, created_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
        " UPDATE settlements s SET lease_owner = :worker,"
        "   lease_until = :now + make_interval(secs => :lease_s)"
        " FROM due WHERE s.id = due.id RETURNING s.id",
        {"now": now, "worker": worker, "lease_s": lease_s, "limit": limit},
    )
    return [row[0] for row in rows]


def release_lease(uow: Statements, settlement_id: UUID, worker: str, retry_at: datetime) -> None:
    """Give the settlement back, due again at ``retry_at`` (leases double as timers)."""
    uow.execute(
        "UPDATE settlements SET lease_owner = NULL, lease_until = :retry_at"
        " WHERE id = :id AND lease_owner = :worker",
        {"retry_at": retry_at, "id": settlement_id, "worker": worker},
    )


def append_audit(
    uow: Statements,
    *,
    commitment_id: UUID,
    actor: str,
    action: str,
    payload: str,
    at: datetime,
    chain: str | None = None,
    tx_hash: str | None = None,
    ledger_index: int | None = None,
    ledger_hash: str | None = None,
    key_id: str | None = None,
) -> None:
    """An audit entry that is not a state change (the chain trigger assigns its place).
    ``actor`` is the person or the system; ``key_id`` the API key that signed, if any."""
    uow.execute(
        "INSERT INTO audit_log (commitment_id, recorded_at, actor, key_id, action, payload,"
        " chain, tx_hash, ledger_index, ledger_hash, entry_hash) VALUES (:commitment_id, :at,"
        " :actor, :key_id, :action, :payload, :chain, :tx_hash, :ledger_index, :ledger_hash,"
        " '')",
        {
            "commitment_id": commitment_id,
            "at": at,
            "actor": actor,
            "key_id": key_id,
            "action": action,
            "payload": payload,
            "chain": chain,
            "tx_hash": tx_hash,
            "ledger_index": ledger_index,
            "ledger_hash": ledger_hash,
        },
    )


def all_settlement_ids(uow: Statements) -> list[UUID]:
    return [row[0] for row in uow.execute("SELECT id FROM settlements ORDER BY created_at")]


def known_lock_refs(uow: Statements) -> list[tuple[str, str, int | None, str | None]]:
    """(chain, owner, sequence, balance id) of every lock the engine ever signed for."""
    rows = uow.execute(
        "SELECT chain, lock_owner, lock_sequence, lock_balance_id FROM settlement_legs"
        " WHERE lock_owner IS NOT NULL"
    )
    out: list[tuple[str, str, int | None, str | None]] = []
    for row in rows:
        chain, owner, sequence, balance_id = tuple(row)
        out.append((chain, owner, sequence, balance_id))
    return out


@dataclass(frozen=True)
class SettlementDetail:
    """A settlement with its legs (by leg number) and submissions (in signing order)."""

    settlement: SettlementRow
    legs: list[LegRow]
    submissions: list[SubmissionRow]


def detail(uow: Statements, settlement: SettlementRow) -> SettlementDetail:
    return SettlementDetail(
        settlement, load_legs(uow, settlement.id), submissions(uow, settlement.id)
    )


def details_of(uow: Statements, commitment_id: UUID) -> list[SettlementDetail]:
    """Every settlement of a commitment, oldest first, each with its legs and submissions."""
    return [detail(uow, s) for s in settlements_of(uow, commitment_id)]


def list_settlements(
    uow: Statements, *, needs_review: bool | None, status: str | None, limit: int
) -> list[SettlementRow]:
    """Settlements newest first, optionally only flagged ones or one status: one query."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if needs_review is not None:
        where.append("needs_review = :needs_review")
        params["needs_review"] = needs_review
    if status is not None:
        where.append("status = :status")
        params["status"] = status
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = uow.execute(
        f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements{clause}"
        " ORDER BY created_at DESC, id LIMIT :limit",
        params,
    )
    return [SettlementRow(*tuple(row)) for row in rows]


def count_open(uow: Statements) -> int:
    return int(
        uow.execute(
            "SELECT count(*) FROM settlements"
            " WHERE status IN ('LOCKING', 'COMMITTING', 'UNWINDING')"
        ).scalar_one()
    )


def count_by_status_and_decision(uow: Statements) -> list[tuple[str, str, int]]:
    """(status, decision, count) of every combination present; ``NONE`` stands for
    no decision yet."""
    rows = uow.execute(
        "SELECT status, coalesce(decision, 'NONE'), count(*) FROM settlements GROUP BY 1, 2"
    )
    return [(str(status), str(decision), int(count)) for status, decision, count in rows]


def count_flagged(uow: Statements) -> int:
    """How many settlements are flagged for a person."""
    return int(uow.execute("SELECT count(*) FROM settlements WHERE needs_review").scalar_one())


def flagged(uow: Statements) -> list[SettlementRow]:
    """Settlements that need a person, oldest first."""
    rows = uow.execute(
        f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements WHERE needs_review ORDER BY updated_at"
    )
    return [SettlementRow(*tuple(row)) for row in rows]


def clear_flag(
    uow: Statements,
    settlement_id: UUID,
    *,
    actor: str,
    at: datetime,
    resolution: str | None,
    reset_attempts: bool,
) -> bool:
    """Clear a settlement's review flag; False if it was not flagged. With
    ``reset_attempts`` (an admin's retry) every REFUSED leg goes back to where its funds
    are, so its payout is tried again: HELD when the agent holds them (a custody lock,
    an applied claim, a release to the agent), LOCKED otherwise."""
    if reset_attempts:
        uow.execute(
            "UPDATE settlement_legs l SET state = CASE WHEN l.lock_kind = 'custody'"
            " OR l.released_to IS NOT NULL OR EXISTS (SELECT 1 FROM ledger_submissions s"
            " WHERE s.settlement_id = l.settlement_id AND s.leg_no = l.leg_no"
            " AND s.purpose = 'claim' AND s.status = 'APPLIED') THEN 'HELD' ELSE 'LOCKED' END"
            " WHERE l.settlement_id = :id AND l.state = 'REFUSED'"
            " AND EXISTS (SELECT 1 FROM settlements WHERE id = :id AND needs_review)",
            {"id": settlement_id},
        )
    return bool(
        uow.execute(
            "UPDATE settlements SET needs_review = false, resolved_by = :actor,"
            " resolution = :resolution, updated_at = :at, lease_until = NULL,"
            " attempts_reset_at = CASE WHEN :reset THEN :at ELSE attempts_reset_at END"
            " WHERE id = :id AND needs_review",
            {
                "actor": actor,
                "resolution": resolution,
                "at": at,
                "reset": reset_attempts,
                "id": settlement_id,
            },
        ).rowcount
    )
