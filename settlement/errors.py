"""Errors of the settlement engine, as callers (API, CLI) see them::

    SettlementError
    ├── InvalidInput               bad input; nothing was changed (HTTP 422)
    │   ├── UnknownState
    │   ├── UnknownEvent
    │   ├── InvalidAmount
    │   └── InvalidText            missing, empty or oversize reason / reference
    ├── NotAuthorised              the actor's role or party may not do this (HTTP 403)
    ├── CommitmentNotFound         (HTTP 404)
    ├── Conflict                   the request lost a race; re-read and retry (HTTP 409)
    │   ├── StaleVersion
    │   └── RequestInFlight        same idempotency key being processed
    ├── IdempotencyKeyReused       same key, different request (HTTP 422)
    ├── TransitionNotAllowed       the event is not allowed in the current state (HTTP 409)
    └── EngineUnavailable          the database cannot be reached (HTTP 503)

``ledger`` errors are translated to these in one place: ``settlement.service``.
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


class NotAuthorised(SettlementError):
    code = "not_authorised"


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


class EngineUnavailable(SettlementError):
    code = "engine_unavailable"
