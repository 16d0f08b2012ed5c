"""Errors of the settlement engine, as callers (API, CLI) see them::

    SettlementError
    ├── InvalidInput               bad input; nothing was changed (HTTP 422)
    │   ├── UnknownState
    │   ├── UnknownEvent
    │   ├── InvalidAmount
    │   ├── InvalidText            missing, empty or oversize reason / reference
    │   ├── InvalidPartyData       a KYC record field is missing or malformed
    │   ├── UnknownParty           a party of the commitment has no KYC record
    │   └── InvalidSanctionsList   unreadable or malformed list file; the old list stays
    ├── NotAuthorised              the actor's role or party may not do this (HTTP 403)
    │   ├── NotAnOfficer           not an active registered compliance officer
    │   └── SegregationOfDuties    the submitter approving, one officer approving twice,
    │       │                      too few distinct approvals (four eyes)
    │       └── OverrideRequired   a hard fail needs a senior officer's override reason
    ├── CommitmentNotFound         (HTTP 404)
    ├── Conflict                   the request lost a race; re-read and retry (HTTP 409)
    │   ├── StaleVersion
    │   └── RequestInFlight        same idempotency key being processed
    ├── IdempotencyKeyReused       same key, different request (HTTP 422)
    ├── TransitionNotAllowed       the event is not allowed in the current state (HTTP 409)
    │   └── NotUnderReview         an officer acted on a commitment not in PENDING_REVIEW
    └── EngineUnavailable          the database cannot be reached (HTTP 503)

``ledger`` and ``compliance`` errors are translated to these in one place:
``settlement.services.commitments``.
"""

from __future__ import annotations


class SettlementError(Exception):
    """Base of the engine's errors. ``code`` is a stable machine-readable name."""

    code = "settlement_error"


class InvalidInput(SettlementError, ValueError):
    code = "invalid_input"


class UnknownState(InvalidInput):
    code = "unknown_state"


class UnknownEvent(InvalidInput):
    code = "unknown_event"


class InvalidAmount(InvalidInput):
    code = "invalid_amount"


class InvalidText(InvalidInput):
    code = "invalid_text"


class InvalidPartyData(InvalidInput):
    code = "invalid_party_data"


class UnknownParty(InvalidInput):
    code = "unknown_party"


class InvalidSanctionsList(InvalidInput):
    code = "invalid_sanctions_list"


class NotAuthorised(SettlementError):
    code = "not_authorised"


class NotAnOfficer(NotAuthorised):
    code = "not_an_officer"


class SegregationOfDuties(NotAuthorised):
    code = "segregation_of_duties"


class OverrideRequired(SegregationOfDuties):
    code = "override_required"


class CommitmentNotFound(SettlementError):
    code = "commitment_not_found"


class Conflict(SettlementError):
    code = "conflict"


class StaleVersion(Conflict):
    code = "stale_version"


class RequestInFlight(Conflict):
    code = "request_in_flight"


class IdempotencyKeyReused(SettlementError):
    code = "idempotency_key_reused"


class TransitionNotAllowed(SettlementError):
    code = "transition_not_allowed"


class NotUnderReview(TransitionNotAllowed):
    code = "not_under_review"


class EngineUnavailable(SettlementError):
    code = "engine_unavailable"
