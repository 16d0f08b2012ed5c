"""API keys, seen nonces and HTTP idempotency records: the SQL behind the signed API.

Tables and rules are those of migration 0004 (0010 for ``claim_requests``; 0012 binds
each key to its person). Every
call is one statement (one round trip) through ``Database.call_one``, except listings;
``accept_nonces``, ``claim_requests`` and ``complete_many`` decide many requests in
their one statement. This module knows nothing of HTTP or signatures:
``settlement.api`` decides what to store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID

from ledger.database import Database

T = TypeVar("T")

_KEY_COLUMNS = (
    "key_id, role, party, person, public_key, created_at, created_by, revoked_at, revoked_by"
)


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One statement of a batch call and how to read its one row: built once, run by
    the blocking function (``Database.call_one``) or its ``_async`` twin."""

    sql: str
    params: Mapping[str, Any]
    answer: Callable[[tuple[Any, ...]], T]


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    role: str
    party: str | None
    #: who the key belongs to: what the audit logs name when it signs (migration 0012)
    person: str
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
    person: str,
    public_key: bytes,
    at: datetime,
    created_by: str,
) -> None:
    """Register a key of ``person``. A taken key id or public key raises
    ``ConstraintViolation``; an officer key for an officer the registry does not know
    raises ``DatabaseError`` SE433, an allocator person outside the key's party
    ``ConstraintViolation`` (migration 0012)."""
    db.call_one(
        "WITH ins AS (INSERT INTO api_keys (key_id, role, party, person, public_key, created_at,"
        " created_by) VALUES (%(key_id)s, %(role)s, %(party)s, %(person)s, %(public_key)s,"
        " %(at)s, %(created_by)s) RETURNING 1) SELECT count(*) FROM ins",
        {
            "key_id": key_id,
            "role": role,
            "party": party,
            "person": person,
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


#: one nonce to check: the key id, the nonce, and when the request was received
NonceCheck = tuple[str, str, datetime]

#: the checks travel as one JSON array of objects, not as three array parameters: the
#: driver dumps an array parameter element by element in Python, which cost about 60 us
#: of event-loop CPU per statement (a quarter of a statement of one check) against the
#: C-encoded JSON text; PostgreSQL parses either. ``json``, not ``jsonb``: it is read
#: once, in order, and jsonb's conversion buys nothing.
_ACCEPT_NONCES = (
    "WITH req AS (SELECT r.key_id, r.nonce, r.at, r.ord FROM json_to_recordset(%(checks)s::json)"
    " AS r(key_id text, nonce text, at timestamptz, ord int)),"
    " k AS (SELECT key_id, revoked_at FROM api_keys"
    "   WHERE key_id IN (SELECT key_id FROM req)),"
    " ins AS (INSERT INTO api_nonces (key_id, nonce, created_at)"
    "   SELECT req.key_id, req.nonce, req.at FROM req JOIN k ON k.key_id = req.key_id"
    "   WHERE k.revoked_at IS NULL ORDER BY req.key_id, req.nonce"
    "   ON CONFLICT DO NOTHING RETURNING key_id, nonce)"
    " SELECT string_agg(CASE WHEN k.key_id IS NULL THEN 'u'"
    "   WHEN k.revoked_at IS NOT NULL THEN 'v'"
    "   WHEN ins.nonce IS NOT NULL THEN 'a' ELSE 'r' END, '' ORDER BY req.ord),"
    " set_config('synchronous_commit', 'off', true)"
    " FROM req LEFT JOIN k ON k.key_id = req.key_id"
    " LEFT JOIN ins ON ins.key_id = req.key_id AND ins.nonce = req.nonce"
)
#: the one-letter outcomes the statement answers with, one per check, in order
_NONCE_LETTERS: dict[str, NonceOutcome] = {
    "a": "accepted",
    "r": "replayed",
    "v": "revoked",
    "u": "unknown",
}


def accept_nonces(db: Database, checks: Sequence[NonceCheck]) -> list[NonceOutcome]:
    """For each check, in one statement (one round trip, one commit): is the key still
    registered and not revoked, and is the nonce new for it (recorded if so)? The
    outcome of each, in order, as if they had run one after another: "replayed" when
    the key used the nonce before; nothing is recorded for a revoked or unknown key.
    Nonces are per key: another key may use the same one.

    A (key, nonce) pair that occurs more than once counts once: its first occurrence
    decides, and every later one is "replayed" (or refused as the first was, for a
    revoked or unknown key). The statement sees each pair once (a row proposed twice in
    one INSERT would report both as new), and its inserts go in (key, nonce) order, so
    batches of several processes that share pairs cannot deadlock. Which of two
    concurrent statements records a shared pair is the primary key's decision: the
    other waits for it and finds the pair taken.

    The transaction commits asynchronously (``synchronous_commit`` off for it alone;
    PostgreSQL reads the setting at commit). Its nonces are visible to every later
    request as soon as this returns, so a replay is refused exactly as before; only
    its WAL flush is not awaited. Why losing them in a crash is acceptable:

    - WAL is one sequence and recovery replays a prefix of it, so any later
      synchronous commit (which flushes the WAL up to its own record) makes these
      nonces durable too. A mutating request's nonce is recorded with its idempotency
      claim (``claim_requests``), a synchronous commit, before the route acts; one
      refused before its claim (no or a malformed Idempotency-Key) changes nothing.
    - So a crash can lose only nonces of requests that changed nothing (reads; writes
      refused before their claim), recorded in the last moments before it (the WAL
      writer flushes within three ``wal_writer_delay``, 600 ms by default). Such a
      request, captured and replayed after the restart while its ``created`` is still
      inside the window (300 s), is answered once more: a read with the resource as
      it stands then; a refused write is refused again.
    """
    call = _accept_nonces(checks)
    return call.answer(db.call_one(call.sql, call.params)) if checks else []


async def accept_nonces_async(db: Database, checks: Sequence[NonceCheck]) -> list[NonceOutcome]:
    """``accept_nonces`` on the running event loop (``Database.call_one_async``)."""
    call = _accept_nonces(checks)
    return call.answer(await db.call_one_async(call.sql, call.params)) if checks else []


def _accept_nonces(checks: Sequence[NonceCheck]) -> _Call[list[NonceOutcome]]:
    first: dict[tuple[str, str], int] = {}
    unique: list[NonceCheck] = []
    for key_id, nonce, at in checks:
        assert at.tzinfo is not None, "a nonce's time is an aware datetime"
        if (key_id, nonce) not in first:
            first[(key_id, nonce)] = len(unique)
            unique.append((key_id, nonce, at))

    def answer(row: tuple[Any, ...]) -> list[NonceOutcome]:
        decided = [_NONCE_LETTERS[letter] for letter in row[0]]
        assert len(decided) == len(unique), "one outcome per distinct (key, nonce)"
        outcomes: list[NonceOutcome] = []
        seen: set[tuple[str, str]] = set()
        for key_id, nonce, _ in checks:
            pair = (key_id, nonce)
            outcome = decided[first[pair]]
            if pair in seen and outcome == "accepted":
                outcome = "replayed"
            seen.add(pair)
            outcomes.append(outcome)
        return outcomes

    checks_json = json.dumps(
        [
            {"key_id": key_id, "nonce": nonce, "at": at.isoformat(), "ord": i}
            for i, (key_id, nonce, at) in enumerate(unique)
        ]
    )
    return _Call(_ACCEPT_NONCES, {"checks": checks_json}, answer)


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


@dataclass(frozen=True)
class ClaimRequest:
    """A mutating request's key check, nonce and idempotency claim (``claim_requests``)."""

    key_id: str
    nonce: str
    idempotency_key: str
    fingerprint: str
    claim_id: UUID
    at: datetime
    lease_until: datetime


_NONCE_OUTCOMES: dict[str, NonceOutcome] = {
    "key_unknown": "unknown",
    "key_revoked": "revoked",
    "nonce_reused": "replayed",
}


def claim_requests(
    db: Database, requests: Sequence[ClaimRequest]
) -> list[tuple[NonceOutcome, Claim | None]]:
    """For each request, as if one after another, in one statement (one round trip, one
    synchronous commit; migration 0010): check its key, record its nonce and claim its
    Idempotency-Key. Each answer (in the order of ``requests``) is the nonce outcome
    (as ``accept_nonces``') and, when "accepted", the claim (as ``claim``'s). A nonce
    or an Idempotency-Key used twice in one call is found by the second use.

    The requests go in (key, Idempotency-Key) order, in their given order among equal
    ones: two statements running at once that claim the same keys (a client's retries)
    lock them in one order and cannot deadlock.
    """
    call = _claim_requests(requests)
    return call.answer(db.call_one(call.sql, call.params)) if requests else []


async def claim_requests_async(
    db: Database, requests: Sequence[ClaimRequest]
) -> list[tuple[NonceOutcome, Claim | None]]:
    """``claim_requests`` on the running event loop (``Database.call_one_async``)."""
    call = _claim_requests(requests)
    return call.answer(await db.call_one_async(call.sql, call.params)) if requests else []


def _claim_requests(
    requests: Sequence[ClaimRequest],
) -> _Call[list[tuple[NonceOutcome, Claim | None]]]:
    order = sorted(
        range(len(requests)), key=lambda i: (requests[i].key_id, requests[i].idempotency_key)
    )
    sent = [requests[i] for i in order]
    sql = (
        "SELECT array_agg(outcome ORDER BY ord), array_agg(response_status ORDER BY ord),"
        " array_agg(response_type ORDER BY ord), array_agg(response_etag ORDER BY ord),"
        " array_agg(response_location ORDER BY ord), array_agg(response_body ORDER BY ord)"
        " FROM api_request_claims(%(key_ids)s::text[], %(nonces)s::text[],"
        " %(ats)s::timestamptz[], %(keys)s::text[], %(fingerprints)s::text[],"
        " %(claims)s::uuid[], %(lease_untils)s::timestamptz[])"
    )
    params = {
        "key_ids": [r.key_id for r in sent],
        "nonces": [r.nonce for r in sent],
        "ats": [r.at for r in sent],
        "keys": [r.idempotency_key for r in sent],
        "fingerprints": [r.fingerprint for r in sent],
        "claims": [r.claim_id for r in sent],
        "lease_untils": [r.lease_until for r in sent],
    }

    def answer(row: tuple[Any, ...]) -> list[tuple[NonceOutcome, Claim | None]]:
        return _claim_answers(row, order)

    return _Call(sql, params, answer)


def _claim_answers(
    row: tuple[Any, ...], order: list[int]
) -> list[tuple[NonceOutcome, Claim | None]]:
    outcomes, statuses, types, etags, locations, bodies = row
    assert len(outcomes) == len(order), "one outcome per request"
    answers: list[tuple[NonceOutcome, Claim | None]] = []
    for i, outcome in enumerate(outcomes):
        refused = _NONCE_OUTCOMES.get(outcome)
        if refused is not None:
            answers.append((refused, None))
        elif outcome == "replay":
            stored = StoredResponse(
                status=int(statuses[i]),
                content_type=types[i],
                etag=etags[i],
                location=locations[i],
                body=bytes(bodies[i]),
            )
            answers.append(("accepted", Claim("replay", stored)))
        else:
            assert outcome in ("claimed", "mismatch", "in_flight"), outcome
            answers.append(("accepted", Claim(outcome)))
    by_position = dict(zip(order, answers, strict=True))
    return [by_position[i] for i in range(len(order))]


@dataclass(frozen=True)
class Completion:
    """A claimed request's response, to store (``complete_many``)."""

    key_id: str
    idempotency_key: str
    claim_id: UUID
    response: StoredResponse
    at: datetime


def complete_many(db: Database, completions: Sequence[Completion]) -> list[bool]:
    """Store the responses of claimed requests, in one statement (one round trip, one
    synchronous commit): for each, in order, whether its response was stored (False if
    its claim was lost meanwhile)."""
    call = _complete_many(completions)
    return call.answer(db.call_one(call.sql, call.params)) if completions else []


async def complete_many_async(db: Database, completions: Sequence[Completion]) -> list[bool]:
    """``complete_many`` on the running event loop (``Database.call_one_async``)."""
    call = _complete_many(completions)
    return call.answer(await db.call_one_async(call.sql, call.params)) if completions else []


_COMPLETE_MANY = (
    "WITH r AS (SELECT * FROM unnest(%(key_ids)s::text[], %(keys)s::text[],"
    " %(claims)s::uuid[], %(statuses)s::smallint[], %(types)s::text[], %(etags)s::text[],"
    " %(locations)s::text[], %(bodies)s::bytea[], %(ats)s::timestamptz[])"
    " WITH ORDINALITY AS r(key_id, idempotency_key, claim, status, type, etag, location,"
    " body, at, ord)),"
    " upd AS (UPDATE api_idempotency AS i SET status = 'completed',"
    " response_status = r.status, response_type = r.type, response_etag = r.etag,"
    " response_location = r.location, response_body = r.body, completed_at = r.at"
    " FROM r WHERE i.key_id = r.key_id AND i.idempotency_key = r.idempotency_key"
    " AND i.claim = r.claim AND i.status = 'in_flight' RETURNING r.ord)"
    " SELECT array_agg(upd.ord IS NOT NULL ORDER BY r.ord)"
    " FROM r LEFT JOIN upd ON upd.ord = r.ord"
)


def _complete_many(completions: Sequence[Completion]) -> _Call[list[bool]]:
    def answer(row: tuple[Any, ...]) -> list[bool]:
        stored = [bool(done) for done in row[0]]
        assert len(stored) == len(completions), "one answer per completion"
        return stored

    return _Call(
        _COMPLETE_MANY,
        {
            "key_ids": [c.key_id for c in completions],
            "keys": [c.idempotency_key for c in completions],
            "claims": [c.claim_id for c in completions],
            "statuses": [c.response.status for c in completions],
            "types": [c.response.content_type for c in completions],
            "etags": [c.response.etag for c in completions],
            "locations": [c.response.location for c in completions],
            "bodies": [c.response.body for c in completions],
            "ats": [c.at for c in completions],
        },
        answer,
    )


def release(db: Database, *, key_id: str, idempotency_key: str, claim_id: UUID) -> None:
    """Give a claim up (the request failed and changed nothing): the key is unused again."""
    db.call_one(_RELEASE, {"key_id": key_id, "key": idempotency_key, "claim": claim_id})


async def release_async(db: Database, *, key_id: str, idempotency_key: str, claim_id: UUID) -> None:
    """``release`` on the running event loop (``Database.call_one_async``)."""
    await db.call_one_async(_RELEASE, {"key_id": key_id, "key": idempotency_key, "claim": claim_id})


_RELEASE = (
    "WITH del AS (DELETE FROM api_idempotency WHERE key_id = %(key_id)s"
    " AND idempotency_key = %(key)s AND claim = %(claim)s AND status = 'in_flight'"
    " RETURNING 1) SELECT count(*) FROM del"
)


def _key(row: tuple[object, ...]) -> KeyRecord:
    key_id, role, party, person, public_key, created_at, created_by, revoked_at, revoked_by = row
    assert isinstance(key_id, str)
    assert isinstance(role, str)
    assert party is None or isinstance(party, str)
    assert isinstance(person, str)
    assert isinstance(public_key, bytes | memoryview)
    assert isinstance(created_at, datetime)
    assert isinstance(created_by, str)
    assert revoked_at is None or isinstance(revoked_at, datetime)
    assert revoked_by is None or isinstance(revoked_by, str)
    return KeyRecord(
        key_id,
        role,
        party,
        person,
        bytes(public_key),
        created_at,
        created_by,
        revoked_at,
        revoked_by,
    )
