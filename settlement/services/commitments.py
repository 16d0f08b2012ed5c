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
person replays the first result rather than acting twice. The statements are those of
``compliance.records`` (``CREATE_SQL``, ``TRANSITION_SQL``, ``APPROVE_SQL``), which pass
the key; ``ledger.commitments`` serves the reads.

``ledger`` and ``compliance`` errors become ``settlement.domain.errors`` in
``settlement.services.translate``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
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
from ledger import commitments as records
from ledger.commitments import CommitmentRecord, HistoryRow, LedgerRef, WriteResult
from ledger.database import Database, UnitOfWork, driver_sql
from ledger.idempotency import fingerprint, resolve
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
        params: dict[str, Any] = {
            "id": new_id,
            "owner_party": actor.party,
            "deal_ref": reference,
            "amount": value,
            "currency": code,
            "expires_at": expires_at,
            "actor": actor.id,
            "key_id": actor.key_id,
            "key": key,
            "fingerprint": self._fingerprint(actor, "/commitments", body) if key else None,
            "payload": audit.payload_text({**body, "owner_party": actor.party}),
            "at": now,
        }
        return self._create(actor, new_id, params, counterparty=other)

    def _create(
        self,
        actor: Actor,
        commitment_id: UUID,
        params: Mapping[str, Any],
        *,
        counterparty: str | None,
    ) -> WriteResult:
        key = params["key"]
        if counterparty is None:
            with translated():
                row = self._db.call_one(driver_sql(compliance_records.CREATE_SQL), params)
                replayed, response = resolve(row[0], row[1], actor=actor.id, key=key)
            return WriteResult.from_response(response, replayed)

        # the counterparty row commits with the commitment or not at all
        def work(uow: UnitOfWork) -> WriteResult:
            row = uow.execute(compliance_records.CREATE_SQL, params).one()
            replayed, response = resolve(row.outcome, row.response, actor=actor.id, key=key)
            if not replayed:
                compliance_records.record_counterparty(uow, commitment_id, counterparty)
            return WriteResult.from_response(response, replayed)

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
        ledger_ref: LedgerRef | None = None,
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
        spec = transitions_for_event(parsed)
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
        if override is not None and parsed is not Event.APPROVE:
            raise errors.InvalidInput("only an approval takes an override reason")
        key = parse_idempotency_key(idempotency_key)
        if expected_version is not None and (
            isinstance(expected_version, bool)
            or not isinstance(expected_version, int)
            or expected_version < 1
        ):
            raise errors.InvalidInput("expected_version must be a positive integer")
        extra = dict(payload or {})
        if "reason" in extra:
            raise errors.InvalidInput("payload may not carry 'reason'; pass it as reason")
        if "screening" in extra or "override_reason" in extra:
            raise errors.InvalidInput("payload may not carry 'screening' or 'override_reason'")
        noted = {**extra, "reason": reason_text} if reason_text else dict(extra)
        if override is not None:
            noted["override_reason"] = override
        body: dict[str, Any] = {
            "event": parsed.value,
            "expected_version": expected_version,
            "reason": reason_text,
            "payload": extra,
        }
        if override is not None:
            body["override_reason"] = override
        if ledger_ref is not None:
            body["ledger_ref"] = [
                ledger_ref.chain,
                ledger_ref.tx_hash,
                ledger_ref.ledger_index,
                ledger_ref.ledger_hash,
            ]
        fp = self._fingerprint(actor, f"/commitments/{commitment_id}/events", body) if key else None
        now = self._clock.now()
        if parsed is Event.SUBMIT:
            return self._submit(
                actor=actor,
                commitment_id=commitment_id,
                expected_version=expected_version,
                noted=noted,
                key=key,
                fp=fp,
                now=now,
            )
        common = {
            "id": commitment_id,
            "expected_version": expected_version,
            "actor": actor.id,
            "key_id": actor.key_id,
            "key": key,
            "fingerprint": fp,
            "payload": audit.payload_text(noted),
            "at": now,
        }
        if parsed is Event.APPROVE:
            return self._call(
                compliance_records.APPROVE_SQL,
                {**common, "override_reason": override},
                actor,
                officer_event=True,
            )
        return self._call(
            compliance_records.TRANSITION_SQL,
            {
                **common,
                "event": parsed.value,
                "reason": reason_text,
                "require_owner": actor.party if authority_for(parsed) is Authority.OWNER else None,
                "forbid_submitter": actor.id if any(t.not_by_submitter for t in spec) else None,
                "chain": ledger_ref.chain if ledger_ref else None,
                "tx_hash": ledger_ref.tx_hash if ledger_ref else None,
                "ledger_index": ledger_ref.ledger_index if ledger_ref else None,
                "ledger_hash": ledger_ref.ledger_hash if ledger_ref else None,
            },
            actor,
            officer_event=parsed in OFFICER_EVENTS,
        )

    def _call(
        self, sql: str, params: Mapping[str, Any], actor: Actor, *, officer_event: bool
    ) -> WriteResult:
        """One commitment write as one statement (one round trip, its own transaction)."""
        with translated(officer_event=officer_event):
            row = self._db.call_one(driver_sql(sql), params)
            replayed, response = resolve(row[0], row[1], actor=actor.id, key=params["key"])
        return WriteResult.from_response(response, replayed)

    def _submit(
        self,
        *,
        actor: Actor,
        commitment_id: UUID,
        expected_version: int | None,
        noted: Mapping[str, Any],
        key: str | None,
        fp: str | None,
        now: datetime,
    ) -> WriteResult:
        """DRAFT -> PENDING_REVIEW with screening, in one unit of work.

        Under the row lock: a keyed retry replays; a commitment the transition would
        refuse (state, version, owner) goes straight to ``commitment_transition`` so the
        database reports why; otherwise both parties' KYC records, the lists in force and
        the limit totals are read, the commitment is screened, and the transition (with
        the screening in its audit payload) and the screening row commit together.
        """

        def work(uow: UnitOfWork) -> WriteResult:
            if key is not None:
                probe = uow.execute(
                    compliance_records.PROBE_SQL,
                    {"actor": actor.id, "key": key, "fingerprint": fp},
                ).one()
                if probe.outcome is not None:
                    replayed, response = resolve(
                        probe.outcome, probe.response, actor=actor.id, key=key
                    )
                    return WriteResult.from_response(response, replayed)
            context = compliance_records.lock_for_submit(uow, commitment_id, now=now)
            screening: Screening | None = None
            payload = dict(noted)
            if (
                context is not None
                and context.state == State.DRAFT.value
                and expected_version in (None, context.version)
                and context.subject.owner_party == actor.party
            ):
                screening = self._screen(uow, context.subject, now)
                payload["screening"] = screening.as_payload()
            row = uow.execute(
                compliance_records.TRANSITION_SQL,
                {
                    "id": commitment_id,
                    "expected_version": expected_version,
                    "event": Event.SUBMIT.value,
                    "actor": actor.id,
                    "key_id": actor.key_id,
                    "reason": None,
                    "require_owner": actor.party,
                    "forbid_submitter": None,
                    "key": key,
                    "fingerprint": fp,
                    "payload": audit.payload_text(payload),
                    "at": now,
                    "chain": None,
                    "tx_hash": None,
                    "ledger_index": None,
                    "ledger_hash": None,
                },
            ).one()
            replayed, response = resolve(row.outcome, row.response, actor=actor.id, key=key)
            result = WriteResult.from_response(response, replayed)
            assert screening is not None or replayed, "a submit that applied was screened"
            if screening is not None and not replayed:
                compliance_records.save_screening(
                    uow, commitment_id, result.version, screening, at=now
                )
            return result

        with translated():
            return self._db.transaction(work)

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
        """VERIFIED -> ESCROWED. The DVP coordinator calls it once every leg is locked."""
        return self.apply(actor, commitment_id, Event.LOCK, **kw)

    def settle(self, actor: Actor, commitment_id: UUID, **kw: Any) -> WriteResult:
        """ESCROWED -> SETTLED. The DVP coordinator calls it once every leg is committed."""
        return self.apply(actor, commitment_id, Event.SETTLE, **kw)

    def release(self, actor: Actor, commitment_id: UUID, **kw: Any) -> WriteResult:
        """ESCROWED -> VERIFIED, after every leg was unwound."""
        return self.apply(actor, commitment_id, Event.RELEASE, **kw)

    def force_cancel(self, actor: Actor, commitment_id: UUID, **kw: Any) -> WriteResult:
        """ESCROWED -> CANCELLED by an admin, after every leg was unwound."""
        return self.apply(actor, commitment_id, Event.FORCE_CANCEL, **kw)

    def expire_due(self, *, limit: int = 100) -> list[WriteResult]:
        """Cancel, as the system, commitments past their expiry that are not settling.

        Each gets the ``expire`` transition with a reason and its audit entry; one that
        moved on meanwhile (or started settling) is skipped, not an error. Idempotent:
        a second run finds nothing to do.
        """
        now = self._clock.now()
        due = self._read(lambda c: records.expired(c, now=now, limit=limit))
        done: list[WriteResult] = []
        for commitment_id, version, expires_at in due:
            try:
                done.append(
                    self.apply(
                        SYSTEM,
                        commitment_id,
                        Event.EXPIRE,
                        expected_version=version,
                        reason=f"expired at {expires_at.isoformat()}",
                        idempotency_key=f"expire:{commitment_id}:{version}",
                    )
                )
            except (errors.StaleVersion, errors.TransitionNotAllowed):
                continue  # it moved (or began settling) after we read it
        return done

    # -- reads --------------------------------------------------------------------

    def get(self, commitment_id: UUID) -> CommitmentRecord:
        return self._read(lambda uow: records.load(uow, commitment_id))

    async def get_async(self, commitment_id: UUID) -> CommitmentRecord:
        """``get`` without a worker thread: one statement on the running event loop
        (what the API's single-commitment read uses); the same record and errors."""
        with translated():
            return await records.load_async(self._db, commitment_id)

    def state_of(self, commitment_id: UUID) -> State:
        return State(self.get(commitment_id).state)

    def list_commitments(
        self, *, state: State | None = None, limit: int = 100
    ) -> list[CommitmentRecord]:
        return self._read(
            lambda c: records.list_records(c, state=state.value if state else None, limit=limit)
        )

    def history(self, commitment_id: UUID) -> list[HistoryRow]:
        return self._read(lambda c: records.history(c, commitment_id))

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
