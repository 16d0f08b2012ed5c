"""Console accounts, sign-in and server-side sessions.

An account is a username and an argon2 password hash mapped to an actor id and a role,
exactly as an API key is: ``compliance_officer`` (the actor id is a registered officer)
or ``admin``. Everything the console then does, it does as that ``Actor`` through the
engine's services, so segregation of duties and four eyes apply as they do to the API.

Errors, beside ``settlement.domain.errors``::

    SettlementError
    ├── NotAuthorised
    │   └── SignInFailed       wrong username or password, disabled or locked account:
    │                          one message for all, so a caller learns nothing of which
    └── NotFound
        └── AccountNotFound    an operator named an account that does not exist

A session id is 32 random bytes, given to the browser once and stored only as its
SHA-256; the CSRF token of the session is stored beside it. A session ends at the first
of: sign-out, ``idle_timeout`` without a request, ``session_ttl`` after sign-in, the
account being disabled. All times come from the injected clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ledger import console_accounts as store
from ledger.console_accounts import AccountRow
from ledger.database import Database
from settlement.clock import Clock
from settlement.domain import errors
from settlement.domain.values import Actor, Role
from settlement.services.compliance import ComplianceService
from settlement.services.translate import translated

#: roles a console account may hold: the people who work the queue and run the desk
ACCOUNT_ROLES = (Role.COMPLIANCE_OFFICER, Role.ADMIN)
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD_CHARS = 12
#: argon2 hashes any length, but a megabyte "password" is an attack on the CPU
MAX_PASSWORD_CHARS = 1024
DEFAULT_SESSION_TTL_S = 8 * 3600
DEFAULT_IDLE_TIMEOUT_S = 30 * 60
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_LOCKOUT_S = 15 * 60
_KEEP_ENDED_SESSIONS = timedelta(days=7)
SIGN_IN_FAILED = (
    "Sign-in failed: the username or password is wrong, or the account is disabled or "
    "locked after repeated failures. Try again later or ask an admin."
)


class SignInFailed(errors.NotAuthorised):
    code = "sign_in_failed"


class AccountNotFound(errors.NotFound):
    code = "account_not_found"


class SessionEnd(StrEnum):
    """Why a presented session cookie no longer signs anyone in."""

    UNKNOWN = "unknown"
    SIGNED_OUT = "signed_out"
    EXPIRED = "expired"
    DISABLED = "disabled"


@dataclass(frozen=True)
class ConsoleSession:
    """A live session: who acts, and the CSRF token every form of it must carry."""

    id_hash: str
    username: str
    actor: Actor
    csrf_token: str
    expires_at: datetime

    def csrf_matches(self, presented: str | None) -> bool:
        """Constant-time comparison with the session's token; False when absent."""
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self.csrf_token.encode())


@dataclass(frozen=True)
class SignedIn:
    #: the raw session id for the cookie; it is not stored anywhere
    session_id: str
    session: ConsoleSession


@dataclass(frozen=True)
class SessionLookup:
    session: ConsoleSession | None
    #: why there is no session (None when there is one)
    ended: SessionEnd | None


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class ConsoleAccounts:
    """Accounts, sign-in with lockout, and sessions, over the ``console_*`` tables."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        compliance: ComplianceService,
        *,
        hasher: PasswordHasher | None = None,
        session_ttl: timedelta = timedelta(seconds=DEFAULT_SESSION_TTL_S),
        idle_timeout: timedelta = timedelta(seconds=DEFAULT_IDLE_TIMEOUT_S),
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        lockout: timedelta = timedelta(seconds=DEFAULT_LOCKOUT_S),
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if session_ttl <= timedelta(0) or idle_timeout <= timedelta(0):
            raise ValueError("session lifetimes must be positive")
        self._db = db
        self._clock = clock
        self._compliance = compliance
        self._hasher = hasher or PasswordHasher()
        self._session_ttl = session_ttl
        self._idle_timeout = idle_timeout
        self._max_attempts = max_attempts
        self._lockout = lockout
        # verified against when the username is unknown, so that case costs what a
        # wrong password costs
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    # -- accounts (operator commands) -----------------------------------------------

    def create(
        self, *, username: str, password: str, actor_id: str, role: Role | str, created_by: str
    ) -> AccountRow:
        """Create a console account acting as ``actor_id`` in ``role``.

        Raises ``InvalidInput`` for a malformed username, a password shorter than
        ``MIN_PASSWORD_CHARS``, or a role other than compliance_officer or admin;
        ``NotAnOfficer`` when an officer account names no active registered officer;
        ``Conflict`` when the username or the actor id already has an account.
        """
        name = parse_username(username)
        check_password(password)
        try:
            parsed = Role(role)
        except ValueError:
            parsed = None
        if parsed not in ACCOUNT_ROLES:
            raise errors.InvalidInput(
                "a console account is a compliance_officer or an admin, not " + str(role)
            )
        assert parsed is not None
        actor = Actor(actor_id, parsed)
        if parsed is Role.COMPLIANCE_OFFICER:
            officers = {o.officer_id: o for o in self._compliance.officers()}
            officer = officers.get(actor.id)
            if officer is None or not officer.active:
                raise errors.NotAnOfficer(
                    f"{actor.id} is not an active registered compliance officer; "
                    "register it first (settle officers add)"
                )
        with translated():
            store.insert_account(
                self._db,
                username=name,
                password_hash=self._hasher.hash(password),
                actor_id=actor.id,
                role=parsed.value,
                at=self._clock.now(),
                created_by=created_by,
            )
        created = store.load_account(self._db, name)
        assert created is not None
        return created

    def accounts(self) -> list[AccountRow]:
        with translated():
            return store.list_accounts(self._db)

    def set_active(self, username: str, active: bool) -> None:
        """Enable or disable an account; disabling also ends its live sessions."""
        now = self._clock.now()
        with translated():
            if not store.update_account(self._db, username, at=now, active=active):
                raise AccountNotFound(f"no console account {username!r}")
            if not active:
                store.end_sessions_of(self._db, username, at=now)

    def unlock(self, username: str) -> None:
        """Clear an account's failure count and lockout."""
        with translated():
            if not store.update_account(self._db, username, at=self._clock.now(), unlock=True):
                raise AccountNotFound(f"no console account {username!r}")

    def set_password(self, username: str, password: str) -> None:
        """Replace the password; every live session of the account ends."""
        check_password(password)
        now = self._clock.now()
        with translated():
            changed = store.update_account(
                self._db, username, at=now, password_hash=self._hasher.hash(password)
            )
            if not changed:
                raise AccountNotFound(f"no console account {username!r}")
            store.end_sessions_of(self._db, username, at=now)

    # -- sign-in and sessions ---------------------------------------------------------

    def sign_in(self, username: str, password: str) -> SignedIn:
        """A new session for a right password on an active, unlocked account.

        Raises ``SignInFailed`` (always with ``SIGN_IN_FAILED``) otherwise. Every
        attempt counts towards the lockout before its password is checked; the
        ``max_attempts``-th since the last success locks the account for the lockout
        period, during which even the right password fails. Attempts made at once are
        no way around it: at most ``max_attempts`` of them have their password checked,
        and a right password does not clear a lock that another attempt set meanwhile.
        """
        now = self._clock.now()
        attempt = None
        if USERNAME.fullmatch(username or "") and len(password) <= MAX_PASSWORD_CHARS:
            with translated():
                attempt = store.begin_attempt(
                    self._db,
                    username,
                    at=now,
                    max_attempts=self._max_attempts,
                    lock_for=self._lockout,
                )
        if attempt is None:
            # unknown, disabled or locked: the same check's cost, and nothing counted
            # while locked (the lock would otherwise never end under attack)
            self._verify(self._dummy_hash, password[:MAX_PASSWORD_CHARS])
            raise SignInFailed(SIGN_IN_FAILED)
        account = attempt.account
        if not self._verify(account.password_hash, password):
            raise SignInFailed(SIGN_IN_FAILED)
        new_hash = None
        if self._hasher.check_needs_rehash(account.password_hash):
            new_hash = self._hasher.hash(password)
        with translated():
            cleared = store.record_success(
                self._db,
                account.username,
                at=now,
                own_lock=attempt.locked_until,
                new_hash=new_hash,
            )
        if not cleared:
            raise SignInFailed(SIGN_IN_FAILED)
        return self._new_session(account, now)

    def _new_session(self, account: AccountRow, now: datetime) -> SignedIn:
        session_id = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        id_hash = hash_session_id(session_id)
        expires_at = now + self._session_ttl
        with translated():
            store.insert_session(
                self._db,
                id_hash=id_hash,
                username=account.username,
                csrf_token=csrf_token,
                at=now,
                expires_at=expires_at,
            )
            # sessions long past their end are of no use, even to explain an expiry
            store.prune_sessions(self._db, before=now - _KEEP_ENDED_SESSIONS)
        return SignedIn(
            session_id,
            ConsoleSession(id_hash, account.username, _actor(account), csrf_token, expires_at),
        )

    def lookup(self, session_id: str | None) -> SessionLookup:
        """The live session for a cookie value, moving its idle timer; or why there is none."""
        if not session_id or len(session_id) > 128:
            return SessionLookup(None, SessionEnd.UNKNOWN)
        id_hash = hash_session_id(session_id)
        now = self._clock.now()
        with translated():
            row = store.load_session(self._db, id_hash)
        if row is None:
            return SessionLookup(None, SessionEnd.UNKNOWN)
        if row.signed_out_at is not None:
            return SessionLookup(None, SessionEnd.SIGNED_OUT)
        if now >= row.expires_at or now - row.last_seen_at >= self._idle_timeout:
            return SessionLookup(None, SessionEnd.EXPIRED)
        if not row.account.active:
            return SessionLookup(None, SessionEnd.DISABLED)
        with translated():
            if not store.touch_session(self._db, id_hash, at=now):
                return SessionLookup(None, SessionEnd.SIGNED_OUT)
        session = ConsoleSession(
            id_hash, row.username, _actor(row.account), row.csrf_token, row.expires_at
        )
        return SessionLookup(session, None)

    def sign_out(self, session: ConsoleSession) -> None:
        """End the session for good: its cookie signs no one in from now on."""
        with translated():
            store.sign_out(self._db, session.id_hash, at=self._clock.now())

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def parse_username(value: str) -> str:
    name = (value or "").strip()
    if not USERNAME.fullmatch(name):
        raise errors.InvalidInput(
            "username must be 1-64 of a-z 0-9 . _ - and start with a letter or digit"
        )
    return name


def check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise errors.InvalidInput(f"a password has at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise errors.InvalidInput(f"a password has at most {MAX_PASSWORD_CHARS} characters")


def _actor(account: AccountRow) -> Actor:
    return Actor(account.actor_id, Role(account.role))
