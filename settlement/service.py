"""The commitment service: every transition of the state machine, with its actor,
reason and idempotency key.

Each call validates its input, authorises the actor against the transition table
(``settlement.states``), and then makes one round trip to the database, which checks the
version, ownership and segregation guards and the transition table again, and writes
the history row, the audit entry and the idempotency record in the same transaction.
``ledger`` errors become ``settlement.errors`` here and nowhere else.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from ledger import audit
from ledger import commitments as records
from ledger import errors as db_errors
from ledger.commitments import CommitmentRecord, HistoryRow, LedgerRef, WriteResult
from ledger.database import Database
from ledger.idempotency import fingerprint
from settlement import errors
from settlement.clock import Clock
from settlement.domain import (
    Actor,
    Role,
    parse_amount,
    parse_currency,
    parse_idempotency_key,
    parse_text,
)
from settlement.states import Authority, Event, State, authority_for, transitions_for_event

T = TypeVar("T")

ROLES_FOR: Mapping[Authority, frozenset[Role]] = {
    Authority.OWNER: frozenset({Role.ALLOCATOR}),
    Authority.OFFICER: frozenset({Role.COMPLIANCE_OFFICER}),
    Authority.SYSTEM: frozenset({Role.SYSTEM}),
    Authority.SYSTEM_OR_ADMIN: frozenset({Role.SYSTEM, Role.ADMIN}),
    Authority.ADMIN: frozenset({Role.ADMIN}),
}


@contextmanager
def _translated() -> Iterator[None]:
    """The one place where ``ledger`` errors become engine errors."""
    try:
        yield
    except db_errors.RecordNotFound as exc:
        raise errors.CommitmentNotFound(str(exc)) from exc
    except db_errors.StaleVersion as exc:
        raise errors.StaleVersion(str(exc)) from exc
    except db_errors.GuardFailed as exc:
        raise errors.NotAuthorised(str(exc)) from exc
    except db_errors.TransitionRefused as exc:
        raise errors.TransitionNotAllowed(str(exc)) from exc
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


class CommitmentService:
    def __init__(self, db: Database, clock: Clock, *, reason_max_chars: int = 2000) -> None:
        self._db = db
        self._clock = clock
        self._reason_max_chars = reason_max_chars

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
    ) -> WriteResult:
        """Create a DRAFT commitment owned by the allocator's party.

        Raises ``NotAuthorised`` unless ``actor`` is an allocator, ``InvalidInput`` for a
        bad amount, currency, reference or expiry, ``Conflict`` if ``commitment_id`` is
        taken; replays the first result if ``idempotency_key`` was used for the same request.
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
        payload = audit.payload_text({**body, "owner_party": actor.party})
        with _translated():
            return records.create(
                self._db,
                commitment_id=commitment_id or uuid.uuid4(),
                owner_party=actor.party,
                deal_ref=reference,
                amount=value,
                currency=code,
                expires_at=expires_at,
                actor=actor.id,
                at=now,
                payload=payload,
                idempotency_key=key,
                fingerprint=self._fingerprint(actor, "/commitments", body) if key else None,
            )

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
    ) -> WriteResult:
        """Cause ``event`` on a commitment.

        ``expected_version`` is the version the caller read; a commitment that moved on
        since raises ``StaleVersion`` and nothing changes. Raises ``NotAuthorised`` when
        the actor may not cause the event (role, ownership, or the submitter approving),
        ``TransitionNotAllowed`` when the event is not allowed in the current state,
        ``InvalidText`` for a missing or oversize reason.
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
        audit_payload = audit.payload_text(
            {**extra, "reason": reason_text} if reason_text else extra
        )
        body: dict[str, Any] = {
            "event": parsed.value,
            "expected_version": expected_version,
            "reason": reason_text,
            "payload": extra,
        }
        if ledger_ref is not None:
            body["ledger_ref"] = [
                ledger_ref.chain,
                ledger_ref.tx_hash,
                ledger_ref.ledger_index,
                ledger_ref.ledger_hash,
            ]
        with _translated():
            return records.transition(
                self._db,
                commitment_id=commitment_id,
                expected_version=expected_version,
                event=parsed.value,
                actor=actor.id,
                reason=reason_text,
                require_owner=actor.party if authority_for(parsed) is Authority.OWNER else None,
                forbid_submitter=actor.id if any(t.not_by_submitter for t in spec) else None,
                at=self._clock.now(),
                payload=audit_payload,
                idempotency_key=key,
                fingerprint=(
                    self._fingerprint(actor, f"/commitments/{commitment_id}/events", body)
                    if key
                    else None
                ),
                ledger_ref=ledger_ref,
            )

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

    # -- reads --------------------------------------------------------------------

    def get(self, commitment_id: UUID) -> CommitmentRecord:
        return self._read(lambda uow: records.load(uow, commitment_id))

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
        with _translated(), self._db.unit_of_work() as uow:
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
