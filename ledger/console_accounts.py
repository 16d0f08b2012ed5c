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


def record_failure(
    db: Database, username: str, *, at: datetime, max_attempts: int, lock_for: timedelta
) -> datetime | None:
    """Count a failed sign-in; at ``max_attempts`` the account locks until ``at + lock_for``
    and the count starts again. Returns the lock's end if this failure locked it.

    One statement, so concurrent failures cannot both read the same count.
    """
    row = db.call_one(
        "WITH upd AS (UPDATE console_accounts SET"
        " failed_attempts = CASE WHEN failed_attempts + 1 >= %(max)s THEN 0"
        "   ELSE failed_attempts + 1 END,"
        " locked_until = CASE WHEN failed_attempts + 1 >= %(max)s THEN %(until)s"
        "   ELSE locked_until END,"
        " updated_at = %(at)s"
        " WHERE username = %(username)s"
        " RETURNING CASE WHEN failed_attempts = 0 THEN locked_until END AS locked)"
        " SELECT (SELECT locked FROM upd)",
        {"username": username, "max": max_attempts, "until": at + lock_for, "at": at},
    )
    locked = row[0]
    return locked if isinstance(locked, datetime) and locked > at else None


def record_success(
    db: Database, username: str, *, at: datetime, new_hash: str | None = None
) -> None:
    """Clear the failure count and lock after a good password; store ``new_hash`` when
    the password was rehashed under new parameters."""
    db.call_one(
        "WITH upd AS (UPDATE console_accounts SET failed_attempts = 0, locked_until = NULL,"
        " last_sign_in_at = %(at)s, updated_at = %(at)s,"
        " password_hash = coalesce(%(hash)s, password_hash)"
        " WHERE username = %(username)s RETURNING 1) SELECT count(*) FROM upd",
        {"username": username, "at": at, "hash": new_hash},
    )


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
