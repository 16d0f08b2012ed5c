"""Request and response bodies of the API.

Requests are strict: unknown fields are refused (``extra="forbid"``), nothing is
coerced (a JSON number is not a string), and money is a decimal string, never a JSON
number. Responses carry amounts as decimal strings too. Times, dates and ids have no
JSON type of their own: they arrive as strings (``JsonTime``, ``JsonDate``, ``JsonUuid``)
and only as strings.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, Strict

from compliance.kyc import KycRecord
from compliance.records import Approval, PartyAccount, QueueItem, StoredScreening
from ledger.audit import AuditEntry, keys_by_version
from ledger.breakers import BreakerRow, ResetRequest
from ledger.commitments import CommitmentRecord, HistoryRow, WriteResult
from ledger.settlements import LegRow, SettlementDetail, SettlementRow, SubmissionRow
from settlement.services.anchors import AnchorAges, LedgerAnchorAge
from settlement.services.commitments import ReviewDetail

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
_ACTOR = (
    "Who acted: an officer id, <party>/<user> for an allocator, an admin's or auditor's "
    "name, 'system' for the engine, or the operator of a command on the database host."
)
_KEY_ID = (
    "The API key that signed the request; null when no key signed (the engine, an operator"
    " command, a console session)."
)


def _json_string(value: object) -> object:
    # A strict model never turns a string into a time or a UUID, and FastAPI validates
    # the parsed body, not its JSON text: these fields are lax, but only for strings,
    # since the lax parse would also read a JSON number as a Unix time.
    if not isinstance(value, str):
        raise ValueError(f"must be a JSON string, not {type(value).__name__}")
    return value


#: an ISO 8601 time with its zone, as a JSON string
JsonTime = Annotated[AwareDatetime, Strict(False), BeforeValidator(_json_string)]
#: an ISO 8601 date, as a JSON string
JsonDate = Annotated[date, Strict(False), BeforeValidator(_json_string)]
#: a UUID, as a JSON string
JsonUuid = Annotated[UUID, Strict(False), BeforeValidator(_json_string)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CommitmentCreate(_Request):
    deal_ref: Annotated[str, Field(min_length=1, max_length=200)]
    amount: Amount
    currency: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,12}$", examples=["USD"])]
    counterparty: Annotated[
        str | None, Field(description="KYC party id of the other side", max_length=200)
    ] = None
    expires_at: JsonTime | None = None
    commitment_id: Annotated[
        JsonUuid | None, Field(description="Chosen by the caller; generated when absent")
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
    actor: Annotated[str, Field(description=_ACTOR)]
    key_id: Annotated[str | None, Field(description=_KEY_ID)]
    reason: str | None
    at: datetime

    @classmethod
    def of(cls, row: HistoryRow, key_id: str | None) -> HistoryOut:
        """``key_id`` is that of the audit entry of the same version: each change of a
        commitment has exactly one (migration 0001), and it is the hashed record."""
        return cls(
            version=row.version,
            from_state=row.from_state,
            to_state=row.to_state,
            event=row.event,
            actor=row.actor,
            key_id=key_id,
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
        keys = keys_by_version(detail.audit_trail)
        return cls(
            commitment=CommitmentOut.of(detail.commitment),
            counterparty=detail.counterparty,
            under_review_since=detail.under_review_since,
            screenings=[ScreeningOut.of(s) for s in detail.screenings],
            approvals=[ApprovalOut.of(a) for a in detail.approvals],
            history=[HistoryOut.of(h, keys.get(h.version)) for h in detail.history],
        )


class AuditEntryOut(BaseModel):
    commitment_id: UUID
    seq: int
    recorded_at: datetime
    actor: Annotated[str, Field(description=_ACTOR)]
    key_id: Annotated[str | None, Field(description=_KEY_ID)]
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
    encoding_version: Annotated[
        int, Field(description="The canonical encoding entry_hash covers (ledger/audit.py)")
    ]

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(
            commitment_id=entry.commitment_id,
            seq=entry.seq,
            recorded_at=entry.recorded_at,
            actor=entry.actor,
            key_id=entry.key_id,
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
            encoding_version=entry.encoding_version,
        )


class ChainBreakOut(BaseModel):
    commitment_id: UUID
    seq: int | None
    problem: str


class AnchorCheckOut(BaseModel):
    """One audit anchor as the verifier found it."""

    seq: int
    root: str
    recomputed_root: str | None = Field(
        description="The root recomputed from the audit log as it is now (null: no chain "
        "as of the anchor's cutoff)"
    )
    confirmed_on: dict[str, str] = Field(
        description="Ledger -> hash of the transaction found there carrying the root"
    )
    problems: list[str]
    changed: list[str] = Field(description="Commitments whose chain head differs")
    missing: list[str] = Field(description="Commitments anchored, no longer in the log")
    added: list[str] = Field(description="Commitments in the log as of then, not anchored")


class AnchorChainProblemOut(BaseModel):
    seq: int
    problem: str


class AnchorReportOut(BaseModel):
    """Every anchored root recomputed and checked on its ledgers (``settle audit verify
    --anchors --json`` writes the same under ``anchors``)."""

    ok: bool
    anchors: int
    first_mismatch: AnchorCheckOut | None
    anchor_chain_problems: list[AnchorChainProblemOut]
    unconfirmed: list[int] = Field(description="Anchors confirmed on no ledger yet")
    unlisted: list[str] = Field(
        description="What the anchor accounts' ledger history carries that no anchor in "
        "the database has"
    )
    checks: list[AnchorCheckOut]


class VerifyOut(BaseModel):
    ok: bool = Field(description="Every check asked for passed (with anchors=true: anchors too)")
    chains: int
    entries: int
    ledger_refs_checked: int
    breaks: list[ChainBreakOut]
    anchors: AnchorReportOut | None = Field(
        default=None, description="With anchors=true: every anchor recomputed and checked"
    )


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


# -- lists, settlements, parties, audit references, operations ---------------------------


class CommitmentPage(BaseModel):
    items: list[CommitmentOut]
    next_cursor: Annotated[
        str | None,
        Field(description="Opaque; pass as ?cursor= for the next page; null on the last"),
    ]


ChainLiteral = Literal["xrpl", "stellar"]
#: the kinds the coordinator accepts: a delivery is a principal leg in another asset
LegKind = Literal["principal", "fee"]


class AssetIn(_Request):
    code: Annotated[str, Field(min_length=1, max_length=40, examples=["USDC"])]
    issuer: Annotated[
        str | None, Field(max_length=100, description="null for the native asset")
    ] = None


class LegIn(_Request):
    kind: Annotated[
        LegKind,
        Field(
            description="principal (payment in the commitment's currency, or the delivery "
            "against it in another asset) or fee"
        ),
    ]
    chain: ChainLiteral
    asset: AssetIn
    amount: Amount
    sender: Annotated[str, Field(min_length=1, max_length=100)]
    receiver: Annotated[str, Field(min_length=1, max_length=100)]


class SettlementCreate(_Request):
    legs: Annotated[list[LegIn], Field(min_length=2, max_length=16)]
    commit_deadline: JsonTime
    settle_not_before: JsonTime | None = None


class LegOut(BaseModel):
    leg_no: int
    kind: str
    chain: str
    asset: dict[str, str | None]
    amount: Amount
    sender: str
    receiver: str
    status: Annotated[
        str,
        Field(
            description="PENDING, LOCKED, HELD (the settlement agent holds the funds), "
            "REFUSED (the ledger refused the payout; a person is told), COMMITTED, "
            "UNWOUND or NOT_LOCKED"
        ),
    ]
    lock_kind: Annotated[
        str, Field(description="escrow (XRPL), claimable (Stellar) or custody (agent-held)")
    ] = "escrow"
    released_by: Annotated[
        str | None,
        Field(
            description="the ledger transaction by which someone else (the receiver "
            "finishing, the sender reclaiming) took the lock, if any"
        ),
    ] = None

    @classmethod
    def of(cls, row: LegRow) -> LegOut:
        return cls(
            leg_no=row.leg_no,
            kind=row.kind,
            chain=row.chain,
            asset={"code": row.asset_code, "issuer": row.asset_issuer},
            amount=amount_text(row.amount),
            sender=row.sender,
            receiver=row.receiver,
            status=row.state,
            lock_kind=row.lock_kind,
            released_by=row.released_tx_hash,
        )


class SubmissionOut(BaseModel):
    leg_no: int
    purpose: str
    chain: str
    tx_hash: str
    status: str
    outcome: Annotated[str | None, Field(description="The ledger's result code")]
    ledger_index: int | None
    ledger_hash: str | None
    signed_at: datetime
    finalized_at: datetime | None

    @classmethod
    def of(cls, row: SubmissionRow) -> SubmissionOut:
        return cls(
            leg_no=row.leg_no,
            purpose=row.purpose,
            chain=row.chain,
            tx_hash=row.tx_hash,
            status=row.status,
            outcome=row.result_code,
            ledger_index=row.ledger_index,
            ledger_hash=row.ledger_hash,
            signed_at=row.signed_at,
            finalized_at=row.finalized_at,
        )


class SettlementSummaryOut(BaseModel):
    id: UUID
    commitment_id: UUID
    status: str
    decision: str | None
    decision_reason: str | None
    decided_at: datetime | None
    settle_not_before: datetime | None
    commit_deadline: datetime
    cancel_after: datetime
    needs_review: bool
    review_reason: str | None
    cancel_requested_by: str | None
    cancel_reason: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def fields_of(cls, row: SettlementRow) -> dict[str, Any]:
        return {
            "id": row.id,
            "commitment_id": row.commitment_id,
            "status": row.status,
            "decision": row.decision,
            "decision_reason": row.decision_reason,
            "decided_at": row.decided_at,
            "settle_not_before": row.settle_not_before,
            "commit_deadline": row.commit_deadline,
            "cancel_after": row.cancel_after,
            "needs_review": row.needs_review,
            "review_reason": row.review_reason,
            "cancel_requested_by": row.cancel_requested_by,
            "cancel_reason": row.cancel_reason,
            "created_by": row.created_by,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }

    @classmethod
    def of(cls, row: SettlementRow) -> SettlementSummaryOut:
        return cls(**cls.fields_of(row))


class SettlementOut(SettlementSummaryOut):
    legs: list[LegOut]
    submissions: list[SubmissionOut]

    @classmethod
    def full(cls, found: SettlementDetail) -> SettlementOut:
        return cls(
            **cls.fields_of(found.settlement),
            legs=[LegOut.of(leg) for leg in found.legs],
            submissions=[SubmissionOut.of(s) for s in found.submissions],
        )


class ReasonOnlyBody(_Request):
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class NoteBody(_Request):
    note: Annotated[str, Field(min_length=1, max_length=2000)]


class KycCreate(_Request):
    legal_name: Annotated[str, Field(min_length=1, max_length=300)]
    jurisdiction: Annotated[str, Field(description="ISO 3166 alpha-2", examples=["GB"])]
    risk_rating: Literal["low", "medium", "high"]
    accredited: bool
    status: Literal["pending", "verified", "rejected", "expired"]
    expires_on: JsonDate | None = None
    aliases: Annotated[list[str], Field(max_length=50)] = []
    lei: Annotated[str | None, Field(max_length=40)] = None
    registration_number: Annotated[str | None, Field(max_length=100)] = None


class KycUpdate(VersionedBody):
    """Only the fields sent change; the record is validated again as a whole."""

    legal_name: Annotated[str | None, Field(min_length=1, max_length=300)] = None
    jurisdiction: str | None = None
    risk_rating: Literal["low", "medium", "high"] | None = None
    accredited: bool | None = None
    status: Literal["pending", "verified", "rejected", "expired"] | None = None
    expires_on: JsonDate | None = None
    aliases: Annotated[list[str] | None, Field(max_length=50)] = None
    lei: Annotated[str | None, Field(max_length=40)] = None
    registration_number: Annotated[str | None, Field(max_length=100)] = None


class KycOut(BaseModel):
    party: str
    legal_name: str
    aliases: list[str]
    lei: str | None
    registration_number: str | None
    jurisdiction: str
    risk_rating: str
    accredited: bool
    status: str
    expires_on: date | None
    version: int

    @classmethod
    def of(cls, record: KycRecord) -> KycOut:
        return cls(
            party=record.party,
            legal_name=record.legal_name,
            aliases=list(record.aliases),
            lei=record.lei,
            registration_number=record.registration_number,
            jurisdiction=record.jurisdiction,
            risk_rating=record.risk_rating.value,
            accredited=record.accredited,
            status=record.status.value,
            expires_on=record.expires_on,
            version=record.version,
        )


class AccountCreate(_Request):
    chain: ChainLiteral
    address: Annotated[str, Field(min_length=1, max_length=100)]


class AccountOut(BaseModel):
    chain: str
    address: str
    party: str
    registered_by: str
    registered_at: datetime

    @classmethod
    def of(cls, account: PartyAccount) -> AccountOut:
        return cls(
            chain=account.chain,
            address=account.address,
            party=account.party,
            registered_by=account.registered_by,
            registered_at=account.registered_at,
        )


class PartyOut(BaseModel):
    kyc: KycOut
    accounts: list[AccountOut]


class LedgerRefOut(BaseModel):
    seq: int
    action: str
    recorded_at: datetime
    chain: str
    tx_hash: str
    ledger_index: int | None
    ledger_hash: str | None


class BreakerOut(BaseModel):
    scope: Annotated[str, Field(description="The process that published it: api:... or a worker")]
    chain: str
    state: Literal["closed", "open", "half_open"]
    failure_count: int
    opened_at: datetime | None
    updated_at: Annotated[datetime, Field(description="When the process last published it")]
    last_reset_at: datetime | None

    @classmethod
    def of(cls, row: BreakerRow) -> BreakerOut:
        return cls(
            scope=row.scope,
            chain=row.chain,
            state=row.state,  # the table's CHECK allows only these
            failure_count=row.failure_count,
            opened_at=row.opened_at,
            updated_at=row.updated_at,
            last_reset_at=row.last_reset_at,
        )


class ResetOut(BaseModel):
    id: int
    chain: str
    requested_by: str
    requested_at: datetime

    @classmethod
    def of(cls, request: ResetRequest) -> ResetOut:
        return cls(
            id=request.id,
            chain=request.chain,
            requested_by=request.requested_by,
            requested_at=request.requested_at,
        )


class BreakersOut(BaseModel):
    breakers: list[BreakerOut]
    recent_resets: list[ResetOut]


class ResetAcceptedOut(ResetOut):
    applied_here: Annotated[
        bool, Field(description="Whether this API process closed its own breaker already")
    ]


class CheckOut(BaseModel):
    ok: bool
    detail: str


class LedgerAnchorOut(BaseModel):
    """The newest audit anchor applied on one ledger; the fields of the anchor are null
    until one has landed there."""

    seq: int | None = None
    taken_at: datetime | None = None
    age_seconds: float | None = Field(
        default=None, description="Seconds since the anchor was taken; null: none landed"
    )
    tx_hash: str | None = None
    ledger_index: int | None = None
    unpublished: int | None = Field(
        default=None,
        description="Anchors taken but not yet applied here; null: no anchor account",
    )

    @classmethod
    def of(cls, age: LedgerAnchorAge) -> LedgerAnchorOut:
        landed = age.landed
        if landed is None:
            return cls(unpublished=age.unpublished)
        return cls(
            seq=landed.seq,
            taken_at=landed.created_at,
            age_seconds=age.age_s,
            tx_hash=landed.tx_hash,
            ledger_index=landed.ledger_index,
            unpublished=age.unpublished,
        )


class AnchorsOut(BaseModel):
    """How far the audit anchors have come: informative, never a readiness check."""

    last_taken_at: datetime | None
    ledgers: dict[str, LedgerAnchorOut]

    @classmethod
    def of(cls, ages: AnchorAges) -> AnchorsOut:
        last = ages.last_taken
        return cls(
            last_taken_at=None if last is None else last.created_at,
            ledgers={age.chain: LedgerAnchorOut.of(age) for age in ages.ledgers},
        )


class ReadyOut(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, CheckOut]
    anchors: AnchorsOut | None = Field(
        default=None,
        description="How old the newest audit anchor is per ledger; null when it could "
        "not be read. Anchors are not needed to serve, so this never fails readiness.",
    )


class LiveOut(BaseModel):
    status: Literal["ok"]


def decimal_of(amount: str) -> Decimal:
    """A validated ``Amount`` string as a Decimal (exact; never through float)."""
    return Decimal(amount)
