"""Commitment records: the SQL behind every commitment write and read.

Writes go through the server-side functions of the migrations (``commitment_create``,
``commitment_transition``, ``commitment_approve``; ``idempotency_probe`` for a keyed
retry), one statement each: the database checks the version, the guards and the
transition table, and writes history, audit and idempotency rows in the same
transaction. Each write function runs its statement where its caller says: given the
``Database``, as a transaction of its own (one round trip, ``Database.call_one``);
given a unit of work (``Statements``), inside it, so the caller adds rows of its own to
the same transaction. This module knows nothing of who may do what: ``settlement``
decides that and passes the guard values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from ledger.database import Database, Statements, driver_sql
from ledger.errors import RecordNotFound, translate
from ledger.idempotency import resolve


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
class Attribution:
    """Who makes a commitment write and how it is recorded.

    ``actor`` is the person acting and ``key_id`` the key that signed their request
    (None when none did; the database refuses a key that is not ``actor``'s).
    ``idempotency_key`` and ``fingerprint`` are both None for an unkeyed write; a keyed
    one that was already applied with the same fingerprint is replayed, not repeated.
    ``payload`` is the audit entry's payload as canonical JSON text
    (``ledger.audit.payload_text``); ``at`` is the time the write records."""

    actor: str
    key_id: str | None
    idempotency_key: str | None
    fingerprint: str | None
    payload: str
    at: datetime

    def params(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "key_id": self.key_id,
            "key": self.idempotency_key,
            "fingerprint": self.fingerprint,
            "payload": self.payload,
            "at": self.at,
        }


# Each write statement answers one row (outcome, response): ``ledger.idempotency.resolve``
# reads it. A transition could name the one ledger transaction that caused it (chain,
# tx_hash, ledger index and hash); none does: lock and settle each follow a transaction
# per leg, and each leg's own audit entry carries its reference.
_CREATE = (
    "SELECT outcome, response FROM commitment_create(:id, :owner_party, :deal_ref, :amount,"
    " :currency, :expires_at, :actor, :key, :fingerprint, :payload, :at, :key_id)"
)
_APPROVE = (
    "SELECT outcome, response FROM commitment_approve(:id, CAST(:expected_version AS integer),"
    " :actor, :override_reason, :key, :fingerprint, :payload, :at, :key_id)"
)
_TRANSITION = (
    "SELECT outcome, response FROM commitment_transition(:id, CAST(:expected_version AS integer),"
    " :event, :actor, :reason, :require_owner, :forbid_submitter, :key, :fingerprint, :payload,"
    " :at, NULL, NULL, CAST(NULL AS bigint), NULL, :key_id)"
)
_PROBE = "SELECT outcome, response FROM idempotency_probe(:actor, :key, :fingerprint)"


def _write(
    where: Database | Statements, sql: str, params: dict[str, Any], by: Attribution
) -> WriteResult:
    """Run one write statement where the caller says and read its answer; raises
    ``IdempotencyInFlight`` or ``IdempotencyKeyReused`` for a key in flight or reused."""
    if isinstance(where, Database):
        row = where.call_one(driver_sql(sql), params)
    else:
        row = tuple(where.execute(sql, params).one())
    replayed, response = resolve(row[0], row[1], actor=by.actor, key=by.idempotency_key)
    return WriteResult.from_response(response, replayed)


def create(
    where: Database | Statements,
    by: Attribution,
    *,
    commitment_id: UUID,
    owner_party: str,
    deal_ref: str,
    amount: Decimal,
    currency: str,
    expires_at: datetime | None,
) -> WriteResult:
    """Create a DRAFT commitment (version 1) with its history row and audit entry.

    Raises ``ConstraintViolation`` when ``commitment_id`` is taken or a value is
    refused; replays the first result for a keyed retry."""
    params = {
        **by.params(),
        "id": commitment_id,
        "owner_party": owner_party,
        "deal_ref": deal_ref,
        "amount": amount,
        "currency": currency,
        "expires_at": expires_at,
    }
    return _write(where, _CREATE, params, by)


def transition(
    where: Database | Statements,
    by: Attribution,
    *,
    commitment_id: UUID,
    expected_version: int | None,
    event: str,
    reason: str | None,
    require_owner: str | None,
    forbid_submitter: str | None,
) -> WriteResult:
    """Cause ``event`` on the commitment: state, version, history row, audit entry and
    idempotency record in one transaction.

    The guards are the caller's: ``expected_version`` (None: any), ``require_owner``
    (the party that must own the commitment), ``forbid_submitter`` (a person who may not
    cause it, having submitted it). Raises ``RecordNotFound``, ``StaleVersion``,
    ``GuardFailed`` or ``TransitionRefused`` (the event is not allowed in the state);
    replays the first result for a keyed retry."""
    params = {
        **by.params(),
        "id": commitment_id,
        "expected_version": expected_version,
        "event": event,
        "reason": reason,
        "require_owner": require_owner,
        "forbid_submitter": forbid_submitter,
    }
    return _write(where, _TRANSITION, params, by)


def approve(
    where: Database | Statements,
    by: Attribution,
    *,
    commitment_id: UUID,
    expected_version: int | None,
    override_reason: str | None,
) -> WriteResult:
    """Record ``by.actor``'s approval for the current review round; the commitment moves
    to VERIFIED only when the round has the approvals its screening requires (otherwise
    the result's ``to_state`` is PENDING_REVIEW and the version is unchanged). Raises
    as ``transition`` does, and the database's compliance refusals (not an officer, the
    submitter, an override needed or not allowed)."""
    params = {
        **by.params(),
        "id": commitment_id,
        "expected_version": expected_version,
        "override_reason": override_reason,
    }
    return _write(where, _APPROVE, params, by)


def replay_of(
    uow: Statements, *, actor: str, idempotency_key: str, fingerprint: str | None
) -> WriteResult | None:
    """The recorded result of ``actor``'s write under ``idempotency_key``, or None when
    no write used the key yet; raises as ``create`` does for a key in flight or reused.
    For a write that reads before it writes (submit's screening), inside its unit of
    work, so a retry replays without the reads."""
    params = {"actor": actor, "key": idempotency_key, "fingerprint": fingerprint}
    row = tuple(uow.execute(_PROBE, params).one())
    if row[0] is None:
        return None
    replayed, response = resolve(row[0], row[1], actor=actor, key=idempotency_key)
    return WriteResult.from_response(response, replayed)


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


def page(
    uow: Statements,
    *,
    state: str | None,
    party: str | None,
    deal_ref: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[CommitmentRecord]:
    """At most ``limit`` commitments in (created_at, id) order, oldest first, that
    match every filter given (None: no filter) and come after the key ``after``
    (keyset pagination: rows added meanwhile never shift the ones not read yet)."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if state is not None:
        where.append("state = :state")
        params["state"] = state
    if party is not None:
        where.append("owner_party = :party")
        params["party"] = party
    if deal_ref is not None:
        where.append("deal_ref = :deal_ref")
        params["deal_ref"] = deal_ref
    if after is not None:
        params["after_at"], params["after_id"] = after
        where.append("(created_at, id) > (:after_at, :after_id)")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    # the clauses are fixed text; every value is a bound parameter
    sql = f"SELECT {_COLUMNS} FROM commitments{clause} ORDER BY created_at, id LIMIT :limit"
    return [CommitmentRecord(*tuple(row)) for row in uow.execute(sql, params)]


def count_by_state(uow: Statements) -> dict[str, int]:
    """How many commitments are in each state (states with none are absent)."""
    rows = uow.execute("SELECT state, count(*) FROM commitments GROUP BY state")
    return {str(state): int(count) for state, count in rows}


def count_transitions_by_event(uow: Statements) -> dict[str, int]:
    """How many transitions of each event the history holds (events never caused are
    absent)."""
    rows = uow.execute("SELECT event, count(*) FROM state_transitions GROUP BY event")
    return {str(event): int(count) for event, count in rows}
