"""The commitment service: every transition of the state machine, with its actor,
reason and idempotency key. (KYC records, officers, sanctions lists and the review
queue are in ``settlement.services.compliance``; it is re-exported here.)

Each call validates its input, authorises the actor against the transition table
(``settlement.domain.states``), and then makes one round trip to the database, which checks the
version, ownership and segregation guards and the transition table again, and writes
the history row, the audit entry and the idempotency record in the same transaction.
Two events do more:

- submit screens the commitment (``compliance.screening``) under the row lock and stores
  the result with the transition, in one unit of work; the screening is also in the
  submit's audit entry, so it is covered by the hash chain;
- approve is one call of ``commitment_approve``, which records the officer's approval
  for the current review round and makes the transition only when the round has the
  approvals its screening requires (four eyes above the threshold).

Every write names the person acting (``Actor.id``) and, beside them, the key that signed
their request (``Actor.key_id``, None for the engine and operators): the audit entry
records both, the history row the person, and the database refuses a key that is not
the person's.
Idempotency keys are the person's, so a retry signed with a rotated key of the same
person replays the first result rather than acting twice. The writes and reads are
those of ``ledger.commitments`` (the commitment) and ``compliance.records`` (the
counterparty and the screening); this module runs no SQL of its own.

``ledger`` and ``compliance`` errors become ``settlement.domain.errors`` in
``settlement.services.translate``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from compliance import errors as compliance_errors
from compliance import kyc
from compliance import records as compliance_records
from compliance.policy import ScreeningPolicy
from compliance.records import (
    SanctionsIndexCache,
)
from compliance.screening import Screening, Subject, screen
from ledger import audit
from ledger import commitments as commitment_records
from ledger.commitments import Attribution, CommitmentRecord, HistoryRow, WriteResult
from ledger.database import Database, DriverUnitOfWork, Statements, UnitOfWork
from ledger.idempotency import fingerprint
from settlement.clock import Clock
from settlement.domain import errors
from settlement.domain.states import Authority, Event, State, authority_for, transitions_for_event
from settlement.domain.values import (
    SYSTEM,
    Actor,
    Role,
    parse_amount,
    parse_currency,
    parse_idempotency_key,
    parse_text,
)
from settlement.services.compliance import ComplianceService, ReviewDetail, SanctionsLoad
from settlement.services.translate import OFFICER_EVENTS, translated

T = TypeVar("T")

ROLES_FOR: Mapping[Authority, frozenset[Role]] = {
    Authority.OWNER: frozenset({Role.ALLOCATOR}),
    Authority.OFFICER: frozenset({Role.COMPLIANCE_OFFICER}),
    Authority.SYSTEM: frozenset({Role.SYSTEM}),
    Authority.SYSTEM_OR_ADMIN: frozenset({Role.SYSTEM, Role.ADMIN}),
    Authority.ADMIN: frozenset({Role.ADMIN}),
}


@dataclass(frozen=True)
class _EventRequest:
    """An event's input as ``apply`` checked it: what every path of it writes."""

    expected_version: int | None
    reason: str | None
    override_reason: str | None
    #: the audit entry's payload: the caller's payload with the reason and override
    noted: Mapping[str, Any]
    idempotency_key: str | None
    fingerprint: str | None
    at: datetime

    def attribution(self, actor: Actor, payload: Mapping[str, Any]) -> Attribution:
        return Attribution(
            actor=actor.id,
            key_id=actor.key_id,
            idempotency_key=self.idempotency_key,
            fingerprint=self.fingerprint,
            payload=audit.payload_text(payload),
            at=self.at,
        )


def _check_version(expected_version: object) -> None:
    if expected_version is not None and (
        isinstance(expected_version, bool)
        or not isinstance(expected_version, int)
        or expected_version < 1
    ):
        raise errors.InvalidInput("expected_version must be a positive integer")


class CommitmentService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        policy: ScreeningPolicy,
        lists: SanctionsIndexCache | None = None,
        reason_max_chars: int = 2000,
    ) -> None:
        self._db = db
        self._clock = clock
        self._policy = policy
        self._lists = lists or SanctionsIndexCache()
        self._reason_max_chars = reason_max_chars

    @property
    def database(self) -> Database:
        return self._db

    # -- writes -------------------------------------------------------------------

    def create(
        self,
        actor: Actor,
        *,
        deal_ref: str,
        amount: Decimal | str | int,
        currency: str,
        expires_at: datetime | None = None,
        commitment_id: UUID | None = None,
        idempotency_key: str | None = None,
        counterparty: str | None = None,
    ) -> WriteResult:
        """Create a DRAFT commitment owned by the allocator's party.

        ``counterparty`` names the other party (a KYC party id); screening on submit
        covers both parties, and flags a commitment without one.

        Raises ``NotAuthorised`` unless ``actor`` is an allocator, ``InvalidInput`` for a
        bad amount, currency, reference, counterparty or expiry, ``Conflict`` if
        ``commitment_id`` is taken; replays the first result if ``idempotency_key`` was
        used for the same request.
        """
        if actor.role is not Role.ALLOCATOR:
            raise errors.NotAuthorised(f"only an allocator creates commitments, not a {actor.role}")
        assert actor.party is not None  # Actor guarantees it for allocators
        value = parse_amount(amount)
        code = parse_currency(currency)
        reference = parse_text(deal_ref, name="deal reference", max_chars=200, required=True)
        assert reference is not None
        key = parse_idempotency_key(idempotency_key)
        now = self._clock.now()
        if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
            raise errors.InvalidInput("expires_at must be a timezone-aware time in the future")
        body: dict[str, Any] = {
            "amount": value,
            "currency": code,
            "deal_ref": reference,
            "expires_at": expires_at,
        }
        if commitment_id is not None:
            body["commitment_id"] = commitment_id
        with translated():
            other = kyc.parse_party_id(counterparty) if counterparty is not None else None
        if other is not None:
            if other == actor.party:
                raise errors.InvalidPartyData("the counterparty cannot be the allocator itself")
            body["counterparty"] = other
        new_id = commitment_id or uuid.uuid4()
        by = Attribution(
            actor=actor.id,
            key_id=actor.key_id,
            idempotency_key=key,
            fingerprint=self._fingerprint(actor, "/commitments", body) if key else None,
            payload=audit.payload_text({**body, "owner_party": actor.party}),
            at=now,
        )
        write = functools.partial(
            commitment_records.create,
            by=by,
            commitment_id=new_id,
            owner_party=actor.party,
            deal_ref=reference,
            amount=value,
            currency=code,
            expires_at=expires_at,
        )
        return self._create(write, new_id, counterparty=other)

    def _create(
        self,
        write: Callable[[Database | Statements], WriteResult],
        commitment_id: UUID,
        *,
        counterparty: str | None,
    ) -> WriteResult:
        if counterparty is None:
            with translated():
                return write(self._db)

        # the counterparty row commits with the commitment or not at all
        def work(uow: UnitOfWork) -> WriteResult:
            result = write(uow)
            if not result.replayed:
                compliance_records.record_counterparty(uow, commitment_id, counterparty)
            return result

        with translated():
            return self._db.transaction(work)

    def apply(
        self,
        actor: Actor,
        commitment_id: UUID,
        event: Event | str,
        *,
        expected_version: int | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
        payload: Mapping[str, Any] | None = None,
        override_reason: str | None = None,
    ) -> WriteResult:
        """Cause ``event`` on a commitment.

        ``expected_version`` is the version the caller read; a commitment that moved on
        since raises ``StaleVersion`` and nothing changes. Raises ``NotAuthorised`` when
        the actor may not cause the event (role, ownership, not a registered officer,
        or a segregation-of-duties rule: ``SegregationOfDuties``, ``OverrideRequired``),
        ``TransitionNotAllowed`` when the event is not allowed in the current state
        (``NotUnderReview`` for officer events), ``InvalidText`` for a missing or
        oversize reason, ``UnknownParty`` on submit when a party has no KYC record.

        On submit the commitment is screened and the result stored with it. On approve
        the result's ``to_state`` is PENDING_REVIEW (version unchanged) when the approval
        was recorded but the round needs another officer's; ``override_reason`` is how
        a senior officer approves a screening with a hard fail.
        """
        parsed = event if isinstance(event, Event) else Event.parse(event)
        self._authorise(actor, parsed)
        request = self._checked(
            actor,
            commitment_id,
            parsed,
            expected_version=expected_version,
            reason=reason,
            idempotency_key=idempotency_key,
            payload=payload,
            override_reason=override_reason,
        )
        if parsed is Event.SUBMIT:
            return self._submit(actor, commitment_id, request)
        by = request.attribution(actor, request.noted)
        if parsed is Event.APPROVE:
            with translated(officer_event=True):
                return commitment_records.approve(
                    self._db,
                    by,
                    commitment_id=commitment_id,
                    expected_version=request.expected_version,
                    override_reason=request.override_reason,
                )
        spec = transitions_for_event(parsed)
        with translated(officer_event=parsed in OFFICER_EVENTS):
            return commitment_records.transition(
                self._db,
                by,
                commitment_id=commitment_id,
                expected_version=request.expected_version,
                event=parsed.value,
                reason=request.reason,
                require_owner=actor.party if authority_for(parsed) is Authority.OWNER else None,
                forbid_submitter=actor.id if any(t.not_by_submitter for t in spec) else None,
            )

    def _checked(
        self,
        actor: Actor,
        commitment_id: UUID,
        event: Event,
        *,
        expected_version: int | None,
        reason: str | None,
        idempotency_key: str | None,
        payload: Mapping[str, Any] | None,
        override_reason: str | None,
    ) -> _EventRequest:
        """``apply``'s input checked (``InvalidInput``, ``InvalidText``), with the audit
        payload and the idempotency fingerprint it makes."""
        spec = transitions_for_event(event)
        reason_text = parse_text(
            reason,
            name="reason",
            max_chars=self._reason_max_chars,
            required=any(t.reason_required for t in spec),
        )
        override = parse_text(
            override_reason,
            name="override reason",
            max_chars=self._reason_max_chars,
            required=False,
        )
        if override is not None and event is not Event.APPROVE:
            raise errors.InvalidInput("only an approval takes an override reason")
        key = parse_idempotency_key(idempotency_key)
        _check_version(expected_version)
        extra = dict(payload or {})
        if "reason" in extra:
            raise errors.InvalidInput("payload may not carry 'reason'; pass it as reason")
        if "screening" in extra or "override_reason" in extra:
            raise errors.InvalidInput("payload may not carry 'screening' or 'override_reason'")
        noted = {**extra, "reason": reason_text} if reason_text else dict(extra)
        body: dict[str, Any] = {
            "event": event.value,
            "expected_version": expected_version,
            "reason": reason_text,
            "payload": extra,
        }
        if override is not None:
            noted["override_reason"] = override
            body["override_reason"] = override
        path = f"/commitments/{commitment_id}/events"
        return _EventRequest(
            expected_version=expected_version,
            reason=reason_text,
            override_reason=override,
            noted=noted,
            idempotency_key=key,
            fingerprint=self._fingerprint(actor, path, body) if key else None,
            at=self._clock.now(),
        )

    def _submit(self, actor: Actor, commitment_id: UUID, request: _EventRequest) -> WriteResult:
        """DRAFT -> PENDING_REVIEW with screening, in one unit of work.

        Under the row lock: a keyed retry replays; a commitment the transition would
        refuse (state, version, owner) goes straight to ``commitment_transition`` so the
        database reports why; otherwise both parties' KYC records, the lists in force and
        the limit totals are read, the commitment is screened, and the transition (with
        the screening in its audit payload) and the screening row commit together.
        """
        key = request.idempotency_key

        def work(uow: UnitOfWork) -> WriteResult:
            if key is not None:
                replayed = commitment_records.replay_of(
                    uow, actor=actor.id, idempotency_key=key, fingerprint=request.fingerprint
                )
                if replayed is not None:
                    return replayed
            screening = self._screen_if_submittable(uow, actor, commitment_id, request)
            payload = dict(request.noted)
            if screening is not None:
                payload["screening"] = screening.as_payload()
            result = commitment_records.transition(
                uow,
                request.attribution(actor, payload),
                commitment_id=commitment_id,
                expected_version=request.expected_version,
                event=Event.SUBMIT.value,
                reason=None,
                require_owner=actor.party,
                forbid_submitter=None,
            )
            assert screening is not None or result.replayed, "a submit that applied was screened"
            if screening is not None and not result.replayed:
                compliance_records.save_screening(
                    uow, commitment_id, result.version, screening, at=request.at
                )
            return result

        with translated():
            return self._db.transaction(work)

    def _screen_if_submittable(
        self, uow: UnitOfWork, actor: Actor, commitment_id: UUID, request: _EventRequest
    ) -> Screening | None:
        """Lock the commitment row; screen it when the submit can apply (DRAFT, at the
        expected version, the actor's party its owner), else None: the transition then
        reports why it cannot."""
        context = compliance_records.lock_for_submit(uow, commitment_id, now=request.at)
        if (
            context is not None
            and context.state == State.DRAFT.value
            and request.expected_version in (None, context.version)
            and context.subject.owner_party == actor.party
        ):
            return self._screen(uow, context.subject, request.at)
        return None

    def _screen(self, uow: UnitOfWork, subject: Subject, now: datetime) -> Screening:
        parties = [subject.owner_party] + ([subject.counterparty] if subject.counterparty else [])
        found = compliance_records.load_kyc(uow.connection, parties)
        missing = [p for p in parties if p not in found]
        if missing:
            raise compliance_errors.UnknownParty(
                f"no KYC record for {', '.join(missing)}: register the party before submitting"
            )
        index = self._lists.current(uow.connection)
        return screen(subject, found, index, self._policy, compliance_records.today_of(now))

    def submit(self, actor: Actor, commitment_id: UUID, **kw: Any) -> WriteResult:
        return self.apply(actor, commitment_id, Event.SUBMIT, **kw)

    def withdraw(self, actor: Actor, commitment_id: UUID, **kw: Any) -> WriteResult:
        return self.apply(actor, commitment_id, Event.WITHDRAW, **kw)

    def approve(self, actor: Actor, commitment_id: UUID, **kw: Any) -> WriteResult:
        return self.apply(actor, commitment_id, Event.APPROVE, **kw)

    def reject(self, actor: Actor, commitment_id: UUID, **kw: Any) -> WriteResult:
        return self.apply(actor, commitment_id, Event.REJECT, **kw)

    def request_info(self, actor: Actor, commitment_id: UUID, **kw: Any) -> WriteResult:
        return self.apply(actor, commitment_id, Event.REQUEST_INFO, **kw)

    def lock(self, actor: Actor, commitment_id: UUID, **kw: Any) -> WriteResult:
        """VERIFIED -> ESCROWED; while a settlement of the commitment is open the database
        refuses it until every leg is locked."""
        return self.apply(actor, commitment_id, Event.LOCK, **kw)

    def settle(self, actor: Actor, commitment_id: UUID, **kw: Any) -> WriteResult:
        """ESCROWED -> SETTLED; while a settlement of the commitment is open the database
        refuses it until every leg is committed."""
        return self.apply(actor, commitment_id, Event.SETTLE, **kw)

    def release(self, actor: Actor, commitment_id: UUID, **kw: Any) -> WriteResult:
        """ESCROWED -> VERIFIED; while a settlement of the commitment is open the database
        refuses it until every leg is unwound or was never locked."""
        return self.apply(actor, commitment_id, Event.RELEASE, **kw)

    def expire_due(self, *, limit: int = 100) -> list[WriteResult]:
        """Cancel, as the system, commitments past their expiry that are not settling.

        Each gets the ``expire`` transition with a reason and its audit entry; one that
        moved on meanwhile (or started settling) is skipped, not an error. Idempotent:
        a second run finds nothing to do.

        The whole sweep is one database transaction, each commitment in a SAVEPOINT of
        its own: one refused by the database (it moved, or a settlement began) rolls
        back its own rows alone, and the others commit together.
        """
        self._authorise(SYSTEM, Event.EXPIRE)
        now = self._clock.now()
        due = self._read(lambda c: commitment_records.expired(c, now=now, limit=limit))
        requests = [
            (
                commitment_id,
                version,
                self._checked(
                    SYSTEM,
                    commitment_id,
                    Event.EXPIRE,
                    expected_version=version,
                    reason=f"expired at {expires_at.isoformat()}",
                    idempotency_key=f"expire:{commitment_id}:{version}",
                    payload=None,
                    override_reason=None,
                ),
            )
            for commitment_id, version, expires_at in due
        ]

        def sweep(uow: DriverUnitOfWork) -> list[WriteResult]:
            done: list[WriteResult] = []  # made anew if the transaction is run again
            for commitment_id, version, request in requests:
                try:
                    with translated(), uow.savepoint():
                        done.append(
                            commitment_records.transition(
                                uow,
                                request.attribution(SYSTEM, request.noted),
                                commitment_id=commitment_id,
                                expected_version=version,
                                event=Event.EXPIRE.value,
                                reason=request.reason,
                                require_owner=None,
                                forbid_submitter=None,
                            )
                        )
                except (errors.StaleVersion, errors.TransitionNotAllowed):
                    continue  # it moved (or began settling) after we read it
            return done

        if not requests:
            return []
        with translated():
            return self._db.statements(sweep)

    # -- reads --------------------------------------------------------------------

    def get(self, commitment_id: UUID) -> CommitmentRecord:
        return self._read(lambda uow: commitment_records.load(uow, commitment_id))

    async def get_async(self, commitment_id: UUID) -> CommitmentRecord:
        """``get`` without a worker thread: one statement on the running event loop
        (what the API's single-commitment read uses); the same record and errors."""
        with translated():
            return await commitment_records.load_async(self._db, commitment_id)

    def state_of(self, commitment_id: UUID) -> State:
        return State(self.get(commitment_id).state)

    def history(self, commitment_id: UUID) -> list[HistoryRow]:
        return self._read(lambda c: commitment_records.history(c, commitment_id))

    def audit_trail(self, commitment_id: UUID) -> list[audit.AuditEntry]:
        return self._read(lambda c: audit.read_chain(c, commitment_id))

    def verify_audit(
        self, *, check_ledger_ref: audit.LedgerRefCheck | None = None
    ) -> audit.VerifyReport:
        return self._read(lambda c: audit.verify_all(c, check_ledger_ref=check_ledger_ref))

    # -- helpers ------------------------------------------------------------------

    def _read(self, query: Callable[[Any], T]) -> T:
        with translated(), self._db.unit_of_work() as uow:
            return query(uow.connection)

    @staticmethod
    def _authorise(actor: Actor, event: Event) -> None:
        authority = authority_for(event)
        if actor.role not in ROLES_FOR[authority]:
            raise errors.NotAuthorised(
                f"{event} is for the {authority}; {actor.id} acts as {actor.role}"
            )

    @staticmethod
    def _fingerprint(actor: Actor, path: str, body: Mapping[str, Any]) -> str:
        return fingerprint(actor.id, "POST", path, audit.canonical_json(body).encode())


__all__ = [
    "ROLES_FOR",
    "CommitmentService",
    "ComplianceService",
    "ReviewDetail",
    "SanctionsLoad",
]
