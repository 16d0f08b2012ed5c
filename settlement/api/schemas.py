"""Request and response bodies of the API.

Requests are strict: unknown fields are refused (``extra="forbid"``), nothing is
coerced (a JSON number is not a string), and money is a decimal string, never a JSON
number. Responses carry amounts as decimal strings too.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from compliance.records import Approval, QueueItem, StoredScreening
from ledger.audit import AuditEntry
from ledger.commitments import CommitmentRecord, HistoryRow, WriteResult
from settlement.service import ReviewDetail

#: a positive decimal that fits NUMERIC(38, 18); the service checks the value again
AMOUNT_PATTERN = r"^[0-9]{1,20}(\.[0-9]{1,18})?$"

Amount = Annotated[
    str,
    Field(
        pattern=AMOUNT_PATTERN,
        description="Decimal string (at most 20 integer and 18 fractional digits); "
        "a JSON number is refused.",
        examples=["1000000.00"],
    ),
]
Version = Annotated[int, Field(ge=1, le=2_147_483_647)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CommitmentCreate(_Request):
    deal_ref: Annotated[str, Field(min_length=1, max_length=200)]
    amount: Amount
    currency: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,12}$", examples=["USD"])]
    counterparty: Annotated[
        str | None, Field(description="KYC party id of the other side", max_length=200)
    ] = None
    expires_at: AwareDatetime | None = None
    commitment_id: Annotated[
        UUID | None, Field(description="Chosen by the caller; generated when absent")
    ] = None


class VersionedBody(_Request):
    expected_version: Annotated[
        Version | None,
        Field(description='The version read; or send it as If-Match: "<version>"'),
    ] = None


class WithdrawBody(VersionedBody):
    reason: Annotated[str | None, Field(max_length=2000)] = None


class ApproveBody(VersionedBody):
    override_reason: Annotated[
        str | None,
        Field(max_length=2000, description="A senior officer's reason to approve a hard fail"),
    ] = None


class ReasonBody(VersionedBody):
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


def amount_text(value: Decimal) -> str:
    """An amount as a plain decimal string without exponent or trailing zeros."""
    return format(value.normalize(), "f")


class CommitmentOut(BaseModel):
    id: UUID
    owner_party: str
    deal_ref: str
    amount: Amount
    currency: str
    state: str
    last_event: str
    version: int
    created_by: str
    submitted_by: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, record: CommitmentRecord) -> CommitmentOut:
        return cls(
            id=record.id,
            owner_party=record.owner_party,
            deal_ref=record.deal_ref,
            amount=amount_text(record.amount),
            currency=record.currency,
            state=record.state,
            last_event=record.last_event,
            version=record.version,
            created_by=record.created_by,
            submitted_by=record.submitted_by,
            created_at=record.created_at,
            updated_at=record.updated_at,
            expires_at=record.expires_at,
        )


class TransitionOut(BaseModel):
    """What a create or an event did. An approval that still needs another officer's
    leaves ``to_state`` PENDING_REVIEW and the version unchanged."""

    commitment_id: UUID
    event: str
    from_state: str | None
    to_state: str
    version: int
    audit_seq: int
    entry_hash: str

    @classmethod
    def of(cls, result: WriteResult) -> TransitionOut:
        return cls(
            commitment_id=result.commitment_id,
            event=result.event,
            from_state=result.from_state,
            to_state=result.to_state,
            version=result.version,
            audit_seq=result.audit_seq,
            entry_hash=result.entry_hash,
        )


class QueueItemOut(BaseModel):
    commitment_id: UUID
    owner_party: str
    counterparty: str | None
    deal_ref: str
    amount: Amount
    currency: str
    version: int
    submitted_by: str | None
    submitted_at: datetime
    outcome: str
    approvals_required: int
    approvals: int

    @classmethod
    def of(cls, item: QueueItem) -> QueueItemOut:
        return cls(
            commitment_id=item.commitment_id,
            owner_party=item.owner_party,
            counterparty=item.counterparty,
            deal_ref=item.deal_ref,
            amount=amount_text(item.amount),
            currency=item.currency,
            version=item.version,
            submitted_by=item.submitted_by,
            submitted_at=item.submitted_at,
            outcome=item.outcome,
            approvals_required=item.approvals_required,
            approvals=item.approvals,
        )


class ScreeningOut(BaseModel):
    review_version: int
    screened_at: datetime
    screening: dict[str, Any]

    @classmethod
    def of(cls, stored: StoredScreening) -> ScreeningOut:
        return cls(
            review_version=stored.review_version,
            screened_at=stored.screened_at,
            screening=stored.screening.as_payload(),
        )


class ApprovalOut(BaseModel):
    review_version: int
    officer_id: str
    senior: bool
    override_reason: str | None
    approved_at: datetime

    @classmethod
    def of(cls, approval: Approval) -> ApprovalOut:
        return cls(
            review_version=approval.review_version,
            officer_id=approval.officer_id,
            senior=approval.senior,
            override_reason=approval.override_reason,
            approved_at=approval.approved_at,
        )


class HistoryOut(BaseModel):
    version: int
    from_state: str | None
    to_state: str
    event: str
    actor: str
    reason: str | None
    at: datetime

    @classmethod
    def of(cls, row: HistoryRow) -> HistoryOut:
        return cls(
            version=row.version,
            from_state=row.from_state,
            to_state=row.to_state,
            event=row.event,
            actor=row.actor,
            reason=row.reason,
            at=row.at,
        )


class ReviewDetailOut(BaseModel):
    commitment: CommitmentOut
    counterparty: str | None
    under_review_since: datetime | None
    screenings: list[ScreeningOut]
    approvals: list[ApprovalOut]
    history: list[HistoryOut]

    @classmethod
    def of(cls, detail: ReviewDetail) -> ReviewDetailOut:
        return cls(
            commitment=CommitmentOut.of(detail.commitment),
            counterparty=detail.counterparty,
            under_review_since=detail.under_review_since,
            screenings=[ScreeningOut.of(s) for s in detail.screenings],
            approvals=[ApprovalOut.of(a) for a in detail.approvals],
            history=[HistoryOut.of(h) for h in detail.history],
        )


class AuditEntryOut(BaseModel):
    commitment_id: UUID
    seq: int
    recorded_at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str | None
    commitment_version: int | None
    idempotency_key: str | None
    payload: Annotated[str, Field(description="Canonical JSON text, as hashed")]
    chain: str | None
    tx_hash: str | None
    ledger_index: int | None
    ledger_hash: str | None
    prev_hash: str | None
    entry_hash: str

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(
            commitment_id=entry.commitment_id,
            seq=entry.seq,
            recorded_at=entry.recorded_at,
            actor=entry.actor,
            action=entry.action,
            from_state=entry.from_state,
            to_state=entry.to_state,
            commitment_version=entry.commitment_version,
            idempotency_key=entry.idempotency_key,
            payload=entry.payload,
            chain=entry.chain,
            tx_hash=entry.tx_hash,
            ledger_index=entry.ledger_index,
            ledger_hash=entry.ledger_hash,
            prev_hash=entry.prev_hash,
            entry_hash=entry.entry_hash,
        )


class ChainBreakOut(BaseModel):
    commitment_id: UUID
    seq: int | None
    problem: str


class VerifyOut(BaseModel):
    ok: bool
    chains: int
    entries: int
    ledger_refs_checked: int
    breaks: list[ChainBreakOut]


class HealthOut(BaseModel):
    status: str
    database: str


class Problem(BaseModel):
    """RFC 9457 problem details (media type application/problem+json)."""

    type: Annotated[str, Field(examples=["urn:settlement:problem:stale_version"])]
    title: str
    status: int
    detail: str
    code: Annotated[str, Field(description="The last part of ``type``")]
    instance: str | None = None
    errors: Annotated[
        list[dict[str, Any]] | None, Field(description="Schema violations (validation_failed)")
    ] = None
