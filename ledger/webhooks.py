"""Webhook records: endpoints, the outbox of events, and their deliveries.

The outbox is written by the database (migration 0016): each audit entry whose action
is in ``ACTIONS`` becomes an event, and a delivery per active endpoint that wants its
type for its party, in the transaction of the change. This module holds the event-type
vocabulary and every statement that reads or moves those rows; ``settlement`` decides
who may do what and when a delivery is attempted.

Event types are stable names a receiver may switch on; new ones may be added, none is
renamed. Each is one audit action:

=========================  ==========================================================
``commitment.created``     a commitment was created (DRAFT)
``commitment.submitted``   its owner submitted it for review (PENDING_REVIEW)
``commitment.withdrawn``   its owner withdrew it (CANCELLED)
``commitment.expired``     it passed its expiry before settling (CANCELLED)
``review.approval_recorded``  one officer approved; another approval is needed
``review.approved``        the review approved it (VERIFIED)
``review.rejected``        the review rejected it (CANCELLED); ``reason`` says why
``review.info_requested``  the review sent it back to its owner (DRAFT); ``reason``
``settlement.instructed``  a settlement was attached to it
``settlement.locked``      every leg is locked on its ledger (ESCROWED)
``settlement.committed``   every leg paid out (SETTLED); ``legs`` name the transactions
``settlement.unwound``     the legs went back to their senders: the commitment is
                           VERIFIED again (from ESCROWED), or stayed VERIFIED (the
                           settlement aborted before every leg locked)
``settlement.cancelled``   an admin's force-cancel unwound it (CANCELLED)
``settlement.flagged``     the settlement needs a person; ``reason`` says why
=========================  ==========================================================

Order: a delivery is due only when every earlier event (by audit ``seq``) of its
commitment to its endpoint is delivered. A dead earlier event therefore holds the later
ones of that commitment back until it is replayed and delivered: a receiver never sees
a commitment's events out of order, and a dead letter is visible as the one place a
commitment's stream stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final
from uuid import UUID

from ledger.database import Statements
from ledger.errors import RecordNotFound


class EventType(StrEnum):
    COMMITMENT_CREATED = "commitment.created"
    COMMITMENT_SUBMITTED = "commitment.submitted"
    COMMITMENT_WITHDRAWN = "commitment.withdrawn"
    COMMITMENT_EXPIRED = "commitment.expired"
    REVIEW_APPROVAL_RECORDED = "review.approval_recorded"
    REVIEW_APPROVED = "review.approved"
    REVIEW_REJECTED = "review.rejected"
    REVIEW_INFO_REQUESTED = "review.info_requested"
    SETTLEMENT_INSTRUCTED = "settlement.instructed"
    SETTLEMENT_LOCKED = "settlement.locked"
    SETTLEMENT_COMMITTED = "settlement.committed"
    SETTLEMENT_UNWOUND = "settlement.unwound"
    SETTLEMENT_CANCELLED = "settlement.cancelled"
    SETTLEMENT_FLAGGED = "settlement.flagged"


#: audit action -> the event type it is reported as (the database's
#: ``webhook_event_types``; a test holds them equal)
ACTIONS: Final = MappingProxyType(
    {
        "create": EventType.COMMITMENT_CREATED,
        "submit": EventType.COMMITMENT_SUBMITTED,
        "withdraw": EventType.COMMITMENT_WITHDRAWN,
        "expire": EventType.COMMITMENT_EXPIRED,
        "approval_recorded": EventType.REVIEW_APPROVAL_RECORDED,
        "approve": EventType.REVIEW_APPROVED,
        "reject": EventType.REVIEW_REJECTED,
        "request_info": EventType.REVIEW_INFO_REQUESTED,
        "settlement_instructed": EventType.SETTLEMENT_INSTRUCTED,
        "lock": EventType.SETTLEMENT_LOCKED,
        "settle": EventType.SETTLEMENT_COMMITTED,
        "release": EventType.SETTLEMENT_UNWOUND,
        "settlement_unwound": EventType.SETTLEMENT_UNWOUND,
        "force_cancel": EventType.SETTLEMENT_CANCELLED,
        "settlement_flagged": EventType.SETTLEMENT_FLAGGED,
    }
)
assert set(ACTIONS.values()) == set(EventType), "every event type is some action's"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True)
class EndpointRecord:
    id: UUID
    #: None: every party (an admin's endpoint)
    party: str | None
    url: str
    event_types: tuple[str, ...]
    active: bool
    created_by: str
    key_id: str | None
    created_at: datetime
    disabled_at: datetime | None
    disabled_by: str | None


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    endpoint_id: UUID
    event_id: UUID
    event_type: str
    commitment_id: UUID
    audit_seq: int
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery claimed for one attempt, with what is sent. The claim holds until
    ``next_attempt_at`` as claimed (the lease); recording the attempt ends it."""

    id: int
    endpoint_id: UUID
    url: str
    attempts: int
    first_attempt_at: datetime
    event_id: UUID
    event_type: str
    commitment_id: UUID
    party: str
    audit_seq: int
    occurred_at: datetime
    payload: dict[str, Any]


_ENDPOINT_COLUMNS = (
    "id, party, url, event_types, active, created_by, key_id, created_at, disabled_at, disabled_by"
)


def _endpoint(row: Any) -> EndpointRecord:
    id_, party, url, types, active, created_by, key_id, created_at, disabled_at, by = tuple(row)
    return EndpointRecord(
        id_, party, url, tuple(types), active, created_by, key_id, created_at, disabled_at, by
    )


def add_endpoint(
    uow: Statements,
    *,
    endpoint_id: UUID,
    party: str | None,
    url: str,
    event_types: list[str],
    created_by: str,
    key_id: str | None,
    at: datetime,
) -> EndpointRecord:
    row = uow.execute(
        f"INSERT INTO webhook_endpoints (id, party, url, event_types, created_by, key_id,"
        f" created_at) VALUES (:id, :party, :url, :types, :by, :key_id, :at)"
        f" RETURNING {_ENDPOINT_COLUMNS}",
        {
            "id": endpoint_id,
            "party": party,
            "url": url,
            "types": list(event_types),
            "by": created_by,
            "key_id": key_id,
            "at": at,
        },
    ).one()
    return _endpoint(row)


def get_endpoint(uow: Statements, endpoint_id: UUID) -> EndpointRecord:
    """The endpoint; ``RecordNotFound`` if there is none."""
    row = uow.execute(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = :id", {"id": endpoint_id}
    ).one_or_none()
    if row is None:
        raise RecordNotFound(f"webhook endpoint {endpoint_id} not found")
    return _endpoint(row)


def list_endpoints(uow: Statements, *, party: str | None, limit: int = 500) -> list[EndpointRecord]:
    """Endpoints, oldest first: of ``party`` only (its own, not the every-party ones)
    when given, else all."""
    where = "WHERE party = :party" if party is not None else ""
    rows = uow.execute(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints {where}"
        " ORDER BY created_at, id LIMIT :limit",
        {"party": party, "limit": limit},
    )
    return [_endpoint(r) for r in rows]


def disable_endpoint(uow: Statements, endpoint_id: UUID, *, by: str, at: datetime) -> bool:
    """Stop delivering to the endpoint; False if it was already disabled. Its pending
    deliveries stay pending and are not attempted."""
    rows = uow.execute(
        "UPDATE webhook_endpoints SET active = false, disabled_at = :at, disabled_by = :by"
        " WHERE id = :id AND active",
        {"id": endpoint_id, "at": at, "by": by},
    )
    return rows.rowcount == 1


_DELIVERY_COLUMNS = (
    "d.id, d.endpoint_id, d.event_id, e.type, d.commitment_id, d.audit_seq, d.status,"
    " d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.delivered_at"
)


def list_deliveries(
    uow: Statements, endpoint_id: UUID, *, status: DeliveryStatus | None, limit: int
) -> list[DeliveryRecord]:
    """The endpoint's deliveries, newest first, of one status when given."""
    where = "AND d.status = :status" if status is not None else ""
    rows = uow.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries d"
        " JOIN webhook_events e ON e.id = d.event_id"
        f" WHERE d.endpoint_id = :endpoint {where} ORDER BY d.id DESC LIMIT :limit",
        {"endpoint": endpoint_id, "status": status and status.value, "limit": limit},
    )
    return [DeliveryRecord(*tuple(r)) for r in rows]


def replay_dead(
    uow: Statements, endpoint_id: UUID, *, delivery_ids: list[int] | None, at: datetime
) -> list[int]:
    """Make the endpoint's dead deliveries (those of ``delivery_ids`` only, when given)
    pending again, due at ``at``, with fresh attempts; the ids replayed."""
    only = "AND id = ANY(:ids)" if delivery_ids is not None else ""
    rows = uow.execute(
        "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = :at,"
        " first_attempt_at = NULL, last_error = NULL"
        f" WHERE endpoint_id = :endpoint AND status = 'dead' {only} RETURNING id",
        {"endpoint": endpoint_id, "ids": delivery_ids, "at": at},
    )
    return sorted(r[0] for r in rows)


# the due deliveries in order of time, skipping those another worker holds; a delivery
# whose commitment has an undelivered earlier event to the same endpoint is not due
_CLAIM = """
WITH due AS (
    SELECT d.id FROM webhook_deliveries d
    JOIN webhook_endpoints p ON p.id = d.endpoint_id AND p.active
    WHERE d.status = 'pending' AND d.next_attempt_at <= :now
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries b
          WHERE b.endpoint_id = d.endpoint_id AND b.commitment_id = d.commitment_id
            AND b.audit_seq < d.audit_seq AND b.status <> 'delivered')
    ORDER BY d.next_attempt_at, d.id
    LIMIT :limit
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = :lease_until, last_attempt_at = :now,
    first_attempt_at = coalesce(d.first_attempt_at, :now)
FROM due, webhook_events e, webhook_endpoints p
WHERE d.id = due.id AND e.id = d.event_id AND p.id = d.endpoint_id
RETURNING d.id, d.endpoint_id, p.url, d.attempts, d.first_attempt_at, e.id, e.type,
          e.commitment_id, e.party, e.audit_seq, e.occurred_at, e.payload
"""


def claim_due(
    uow: Statements, *, now: datetime, lease_until: datetime, limit: int
) -> list[ClaimedDelivery]:
    """Claim up to ``limit`` due deliveries for one attempt each (the attempt is
    counted now): none is handed to two workers while its lease runs, and none before
    every earlier event of its commitment reached its endpoint."""
    rows = uow.execute(_CLAIM, {"now": now, "lease_until": lease_until, "limit": limit})
    claimed = [ClaimedDelivery(*tuple(r)) for r in rows]
    return sorted(claimed, key=lambda c: (c.occurred_at, c.id))


def record_delivered(
    uow: Statements, delivery_id: int, *, attempts: int, status_code: int, at: datetime
) -> bool:
    """The attempt was answered 2xx. False when the claim was lost (its lease ran out
    and another attempt recorded first): the delivery's record stands as it is."""
    rows = uow.execute(
        "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = :at,"
        " last_status = :code, last_error = NULL"
        " WHERE id = :id AND status = 'pending' AND attempts = :attempts",
        {"id": delivery_id, "at": at, "code": status_code, "attempts": attempts},
    )
    return rows.rowcount == 1


def record_delivered_many(
    uow: Statements, delivered: list[tuple[int, int, int]], *, at: datetime
) -> int:
    """``record_delivered`` for many (delivery id, attempts, status code) in one
    statement; how many were recorded (a lost claim is left as it is)."""
    if not delivered:
        return 0
    ids, attempts, codes = (list(column) for column in zip(*delivered, strict=True))
    rows = uow.execute(
        "UPDATE webhook_deliveries d SET status = 'delivered', delivered_at = :at,"
        " last_status = r.code, last_error = NULL"
        " FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS integer[]),"
        " CAST(:codes AS integer[])) AS r(id, attempts, code)"
        " WHERE d.id = r.id AND d.status = 'pending' AND d.attempts = r.attempts",
        {"ids": ids, "attempts": attempts, "codes": codes, "at": at},
    )
    return rows.rowcount


def record_failed(
    uow: Statements,
    delivery_id: int,
    *,
    attempts: int,
    status_code: int | None,
    error: str,
    retry_at: datetime | None,
) -> bool:
    """The attempt failed: due again at ``retry_at``, or dead when it is None. False when
    the claim was lost (as ``record_delivered``)."""
    rows = uow.execute(
        "UPDATE webhook_deliveries SET last_status = :code, last_error = :error,"
        " status = CASE WHEN CAST(:retry_at AS timestamptz) IS NULL THEN 'dead'"
        " ELSE 'pending' END,"
        " next_attempt_at = coalesce(CAST(:retry_at AS timestamptz), next_attempt_at)"
        " WHERE id = :id AND status = 'pending' AND attempts = :attempts",
        {
            "id": delivery_id,
            "code": status_code,
            "error": error[:2000],
            "retry_at": retry_at,
            "attempts": attempts,
        },
    )
    return rows.rowcount == 1


def delivery_counts(uow: Statements) -> dict[str, int]:
    """How many deliveries are pending (to active endpoints: a disabled endpoint's wait
    for nobody) and dead (what metrics show)."""
    rows = uow.execute(
        "SELECT d.status, count(*) FROM webhook_deliveries d"
        " JOIN webhook_endpoints p ON p.id = d.endpoint_id"
        " WHERE d.status <> 'delivered' AND (p.active OR d.status = 'dead')"
        " GROUP BY d.status"
    )
    counts = {"pending": 0, "dead": 0}
    counts.update({r[0]: int(r[1]) for r in rows})
    return counts


def event_type_table(uow: Statements) -> dict[str, str]:
    """The database's action -> event type map (for the test that holds it to ``ACTIONS``)."""
    return {r[0]: r[1] for r in uow.execute("SELECT action, event_type FROM webhook_event_types")}
