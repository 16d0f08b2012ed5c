"""What the pages show, computed from the services' reads: formatting, queue filters,
and the reasons an action is not offered to the signed-in person.

The reasons are a courtesy for display, derived from the transition table and the
review round the service returned; whether an action happens is decided by the service
(and the database) when the form is posted, and its refusal is what the page then shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal

from compliance.records import Officer, QueueItem
from compliance.screening import Outcome
from ledger.anchors import AnchorRow
from settlement.domain.states import Event, State, transitions_for_event
from settlement.domain.values import Actor, Role
from settlement.services.anchors import LedgerAnchorAge
from settlement.services.compliance import ReviewDetail


def signed_in_as(actor: Actor, officers: Iterable[Officer]) -> str:
    """How the page names the signed-in person: an officer by the display name the
    registry holds for them, anyone else (and an officer the registry no longer holds)
    by their actor id. Never a key id: a person outlives their keys."""
    if actor.role is Role.COMPLIANCE_OFFICER:
        for officer in officers:
            if officer.officer_id == actor.id:
                return officer.display_name
    return actor.id


#: the officer's decisions the detail page offers, by the path segment of their form
ACTIONS: dict[str, Event] = {
    "approve": Event.APPROVE,
    "reject": Event.REJECT,
    "request-info": Event.REQUEST_INFO,
}

#: outcome codes of a decision, carried in the redirect after a form, and their text
DONE_MESSAGES = {
    "approved": "Approved: the commitment is VERIFIED.",
    "approval_recorded": "Your approval is recorded; another officer's approval is still needed.",
    "rejected": "Rejected: the commitment is CANCELLED.",
    "info_requested": "Information requested: the commitment is back in DRAFT with the allocator.",
}

OUTCOME_LABELS = {
    Outcome.CLEAR.value: "Clear",
    Outcome.FLAGGED.value: "Flagged",
    Outcome.HARD_FAIL.value: "HARD FAIL",
}

SortKey = Literal["age", "amount"]


def format_amount(amount: Decimal) -> str:
    """Grouped thousands, no trailing zeros beyond the cents; exact (no float)."""
    shown = amount.normalize()
    if shown.as_tuple().exponent == "n" or int(shown.as_tuple().exponent) > -2:
        shown = amount.quantize(Decimal("0.01"))
    return f"{shown:,f}"


def format_age(age: timedelta | None) -> str:
    if age is None:
        return "-"
    minutes = max(0, int(age.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"


def format_time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class AnchorRowView:
    """One ledger's line of the audit anchors table: its anchoring, and the link to its
    newest anchor's transaction in an explorer (None: no explorer, or nothing landed)."""

    ledger: LedgerAnchorAge
    link: str | None

    @property
    def age(self) -> timedelta | None:
        age_s = self.ledger.age_s
        return None if age_s is None else timedelta(seconds=age_s)


@dataclass(frozen=True)
class AnchorsView:
    last_taken: AnchorRow | None
    rows: list[AnchorRowView]


@dataclass(frozen=True)
class QueueFilters:
    outcome: str | None
    min_amount: Decimal | None
    party: str | None
    sort: SortKey
    descending: bool
    problems: tuple[str, ...]


def parse_filters(
    *,
    outcome: str | None,
    min_amount: str | None,
    party: str | None,
    sort: str | None,
    order: str | None,
) -> QueueFilters:
    """Filters from query parameters; a bad one is dropped and named in ``problems``."""
    problems: list[str] = []
    chosen_outcome = (outcome or "").strip() or None
    if chosen_outcome is not None and chosen_outcome not in OUTCOME_LABELS:
        problems.append(f"unknown screening outcome {chosen_outcome!r} ignored")
        chosen_outcome = None
    minimum: Decimal | None = None
    if min_amount and min_amount.strip():
        try:
            minimum = Decimal(min_amount.strip())
        except InvalidOperation:
            minimum = None
        if minimum is None or not minimum.is_finite():
            problems.append(f"minimum amount {min_amount!r} is not a number; ignored")
            minimum = None
    key: SortKey = "amount" if sort == "amount" else "age"
    # by default the oldest (largest age) and the largest amounts come first
    descending = order != "asc"
    return QueueFilters(
        chosen_outcome, minimum, (party or "").strip() or None, key, descending, tuple(problems)
    )


@dataclass(frozen=True)
class QueueRow:
    item: QueueItem
    age: timedelta
    approvals_needed: int
    submitted_by_me: bool


def queue_rows(
    items: Sequence[QueueItem], filters: QueueFilters, *, actor: Actor, now: datetime
) -> list[QueueRow]:
    """The queue as shown: filtered and sorted; ages measured from ``now``."""
    rows = [
        QueueRow(
            item=i,
            age=now - i.submitted_at,
            approvals_needed=max(0, i.approvals_required - i.approvals),
            submitted_by_me=i.submitted_by == actor.id,
        )
        for i in items
    ]
    if filters.outcome is not None:
        rows = [r for r in rows if r.item.outcome == filters.outcome]
    if filters.min_amount is not None:
        minimum = filters.min_amount
        rows = [r for r in rows if r.item.amount >= minimum]
    if filters.party is not None:
        needle = filters.party.lower()
        rows = [
            r
            for r in rows
            if needle in r.item.owner_party.lower()
            or (r.item.counterparty is not None and needle in r.item.counterparty.lower())
        ]
    if filters.sort == "amount":
        rows.sort(key=lambda r: r.item.amount, reverse=filters.descending)
    else:
        rows.sort(key=lambda r: r.age, reverse=filters.descending)
    return rows


def refusals(actor: Actor, detail: ReviewDetail, officer: Officer | None) -> dict[str, str | None]:
    """For each action of ``ACTIONS``, why it is not offered to ``actor`` (None: offered)."""
    record = detail.commitment
    out: dict[str, str | None] = {}
    for name, event in ACTIONS.items():
        out[name] = _refusal(
            actor=actor,
            detail=detail,
            officer=officer,
            event=event,
            state=record.state,
            submitted_by=record.submitted_by,
        )
    return out


def _refusal(
    *,
    actor: Actor,
    detail: ReviewDetail,
    officer: Officer | None,
    event: Event,
    state: str,
    submitted_by: str | None,
) -> str | None:
    if state != State.PENDING_REVIEW.value:
        return f"This commitment is {state}, not under review: there is nothing to decide."
    if actor.role is not Role.COMPLIANCE_OFFICER:
        return f"Only compliance officers decide reviews; you are signed in as {actor.role}."
    if officer is None or not officer.active:
        return f"{actor.id} is not an active registered compliance officer."
    spec = transitions_for_event(event)
    if submitted_by == actor.id and any(t.not_by_submitter for t in spec):
        return (
            "You submitted this commitment: segregation of duties forbids the submitter "
            "deciding its review."
        )
    if event is Event.APPROVE:
        if any(a.officer_id == actor.id for a in detail.current_approvals):
            return (
                "You already approved this review round; the next approval must come from "
                "a different officer."
            )
        screening = detail.current_screening
        if (
            screening is not None
            and screening.screening.outcome is Outcome.HARD_FAIL
            and not officer.senior
        ):
            return (
                "The screening has a hard fail: only a senior officer may approve it, "
                "with an override reason."
            )
    return None


def reason_required(event: Event) -> bool:
    return any(t.reason_required for t in transitions_for_event(event))


def approvals_needed(detail: ReviewDetail) -> int | None:
    screening = detail.current_screening
    if screening is None:
        return None
    return max(0, screening.screening.approvals_required - len(detail.current_approvals))
