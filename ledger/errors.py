"""Typed errors of the system of record.

Every psycopg / SQLAlchemy error that leaves this package is translated here, in
``translate``, and nowhere else::

    LedgerError
    ├── DatabaseUnavailable        cannot reach or start the server (08xxx, 57Pxx)
    ├── TransientConflict          retry the whole transaction
    │   ├── SerializationFailure   SQLSTATE 40001
    │   └── DeadlockDetected       SQLSTATE 40P01
    ├── RecordNotFound             SE404: the commitment does not exist
    ├── StaleVersion               SE409: the row moved on since the caller read it
    ├── GuardFailed                SE403: ownership / segregation guard refused
    ├── TransitionRefused          SE422, SE001: the event is not allowed from the state
    ├── IntegrityRefused           the database refused a change to protected data
    │   ├── TerminalRowImmutable   SE002
    │   ├── AuditAppendOnly        SE003 (UPDATE / DELETE / TRUNCATE of history)
    │   ├── ProtectedColumn        SE004 (identity columns, version discipline)
    │   ├── MissingAuditEntry      SE005 (a change committed without its audit entry)
    │   └── SettlementRuleBroken   SE006 (decision, leg or submission rules of DVP)
    ├── IdempotencyInFlight        the same (actor, key) is being processed now
    ├── IdempotencyKeyReused       the key was used for a different request
    ├── PermissionRefused          SQLSTATE 42501 (the role may not do this)
    ├── ConstraintViolation        SQLSTATE class 23 (CHECK, UNIQUE, FK ...)
    └── DatabaseError              anything else, with the SQLSTATE kept
        └── ValueRefused           SQLSTATE class 22: a value its type cannot hold (and
                                   psycopg's refusal before sending, e.g. NUL in text)
"""

from __future__ import annotations

import psycopg
import sqlalchemy.exc


class LedgerError(Exception):
    """Base of every error raised by ``ledger``."""

    sqlstate: str | None = None

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        if sqlstate is not None:
            self.sqlstate = sqlstate


class DatabaseUnavailable(LedgerError):
    """The server cannot be reached, started or authenticated against."""


class TransientConflict(LedgerError):
    """The transaction lost a race the database resolves by aborting it; retry it whole."""


class SerializationFailure(TransientConflict):
    sqlstate = "40001"


class DeadlockDetected(TransientConflict):
    sqlstate = "40P01"


class RecordNotFound(LedgerError):
    sqlstate = "SE404"


class StaleVersion(LedgerError):
    sqlstate = "SE409"


class GuardFailed(LedgerError):
    sqlstate = "SE403"


class TransitionRefused(LedgerError):
    sqlstate = "SE422"


class IntegrityRefused(LedgerError):
    """The database itself refused to change protected data."""


class TerminalRowImmutable(IntegrityRefused):
    sqlstate = "SE002"


class AuditAppendOnly(IntegrityRefused):
    sqlstate = "SE003"


class ProtectedColumn(IntegrityRefused):
    sqlstate = "SE004"


class MissingAuditEntry(IntegrityRefused):
    sqlstate = "SE005"


class SettlementRuleBroken(IntegrityRefused):
    sqlstate = "SE006"


class PermissionRefused(LedgerError):
    sqlstate = "42501"


class ConstraintViolation(LedgerError):
    """A CHECK, UNIQUE, NOT NULL or foreign-key constraint refused the row."""


class DatabaseError(LedgerError):
    """Any other database error; ``sqlstate`` says which."""


class ValueRefused(DatabaseError):
    """A value the database cannot take as data: the caller's input, not a fault."""

    sqlstate = "22000"


_BY_SQLSTATE: dict[str, type[LedgerError]] = {
    "40001": SerializationFailure,
    "40P01": DeadlockDetected,
    "SE404": RecordNotFound,
    "SE409": StaleVersion,
    "SE403": GuardFailed,
    "SE422": TransitionRefused,
    "SE001": TransitionRefused,
    "SE002": TerminalRowImmutable,
    "SE003": AuditAppendOnly,
    "SE004": ProtectedColumn,
    "SE005": MissingAuditEntry,
    "SE006": SettlementRuleBroken,
    "42501": PermissionRefused,
}


def translate(exc: BaseException) -> LedgerError:
    """Map a driver or SQLAlchemy exception to the matching ``LedgerError``.

    Callers write ``raise translate(exc) from exc`` so the original stays attached.
    """
    if isinstance(exc, LedgerError):
        return exc
    orig: BaseException = exc
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
        orig = exc.orig
    if isinstance(orig, psycopg.OperationalError) and getattr(orig, "sqlstate", None) is None:
        return DatabaseUnavailable(str(orig).strip() or "database unavailable")
    sqlstate = getattr(orig, "sqlstate", None)
    message = _primary_message(orig)
    if sqlstate is None:
        # psycopg refuses some values before sending them (a NUL in text): no SQLSTATE
        return (
            ValueRefused(message) if isinstance(orig, psycopg.DataError) else DatabaseError(message)
        )
    cls = _BY_SQLSTATE.get(sqlstate)
    if cls is None and sqlstate.startswith("23"):
        cls = ConstraintViolation
    if cls is None and sqlstate.startswith("22"):
        cls = ValueRefused
    if cls is None and (sqlstate.startswith("08") or sqlstate.startswith("57P")):
        # 08: connection exceptions; 57P01..57P05: the server was shut down, crashed,
        # is not accepting connections yet, or dropped an idle session. Retrying later
        # may work, so callers see unavailability (HTTP 503), not an internal error.
        cls = DatabaseUnavailable
    return (cls or DatabaseError)(message, sqlstate=sqlstate)


def _primary_message(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return str(primary or exc).strip()


class IdempotencyInFlight(LedgerError):
    """Another request with the same (actor, key) is being processed right now (HTTP 409)."""


class IdempotencyKeyReused(LedgerError):
    """The key was already used by this actor for a different request (HTTP 422)."""
