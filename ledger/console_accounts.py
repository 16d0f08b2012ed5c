"""Console accounts and server-side sessions: the SQL behind the web review console.

Tables and rules are those of migration 0008. Each call is one statement (one round
trip) through ``Database.call_one``, except listings. This module knows nothing of
passwords, cookies or HTTP: ``settlement.console`` decides what to store; it stores
only a password *hash* and only the SHA-256 of a session id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ledger.database import Database

_ACCOUNT_COLUMNS = (
    "username, password_hash, actor_id, role, active, failed_attempts, locked_until,"
    " created_at, created_by, updated_at, last_sign_in_at"
)


@dataclass(frozen=True)
class AccountRow:
    username: str
    password_hash: str
    actor_id: str
    role: str
    active: bool
    failed_attempts: int
    locked_until: datetime | None
    created_at: datetime
    created_by: str
    updated_at: datetime
    last_sign_in_at: datetime | None


@dataclass(frozen=True)
class SessionRow:
    id_hash: str
    username: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    signed_out_at: datetime | None
    account: AccountRow


def insert_account(
    db: Database,
    *,
    username: str,
    password_hash: str,
    actor_id: str,
    role: str,
    at: datetime,
    created_by: str,
) -> None:
    """Create an account. A taken username or actor id, or an officer account whose
    actor id is not a registered officer, raises ``ConstraintViolation``."""
    db.call_one(
        "WITH ins AS (INSERT INTO console_accounts (username, password_hash, actor_id, role,"
        " officer_id, created_at, created_by, updated_at) VALUES (%(username)s, %(hash)s,"
        " %(actor_id)s, %(role)s,"
        " CASE WHEN %(role)s = 'compliance_officer' THEN %(actor_id)s END,"
        " %(at)s, %(created_by)s, %(at)s) RETURNING 1) SELECT count(*) FROM ins",
        {
            "username": username,
            "hash": password_hash,
            "actor_id": actor_id,
            "role": role,
            "at": at,
            "created_by": created_by,
        },
    )


def load_account(db: Database, username: str) -> AccountRow | None:
    row = db.call_one(
        f"SELECT {_ACCOUNT_COLUMNS} FROM (SELECT 1) AS one"
        " LEFT JOIN console_accounts ON username = %(username)s",
        {"username": username},
    )
    return None if row[0] is None else AccountRow(*row)


def list_accounts(db: Database) -> list[AccountRow]:
    with db.unit_of_work() as uow:
        rows = uow.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM console_accounts ORDER BY username")
        return [AccountRow(*tuple(row)) for row in rows]


@dataclass(frozen=True)
class Attempt:
    """A sign-in attempt, counted before its password is checked."""

    #: the account as the count left it (its password hash is the one to check)
    account: AccountRow
    #: the lock this attempt set, being the ``max_attempts``-th since the count was last
    #: cleared; None if it set none
    locked_until: datetime | None


def begin_attempt(
    db: Database, username: str, *, at: datetime, max_attempts: int, lock_for: timedelta
) -> Attempt | None:
    """Count a sign-in attempt before its password is checked. None, and nothing
    counted, when there is no such account or it is disabled or locked at ``at``.

    The ``max_attempts``-th attempt since the count was last cleared locks the account
    until ``at + lock_for`` and starts the count again. The check of the lock and the
    count are one row update, so of any number of concurrent attempts at most
    ``max_attempts`` get a password check per lockout period: each one after the lock
    sees it (PostgreSQL re-checks the WHERE of a row another transaction changed).
    """
    row = db.call_one(
        "WITH upd AS (UPDATE console_accounts SET"
        " failed_attempts = CASE WHEN failed_attempts + 1 >= %(max)s THEN 0"
        "   ELSE failed_attempts + 1 END,"
        " locked_until = CASE WHEN failed_attempts + 1 >= %(max)s THEN %(until)s"
        "   ELSE locked_until END,"
        " updated_at = %(at)s"
        " WHERE username = %(username)s AND active"
        "   AND (locked_until IS NULL OR locked_until <= %(at)s)"
        f" RETURNING {_ACCOUNT_COLUMNS})"
        f" SELECT {_ACCOUNT_COLUMNS} FROM (SELECT 1) AS one LEFT JOIN upd ON true",
        {"username": username, "max": max_attempts, "until": at + lock_for, "at": at},
    )
    if row[0] is None:
        return None
    account = AccountRow(*row)
    # the count starts again only at a lock; a lock left from before had ended by ``at``
    locked = account.locked_until if account.failed_attempts == 0 else None
    return Attempt(account, locked if locked is not None and locked > at else None)


def record_success(
    db: Database,
    username: str,
    *,
    at: datetime,
    own_lock: datetime | None = None,
    new_hash: str | None = None,
) -> bool:
    """Clear the count (and ``own_lock``, the lock the attempt itself set, if any) after
    a good password; store ``new_hash`` when the password was rehashed under new
    parameters. False, and nothing changed, when since the attempt was counted the
    account was disabled or locked by another attempt: a success never clears a lock
    it did not set."""
    row = db.call_one(
        "WITH upd AS (UPDATE console_accounts SET failed_attempts = 0, locked_until = NULL,"
        " last_sign_in_at = %(at)s, updated_at = %(at)s,"
        " password_hash = coalesce(%(hash)s, password_hash)"
        " WHERE username = %(username)s AND active AND (locked_until IS NULL"
        "   OR locked_until <= %(at)s OR locked_until = %(own_lock)s)"
        " RETURNING 1) SELECT count(*) FROM upd",
        {"username": username, "at": at, "hash": new_hash, "own_lock": own_lock},
    )
    return bool(row[0])


def update_account(
    db: Database,
    username: str,
    *,
    at: datetime,
    active: bool | None = None,
    unlock: bool = False,
    password_hash: str | None = None,
) -> bool:
    """Change an account's active flag, clear its lockout, or set its password hash.
    False when there is no such account."""
    row = db.call_one(
        "WITH upd AS (UPDATE console_accounts SET"
        " active = coalesce(%(active)s, active),"
        " failed_attempts = CASE WHEN %(unlock)s THEN 0 ELSE failed_attempts END,"
        " locked_until = CASE WHEN %(unlock)s THEN NULL ELSE locked_until END,"
        " password_hash = coalesce(%(hash)s, password_hash), updated_at = %(at)s"
        " WHERE username = %(username)s RETURNING 1) SELECT count(*) FROM upd",
        {"username": username, "active": active, "unlock": unlock, "hash": password_hash, "at": at},
    )
    return bool(row[0])


def end_sessions_of(db: Database, username: str, *, at: datetime) -> int:
    """Sign out every live session of an account (on disable or password change)."""
    row = db.call_one(
        "WITH upd AS (UPDATE console_sessions SET signed_out_at = %(at)s"
        " WHERE username = %(username)s AND signed_out_at IS NULL RETURNING 1)"
        " SELECT count(*) FROM upd",
        {"username": username, "at": at},
    )
    return int(row[0])


def insert_session(
    db: Database,
    *,
    id_hash: str,
    username: str,
    csrf_token: str,
    at: datetime,
    expires_at: datetime,
) -> None:
    db.call_one(
        "WITH ins AS (INSERT INTO console_sessions (id_hash, username, csrf_token, created_at,"
        " last_seen_at, expires_at) VALUES (%(id_hash)s, %(username)s, %(csrf)s, %(at)s,"
        " %(at)s, %(expires_at)s) RETURNING 1) SELECT count(*) FROM ins",
        {
            "id_hash": id_hash,
            "username": username,
            "csrf": csrf_token,
            "at": at,
            "expires_at": expires_at,
        },
    )


def load_session(db: Database, id_hash: str) -> SessionRow | None:
    """The session with this id hash and its account, signed out or not."""
    prefixed = ", ".join(f"a.{c.strip()}" for c in _ACCOUNT_COLUMNS.split(","))
    row = db.call_one(
        "SELECT s.id_hash, s.username, s.csrf_token, s.created_at, s.last_seen_at,"
        f" s.expires_at, s.signed_out_at, {prefixed}"
        " FROM (SELECT 1) AS one LEFT JOIN console_sessions s ON s.id_hash = %(id_hash)s"
        " LEFT JOIN console_accounts a ON a.username = s.username",
        {"id_hash": id_hash},
    )
    if row[0] is None:
        return None
    id_hash_, username, csrf, created, seen, expires, signed_out = row[:7]
    return SessionRow(
        id_hash=id_hash_,
        username=username,
        csrf_token=csrf,
        created_at=created,
        last_seen_at=seen,
        expires_at=expires,
        signed_out_at=signed_out,
        account=AccountRow(*row[7:]),
    )


def touch_session(db: Database, id_hash: str, *, at: datetime) -> bool:
    """Move a live session's last-seen time forward; False if it is signed out."""
    row = db.call_one(
        "WITH upd AS (UPDATE console_sessions SET last_seen_at = greatest(last_seen_at, %(at)s)"
        " WHERE id_hash = %(id_hash)s AND signed_out_at IS NULL RETURNING 1)"
        " SELECT count(*) FROM upd",
        {"id_hash": id_hash, "at": at},
    )
    return bool(row[0])


def sign_out(db: Database, id_hash: str, *, at: datetime) -> bool:
    """End a session for good; False if it was already signed out or never existed."""
    row = db.call_one(
        "WITH upd AS (UPDATE console_sessions SET signed_out_at = %(at)s"
        " WHERE id_hash = %(id_hash)s AND signed_out_at IS NULL RETURNING 1)"
        " SELECT count(*) FROM upd",
        {"id_hash": id_hash, "at": at},
    )
    return bool(row[0])


def prune_sessions(db: Database, *, before: datetime) -> int:
    """Forget sessions that expired before ``before``; returns how many."""
    row = db.call_one(
        "WITH del AS (DELETE FROM console_sessions WHERE expires_at < %(before)s RETURNING 1)"
        " SELECT count(*) FROM del",
        {"before": before},
    )
    return int(row[0])
