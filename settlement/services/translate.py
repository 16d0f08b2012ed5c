"""The one place where ``ledger`` and ``compliance`` errors become engine errors.

Whatever calls ``ledger`` or ``compliance`` (the services, and the API's guard and read
models) wraps the call in ``translated()``; nothing else should catch a database or
compliance exception to re-raise it as a ``settlement.domain.errors`` one. A value the
database refuses as data (``ledger``'s ``ValueRefused``) is the caller's bad input; a
record the database does not find is a ``CommitmentNotFound`` (a caller that looks up
another kind of record, a settlement say, catches ``RecordNotFound`` inside the block to
name what was missing). The HTTP status of each engine error is its own
``http_status``, not decided here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from compliance import errors as compliance_errors
from compliance.records import KycVersionConflict
from ledger import errors as db_errors
from settlement.domain import errors
from settlement.domain.states import Event

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
    except db_errors.DatabaseError as exc:
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


def _from_database_error(exc: db_errors.DatabaseError) -> errors.SettlementError | None:
    """The engine error of a database error not named above; None lets it through."""
    if isinstance(exc, db_errors.ValueRefused):
        return errors.InvalidInput(f"the database refused a value: {exc}")
    mapped = _COMPLIANCE_SQLSTATES.get(exc.sqlstate or "")
    return mapped(str(exc)) if mapped is not None else None


def from_compliance(exc: compliance_errors.ComplianceError) -> errors.SettlementError:
    """The engine error of a ``compliance`` error (``translated()`` raises it)."""
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
