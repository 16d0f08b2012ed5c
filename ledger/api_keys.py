"""API keys, seen nonces and HTTP idempotency records: the SQL behind the signed API.

Tables and rules are those of migration 0004. Every call is one statement (one round
trip) through ``Database.call_one``, except listings. This module knows nothing of HTTP
or signatures: ``settlement.api`` decides what to store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from ledger.database import Database

_KEY_COLUMNS = "key_id, role, party, public_key, created_at, created_by, revoked_at, revoked_by"


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    role: str
    party: str | None
    #: raw 32-byte Ed25519 public key
    public_key: bytes
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class StoredResponse:
    status: int
    content_type: str | None
    etag: str | None
    location: str | None
    body: bytes


ClaimOutcome = Literal["claimed", "replay", "mismatch", "in_flight"]


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    #: the stored response when ``outcome`` is "replay"
    response: StoredResponse | None = None


def insert_key(
    db: Database,
    *,
    key_id: str,
    role: str,
    party: str | None,
    public_key: bytes,
    at: datetime,
    created_by: str,
) -> None:
    """Register a key. A taken key id or public key raises ``ConstraintViolation``."""
    db.call_one(
        "WITH ins AS (INSERT INTO api_keys (key_id, role, party, public_key, created_at,"
        " created_by) VALUES (%(key_id)s, %(role)s, %(party)s, %(public_key)s, %(at)s,"
        " %(created_by)s) RETURNING 1) SELECT count(*) FROM ins",
        {
            "key_id": key_id,
            "role": role,
            "party": party,
            "public_key": public_key,
            "at": at,
            "created_by": created_by,
        },
    )


def revoke_key(db: Database, key_id: str, *, at: datetime, revoked_by: str) -> bool | None:
    """Revoke a key: True if it was active, False if already revoked, None if unknown."""
    row = db.call_one(
        "WITH upd AS (UPDATE api_keys SET revoked_at = %(at)s, revoked_by = %(by)s"
        " WHERE key_id = %(key_id)s AND revoked_at IS NULL RETURNING 1)"
        " SELECT (SELECT count(*) FROM upd),"
        " EXISTS (SELECT 1 FROM api_keys WHERE key_id = %(key_id)s)",
        {"key_id": key_id, "at": at, "by": revoked_by},
    )
    if not row[1]:
        return None
    return bool(row[0])


def load_key(db: Database, key_id: str) -> KeyRecord | None:
    row = db.call_one(
        f"SELECT {_KEY_COLUMNS} FROM (SELECT 1) AS one LEFT JOIN api_keys ON key_id = %(key_id)s",
        {"key_id": key_id},
    )
    if row[0] is None:
        return None
    return _key(row)


def list_keys(db: Database) -> list[KeyRecord]:
    with db.unit_of_work() as uow:
        rows = uow.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id")
        return [_key(tuple(row)) for row in rows]


NonceOutcome = Literal["accepted", "replayed", "revoked", "unknown"]


def accept_nonce(db: Database, key_id: str, nonce: str, *, at: datetime) -> NonceOutcome:
    """In one statement (one round trip): check that the key is still registered and not
    revoked, and record its nonce. "replayed" when the key used the nonce before;
    nothing is recorded for a revoked or unknown key. Nonces are per key: another key
    may use the same one.

    The nonce's transaction commits asynchronously (``synchronous_commit`` off for it
    alone; PostgreSQL reads the setting at commit). It is visible to every later
    request as soon as this returns, so a replay is refused exactly as before; only
    its WAL flush is not awaited. Why losing it in a crash is acceptable:

    - WAL is one sequence and recovery replays a prefix of it, so any later
      synchronous commit (which flushes the WAL up to its own record) makes this
      nonce durable too. A mutating request takes its idempotency claim, a
      synchronous commit, after its nonce and before the route acts: its nonce is
      durable before anything it asks for happens.
    - So a crash can lose only nonces of requests that changed nothing (reads;
      writes refused, or answered from their idempotency record), recorded in the
      last moments before it (the WAL writer flushes within three
      ``wal_writer_delay``, 600 ms by default). Such a request, captured and replayed
      after the restart while its ``created`` is still inside the window (300 s), is
      answered once more: a read with the resource as it stands then; a write goes
      through its idempotency key like any retry, so what it asked for is done at
      most once.
    """
    row = db.call_one(
        "WITH k AS (SELECT revoked_at FROM api_keys WHERE key_id = %(key_id)s),"
        " ins AS (INSERT INTO api_nonces (key_id, nonce, created_at)"
        "   SELECT %(key_id)s, %(nonce)s, %(at)s FROM k WHERE k.revoked_at IS NULL"
        "   ON CONFLICT DO NOTHING RETURNING 1)"
        " SELECT (SELECT count(*) FROM k), (SELECT count(*) FROM k WHERE revoked_at IS NULL),"
        " (SELECT count(*) FROM ins), set_config('synchronous_commit', 'off', true)",
        {"key_id": key_id, "nonce": nonce, "at": at},
    )
    if not row[0]:
        return "unknown"
    if not row[1]:
        return "revoked"
    return "accepted" if row[2] else "replayed"


def prune_nonces(db: Database, *, before: datetime) -> int:
    """Forget nonces recorded before ``before``; returns how many.

    Commits asynchronously: a prune lost in a crash leaves rows the next one deletes.
    """
    row = db.call_one(
        "WITH del AS (DELETE FROM api_nonces WHERE created_at < %(before)s RETURNING 1)"
        " SELECT count(*), set_config('synchronous_commit', 'off', true) FROM del",
        {"before": before},
    )
    return int(row[0])


def claim(
    db: Database,
    *,
    key_id: str,
    idempotency_key: str,
    fingerprint: str,
    claim_id: UUID,
    at: datetime,
    lease_until: datetime,
) -> Claim:
    """Claim (key_id, idempotency_key) for a request, or learn why not (see 0004)."""
    row = db.call_one(
        "SELECT outcome, response_status, response_type, response_etag, response_location,"
        " response_body FROM api_idempotency_claim(%(key_id)s, %(key)s, %(fingerprint)s,"
        " %(claim)s, %(at)s, %(lease_until)s)",
        {
            "key_id": key_id,
            "key": idempotency_key,
            "fingerprint": fingerprint,
            "claim": claim_id,
            "at": at,
            "lease_until": lease_until,
        },
    )
    outcome: ClaimOutcome = row[0]
    if outcome == "replay":
        return Claim(
            outcome,
            StoredResponse(
                status=int(row[1]),
                content_type=row[2],
                etag=row[3],
                location=row[4],
                body=bytes(row[5]),
            ),
        )
    assert outcome in ("claimed", "mismatch", "in_flight"), outcome
    return Claim(outcome)


def complete(
    db: Database,
    *,
    key_id: str,
    idempotency_key: str,
    claim_id: UUID,
    response: StoredResponse,
    at: datetime,
) -> bool:
    """Store the response of a claimed request; False if the claim was lost meanwhile."""
    row = db.call_one(
        "WITH upd AS (UPDATE api_idempotency SET status = 'completed',"
        " response_status = %(status)s, response_type = %(type)s, response_etag = %(etag)s,"
        " response_location = %(location)s, response_body = %(body)s, completed_at = %(at)s"
        " WHERE key_id = %(key_id)s AND idempotency_key = %(key)s AND claim = %(claim)s"
        " AND status = 'in_flight' RETURNING 1) SELECT count(*) FROM upd",
        {
            "key_id": key_id,
            "key": idempotency_key,
            "claim": claim_id,
            "status": response.status,
            "type": response.content_type,
            "etag": response.etag,
            "location": response.location,
            "body": response.body,
            "at": at,
        },
    )
    return bool(row[0])


def release(db: Database, *, key_id: str, idempotency_key: str, claim_id: UUID) -> None:
    """Give a claim up (the request failed and changed nothing): the key is unused again."""
    db.call_one(
        "WITH del AS (DELETE FROM api_idempotency WHERE key_id = %(key_id)s"
        " AND idempotency_key = %(key)s AND claim = %(claim)s AND status = 'in_flight'"
        " RETURNING 1) SELECT count(*) FROM del",
        {"key_id": key_id, "key": idempotency_key, "claim": claim_id},
    )


def _key(row: tuple[object, ...]) -> KeyRecord:
    key_id, role, party, public_key, created_at, created_by, revoked_at, revoked_by = row
    assert isinstance(key_id, str)
    assert isinstance(role, str)
    assert party is None or isinstance(party, str)
    assert isinstance(public_key, bytes | memoryview)
    assert isinstance(created_at, datetime)
    assert isinstance(created_by, str)
    assert revoked_at is None or isinstance(revoked_at, datetime)
    assert revoked_by is None or isinstance(revoked_by, str)
    return KeyRecord(
        key_id, role, party, bytes(public_key), created_at, created_by, revoked_at, revoked_by
    )
