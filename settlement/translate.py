"""The one place where ``ledger`` and ``compliance`` errors become engine errors.

Services wrap their calls in ``translated()``; nothing else catches a database or
compliance exception to re-raise it as a ``settlement.errors`` one. A value the
database refuses as data (SQLSTATE class 22, or psycopg's ``DataError`` before the
statement is even sent, as for a NUL in text) is the caller's bad input, whether it
arrives as a ``ledger`` error or straight from a statement run on a unit of work's
connection.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psycopg
import sqlalchemy.exc

from compliance import errors as compliance_errors
from compliance.records import KycVersionConflict
from ledger import errors as db_errors
from settlement import errors
from settlement.states import Event

#: SQLSTATEs of migration 0002 (compliance), kept by ``ledger`` on ``DatabaseError``
_COMPLIANCE_SQLSTATES: Mapping[str, type[errors.SettlementError]] = {
    "SE430": errors.SegregationOfDuties,  # the submitter approving
    "SE431": errors.SegregationOfDuties,  # one officer approving twice in a round
    "SE432": errors.OverrideRequired,  # a hard fail without a senior override
    "SE433": errors.NotAnOfficer,
    "SE434": errors.SegregationOfDuties,  # too few distinct approvals (four eyes)
    "SE435": errors.NotUnderReview,  # no screening for the current review round
}
OFFICER_EVENTS = frozenset({Event.APPROVE, Event.REJECT, Event.REQUEST_INFO})


@contextmanager
def translated(*, officer_event: bool = False) -> Iterator[None]:
    """The one place where ``ledger`` and ``compliance`` errors become engine errors."""
    try:
        yield
    except db_errors.RecordNotFound as exc:
        raise errors.CommitmentNotFound(str(exc)) from exc
    except (db_errors.StaleVersion, KycVersionConflict) as exc:
        raise errors.StaleVersion(str(exc)) from exc
    except db_errors.GuardFailed as exc:
        raise errors.NotAuthorised(str(exc)) from exc
    except db_errors.TransitionRefused as exc:
        refused = errors.NotUnderReview if officer_event else errors.TransitionNotAllowed
        raise refused(str(exc)) from exc
    except (db_errors.DatabaseError, psycopg.DataError, sqlalchemy.exc.DataError) as exc:
        mapped = _from_database_error(exc)
        if mapped is None:
            raise
        raise mapped from exc
    except compliance_errors.ComplianceError as exc:
        raise from_compliance(exc) from exc
    except db_errors.IdempotencyInFlight as exc:
        raise errors.RequestInFlight(str(exc)) from exc
    except db_errors.IdempotencyKeyReused as exc:
        raise errors.IdempotencyKeyReused(str(exc)) from exc
    except db_errors.ConstraintViolation as exc:
        if exc.sqlstate == "23505":
            raise errors.Conflict(f"already exists: {exc}") from exc
        raise errors.InvalidInput(str(exc)) from exc
    except (db_errors.DatabaseUnavailable, db_errors.TransientConflict) as exc:
        raise errors.EngineUnavailable(str(exc)) from exc


_DriverDataError = psycopg.DataError | sqlalchemy.exc.DataError


def _from_database_error(
    exc: db_errors.DatabaseError | _DriverDataError,
) -> errors.SettlementError | None:
    """The engine error of a database error this module does not name; None to let it
    through (an internal error)."""
    if isinstance(exc, _DriverDataError):
        # raised straight from a statement run on a unit of work's connection
        return errors.InvalidInput(f"the database refused a value: {_driver_message(exc)}")
    if _refused_as_data(exc):
        return errors.InvalidInput(f"the database refused a value: {exc}")
    mapped = _COMPLIANCE_SQLSTATES.get(exc.sqlstate or "")
    return mapped(str(exc)) if mapped is not None else None


def _refused_as_data(exc: db_errors.DatabaseError) -> bool:
    if (exc.sqlstate or "").startswith("22"):
        return True
    cause = exc.__cause__
    if isinstance(cause, sqlalchemy.exc.DBAPIError):
        cause = cause.orig
    return isinstance(cause, psycopg.DataError)


def _driver_message(exc: _DriverDataError) -> str:
    # SQLAlchemy's text repeats the statement and its parameters: the driver's alone
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
        return str(exc.orig).strip()
    return str(exc).strip()


def from_compliance(exc: compliance_errors.ComplianceError) -> errors.SettlementError:
    match exc:
        case compliance_errors.InvalidPartyData():
            return errors.InvalidPartyData(str(exc))
        case compliance_errors.UnknownParty():
            return errors.UnknownParty(str(exc))
        case compliance_errors.UnknownOfficer():
            return errors.NotAnOfficer(str(exc))
        case compliance_errors.SanctionsListError():
            return errors.InvalidSanctionsList(str(exc))
        case _:
            # PolicyError is a start-up problem (bootstrap reports it as a bad setting)
            return errors.SettlementError(str(exc))
