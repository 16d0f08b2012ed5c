"""Errors of the settlement engine, as callers (API, console, CLI) see them::

    SettlementError                status 500 unless a family below says otherwise
    ├── InvalidInput               bad input; nothing was changed (HTTP 422)
    │   ├── UnknownState
    │   ├── UnknownEvent
    │   ├── InvalidAmount
    │   ├── InvalidText            missing, empty or oversize reason / reference
    │   ├── InvalidPartyData       a KYC record field is missing or malformed
    │   ├── UnknownParty           a party of the commitment has no KYC record
    │   ├── InvalidPeriod          a statement period malformed, reversed or too long
    │   ├── InvalidSanctionsList   unreadable or malformed list file; the old list stays
    │   ├── InvalidWebhookUrl      not an absolute http(s) URL, or one the network refuses
    │   └── UnknownEventType       a webhook event type that does not exist
    ├── NotAuthorised              the actor's role or party may not do this (HTTP 403)
    │   ├── NotAnOfficer           not an active registered compliance officer
    │   └── SegregationOfDuties    the submitter approving, one officer approving twice,
    │       │                      too few distinct approvals (four eyes)
    │       └── OverrideRequired   a hard fail needs a senior officer's override reason
    ├── NotFound                   the thing asked for does not exist (HTTP 404)
    │   ├── CommitmentNotFound
    │   ├── SettlementNotFound     no such settlement, or a commitment with none yet
    │   ├── PartyNotFound          the party asked for has no KYC record
    │   └── WebhookEndpointNotFound
    ├── Conflict                   the request lost a race; re-read and retry (HTTP 409)
    │   ├── StaleVersion
    │   └── RequestInFlight        same idempotency key being processed
    ├── IdempotencyKeyReused       same key, different request (HTTP 422)
    ├── TransitionNotAllowed       the event is not allowed in the current state (HTTP 409)
    │   └── NotUnderReview         an officer acted on a commitment not in PENDING_REVIEW
    └── EngineUnavailable          the database cannot be reached (HTTP 503)

The services add a few of their own under these families (``KeyNotFound`` and
``AccountNotFound`` are ``NotFound``s; ``SignInFailed`` is ``NotAuthorised``).

``http_status`` is the one map from error to HTTP status: the API's problem responses
and the console's error pages both answer with it, so the two cannot disagree. A class
inherits its family's status; ``SettlementError`` itself, and any error no family
claims, is 500 (an error the engine did not expect to raise). The status lives on the
class, beside the tree above, so that a new family names its status where it is
declared.

``UnknownParty`` is bad input (a commitment naming a party without a KYC record);
``PartyNotFound`` is the party a request asked for not existing: the API turns the
first into the second only where the party is the resource read.

``ledger`` and ``compliance`` errors are translated to these in one place:
``settlement.services.translate.translated()``.
"""

from __future__ import annotations


class SettlementError(Exception):
    """Base of the engine's errors. ``code`` is a stable machine-readable name (the
    API's problem ``code``); ``http_status`` the status an HTTP caller is answered."""

    code = "settlement_error"
    http_status = 500


class InvalidInput(SettlementError, ValueError):
    code = "invalid_input"
    http_status = 422


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


class InvalidPeriod(InvalidInput):
    """A statement period that is not two aware ISO-8601 times (or dates), ``from``
    before ``to``, at most the longest period a statement covers."""

    code = "invalid_period"


class InvalidSanctionsList(InvalidInput):
    code = "invalid_sanctions_list"


class InvalidWebhookUrl(InvalidInput):
    code = "invalid_webhook_url"


class UnknownEventType(InvalidInput):
    code = "unknown_event_type"


class NotAuthorised(SettlementError):
    code = "not_authorised"
    http_status = 403


class NotAnOfficer(NotAuthorised):
    code = "not_an_officer"


class SegregationOfDuties(NotAuthorised):
    code = "segregation_of_duties"


class OverrideRequired(SegregationOfDuties):
    code = "override_required"


class NotFound(SettlementError):
    code = "not_found"
    http_status = 404


class CommitmentNotFound(NotFound):
    code = "commitment_not_found"


class SettlementNotFound(NotFound):
    code = "settlement_not_found"


class PartyNotFound(NotFound):
    code = "party_not_found"


class WebhookEndpointNotFound(NotFound):
    code = "webhook_endpoint_not_found"


class Conflict(SettlementError):
    code = "conflict"
    http_status = 409


class StaleVersion(Conflict):
    code = "stale_version"


class RequestInFlight(Conflict):
    code = "request_in_flight"


class IdempotencyKeyReused(SettlementError):
    code = "idempotency_key_reused"
    http_status = 422


class TransitionNotAllowed(SettlementError):
    code = "transition_not_allowed"
    http_status = 409


class NotUnderReview(TransitionNotAllowed):
    code = "not_under_review"


class EngineUnavailable(SettlementError):
    code = "engine_unavailable"
    http_status = 503
