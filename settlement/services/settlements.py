"""The settlements that need a person, and what an admin does about them.

The coordinator flags a settlement when it cannot finish alone (a commit rejected by
its ledger after COMMIT, a ledger unreachable too close to T_cancel, an unwind the
ledger keeps refusing). It keeps polling meanwhile; the flag is for people. An admin
either **retries** (the cause was fixed, e.g. the receiver's trust line: the legs get
fresh attempts) or **resolves** (it was handled outside the engine), each with an audit
entry on the commitment's chain.
"""

from __future__ import annotations

from uuid import UUID

from ledger import settlements as settlement_records
from ledger.audit import payload_text
from ledger.database import Database, UnitOfWork
from ledger.errors import RecordNotFound
from ledger.settlements import SettlementRow
from settlement.clock import Clock
from settlement.domain import errors
from settlement.domain.values import Actor, Role, parse_text


class SettlementDesk:
    def __init__(self, db: Database, clock: Clock, *, reason_max_chars: int = 2000) -> None:
        self._db = db
        self._clock = clock
        self._reason_max_chars = reason_max_chars

    def flagged(self) -> list[SettlementRow]:
        return self._db.transaction(settlement_records.flagged)

    def retry(self, actor: Actor, settlement_id: UUID, note: str) -> None:
        """Clear the flag and give the legs fresh attempts; the worker carries on."""
        self._clear(actor, settlement_id, note, retry=True)

    def resolve(self, actor: Actor, settlement_id: UUID, note: str) -> None:
        """Clear the flag: a person handled it; the note says how."""
        self._clear(actor, settlement_id, note, retry=False)

    def _clear(self, actor: Actor, settlement_id: UUID, note: str, *, retry: bool) -> None:
        if actor.role is not Role.ADMIN:
            raise errors.NotAuthorised("only an admin retries or resolves a flagged settlement")
        text = parse_text(note, name="note", max_chars=self._reason_max_chars, required=True)
        now = self._clock.now()

        def write(uow: UnitOfWork) -> None:
            try:
                settlement = settlement_records.load_settlement(uow, settlement_id, for_update=True)
            except RecordNotFound as exc:
                raise errors.SettlementNotFound(str(exc)) from exc
            if not settlement_records.clear_flag(
                uow, settlement_id, actor=actor.id, at=now, resolution=text, reset_attempts=retry
            ):
                raise errors.TransitionNotAllowed(
                    f"settlement {settlement_id} is not flagged for review"
                )
            settlement_records.append_audit(
                uow,
                commitment_id=settlement.commitment_id,
                actor=actor.id,
                key_id=actor.key_id,
                action="settlement_retried" if retry else "settlement_resolved",
                at=now,
                payload=payload_text(
                    {
                        "settlement_id": settlement_id,
                        "note": text,
                        "flag_was": settlement.review_reason,
                    }
                ),
            )

        self._db.transaction(write)
