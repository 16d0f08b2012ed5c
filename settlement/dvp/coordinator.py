"""Two-phase delivery versus payment: the coordinator.

A settlement moves a VERIFIED commitment's legs on their ledgers, all or none:

    LOCKING ──every leg locked in time──► COMMIT ──► COMMITTING ──► SETTLED (roll forward)
       │                                                 │
       │                                                 └─ a payout refused for good before
       │                                                    anything is paid ──► UNWOUND
       └──a lock fails, the deadline passes, an admin cancels──► ABORT ──► UNWINDING ──► UNWOUND

All progress is in the database; ``step`` reads it, asks the commit protocol
(``settlement.dvp.protocol``, where the argument for "never one side paid and the other
returned" is written and machine-checked) what to do, does it through reliable
submission (``settlement.dvp.submission``), writes what happened, and returns. Calling
``step`` again, after any crash at any point, resumes from what was recorded.

This module holds what needs I/O around those decisions:

- locks in order (``protocol.LOCK_ORDER``: balances the agent can return at once
  first, escrows last), one at a time; ABORT on a lock refused inside a ledger, the
  deadline, or an admin's cancel;
- the decision, written in its own transaction with an audit entry, under the
  settlement's row lock, where a force-cancel requested meanwhile wins; COMMIT only
  while the engine clock AND every ledger's latest validated close time are before the
  commit deadline (the ledgers judge CancelAfter and claim predicates on their own
  clocks);
- the escrow ledger's clock, read once per step (``protocol.EscrowClock``): a finish
  is signed only while that ledger is at least ``commit_send_margin_s`` (no less than a
  transaction's lifetime there) before T_cancel, a cancel only once it is past
  CancelAfter;
- a payout or claim refused inside a ledger: the lock is read back
  (``Chain.lock_release``). Gone to its receiver (someone finished the escrow with the
  public fulfillment): the leg is paid. Gone to its sender (reclaimed, or cancelled
  after T_cancel): returned. Still there: the leg is REFUSED. Each with an audit entry
  naming the ledger transaction;
- a person is told (the review flag) whenever the protocol says so, and when the
  settlement is still open within ``review_before_cancel_s`` of T_cancel.

Commitment transitions (lock, settle, release, force_cancel) carry idempotency keys
derived from the settlement, so a retry after a crash replays instead of failing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from adapters.chain import (
    Applied,
    Chain,
    ChainName,
    Expired,
    LockKind,
    Outcome,
    Pending,
    Purpose,
    Rejected,
    Released,
    Unavailable,
)
from adapters.conditions import HashLock
from ledger import errors as db_errors
from ledger import settlements as settlement_records
from ledger.audit import payload_text
from ledger.commitments import CommitmentRecord
from ledger.database import Database, Statements
from ledger.settlements import LegRow, SettlementRow, SubmissionRow
from settlement.clock import Clock
from settlement.domain import errors
from settlement.domain.settlements import (
    DECIDES,
    SETTLEMENTS,
    Decision,
    LegState,
    SettlementStatus,
    SubmissionStatus,
)
from settlement.domain.states import Event, State, transitions_for_event
from settlement.domain.values import SYSTEM, Actor, Role
from settlement.dvp.instructions import InstructionCheck, LegInstruction
from settlement.dvp.protocol import EscrowClock, LegFacts, Move, lock_plan, plan
from settlement.dvp.submission import (
    SubmitPolicy,
    Submitter,
    lock_ref,
    of_purpose,
    open_submission,
)
from settlement.sealing import Sealer
from settlement.services.commitments import CommitmentService
from settlement.services.compliance import ComplianceService


class Progress(StrEnum):
    DONE = "done"  # the settlement is closed (SETTLED or UNWOUND)
    WAITING = "waiting"  # call step again later
    NEEDS_REVIEW = "needs_review"  # a person must look; the worker keeps polling


@dataclass(frozen=True)
class DvpPolicy:
    #: T_cancel = commit deadline + this: time for every claim and payout after COMMIT,
    #: several ledger closes and clock skew; must exceed ``commit_send_margin_s``
    safety_margin_s: float = 300.0
    #: the shortest commit window an instruction may ask for
    min_window_s: float = 10.0
    #: when waiting on a ledger that cannot say when it next moves, look again after
    #: this long; a chain that expects its next validated ledger at a known time
    #: (``Pending.look_again_s``) is looked at again just after it, within the bounds
    #: below
    retry_after_s: float = 1.0
    min_poll_s: float = 0.05
    max_poll_s: float = 10.0
    #: a settlement still committing this close to T_cancel (on the escrow ledger's
    #: clock when it has one, else the engine's) is flagged for a person
    review_before_cancel_s: float = 60.0
    #: signatures per purpose refused before any ledger as malformed or badly signed
    #: (for a lock: for any reason) before a person is asked
    max_rejected_attempts: int = 3
    #: an XRPL finish is signed only while the ledger's own time is at least this far
    #: before T_cancel: at least a transaction's lifetime there (LastLedgerSequence
    #: window x close interval), so a finish signed in time can still apply before the
    #: ledger refuses it at CancelAfter
    commit_send_margin_s: float = 100.0
    #: "never applied" needs two proofs at least this far apart
    expiry_recheck_s: float = 1.0
    #: seeds the choice among free channels (None: from the OS)
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.commit_send_margin_s < self.safety_margin_s:
            raise ValueError(
                f"commit_send_margin_s ({self.commit_send_margin_s}) must be positive and "
                f"below safety_margin_s ({self.safety_margin_s})"
            )
        if self.review_before_cancel_s < 0 or self.min_window_s <= 0:
            raise ValueError("review_before_cancel_s and min_window_s must be positive")


@dataclass(frozen=True)
class StepResult:
    progress: Progress
    status: SettlementStatus
    retry_after_s: float = 0.0
    detail: str = ""


class DvpCoordinator:
    def __init__(
        self,
        db: Database,
        *,
        service: CommitmentService,
        chains: Mapping[ChainName, Chain],
        sealer: Sealer,
        clock: Clock,
        policy: DvpPolicy | None = None,
        accounts: ComplianceService | None = None,
        new_id: Callable[[], UUID] = uuid.uuid4,
        new_hash_lock: Callable[[], HashLock] = HashLock.generate,
    ) -> None:
        """``new_id`` names each new settlement and ``new_hash_lock`` makes its hash
        lock; a test may pass repeatable ones. Outside tests the hash lock's secret must
        come from the operating system's cryptographic source (the default): whoever can
        predict it can finish an escrow."""
        self._db = db
        self._new_id = new_id
        self._new_hash_lock = new_hash_lock
        self._service = service
        self._chains = dict(chains)
        self._sealer = sealer
        self._clock = clock
        self.policy = policy or DvpPolicy()
        self._instructions = InstructionCheck(self._chains, accounts)
        self._submit = Submitter(
            db,
            self._chains,
            clock,
            SubmitPolicy(
                max_rejected_attempts=self.policy.max_rejected_attempts,
                expiry_recheck_s=self.policy.expiry_recheck_s,
            ),
            seed=self.policy.seed,
        )

    # -- instruction ----------------------------------------------------------------

    def instruct(
        self,
        actor: Actor,
        commitment_id: UUID,
        legs: Sequence[LegInstruction],
        *,
        commit_deadline: datetime,
        settle_not_before: datetime | None = None,
    ) -> UUID:
        """Attach a settlement instruction to a VERIFIED commitment.

        Everything is checked before anything is signed (``instructions``: every leg
        valid on its ledger, payouts the ledger would refuse included, the amounts, the
        parties) and a deadline at least ``min_window_s`` away; each leg's lock
        primitive is fixed here. With ``settle_not_before`` (a settlement date) the
        legs lock at once and the commitment rests ESCROWED until then; COMMIT is decided
        only from that time on and before the deadline. Raises ``InvalidInput`` (nothing
        is written) or ``TransitionNotAllowed`` when the commitment is not VERIFIED or
        already has an open settlement.
        """
        commitment = self._commitment_to_settle(actor, commitment_id)
        now = self._clock.now()
        self._check_dates(now, commit_deadline, settle_not_before)
        kinds = self._instructions.check(
            legs,
            commitment_id=commitment_id,
            owner=commitment.owner_party,
            amount=commitment.amount,
            currency=commitment.currency,
        )
        return self._record_instruction(
            actor,
            commitment_id,
            _leg_rows(legs, kinds),
            now=now,
            commit_deadline=commit_deadline,
            settle_not_before=settle_not_before,
        )

    def _commitment_to_settle(self, actor: Actor, commitment_id: UUID) -> CommitmentRecord:
        """The commitment, if ``actor`` may settle it and it is VERIFIED."""
        if actor.role not in (Role.ADMIN, Role.SYSTEM, Role.ALLOCATOR):
            raise errors.NotAuthorised(f"{actor.role} may not instruct a settlement")
        commitment = self._service.get(commitment_id)
        if actor.role is Role.ALLOCATOR and actor.party != commitment.owner_party:
            raise errors.NotAuthorised(f"party {actor.party} does not own {commitment_id}")
        if commitment.state != State.VERIFIED:
            raise errors.TransitionNotAllowed(
                f"a settlement needs a VERIFIED commitment; {commitment_id} is {commitment.state}"
            )
        return commitment

    def _check_dates(
        self, now: datetime, commit_deadline: datetime, settle_not_before: datetime | None
    ) -> None:
        """A deadline at least ``min_window_s`` away; a settlement date before it."""
        if commit_deadline.tzinfo is None or commit_deadline < now + timedelta(
            seconds=self.policy.min_window_s
        ):
            raise errors.InvalidInput(
                f"commit deadline must be at least {self.policy.min_window_s:.0f} s in the future"
            )
        if settle_not_before is not None and not (
            settle_not_before.tzinfo is not None and settle_not_before < commit_deadline
        ):
            raise errors.InvalidInput("settle_not_before must come before the commit deadline")

    def _record_instruction(
        self,
        actor: Actor,
        commitment_id: UUID,
        rows: list[dict[str, Any]],
        *,
        now: datetime,
        commit_deadline: datetime,
        settle_not_before: datetime | None,
    ) -> UUID:
        """Write the settlement, its legs and the hash lock's sealed secret, with an
        audit entry, in one transaction; the database refuses a second open settlement
        of the commitment (``TransitionNotAllowed``)."""
        lock = self._new_hash_lock()
        settlement_id = self._new_id()
        cancel_after = commit_deadline + timedelta(seconds=self.policy.safety_margin_s)

        def write(uow: Statements) -> None:
            settlement_records.insert_settlement(
                uow,
                settlement_id=settlement_id,
                commitment_id=commitment_id,
                settle_not_before=settle_not_before,
                commit_deadline=commit_deadline,
                cancel_after=cancel_after,
                condition_hex=lock.condition_hex,
                secret_sealed=self._sealer.seal(lock.secret),
                created_by=actor.id,
                at=now,
                legs=rows,
            )
            settlement_records.append_audit(
                uow,
                commitment_id=commitment_id,
                actor=actor.id,
                key_id=actor.key_id,
                action="settlement_instructed",
                at=now,
                payload=payload_text(
                    {
                        "settlement_id": settlement_id,
                        "settle_not_before": settle_not_before,
                        "commit_deadline": commit_deadline,
                        "cancel_after": cancel_after,
                        "condition": lock.condition_hex,
                        "legs": [{k: v for k, v in r.items() if v is not None} for r in rows],
                    }
                ),
            )

        try:
            self._db.statements(write)
        except db_errors.ConstraintViolation as exc:
            if exc.sqlstate == "23505":
                raise errors.TransitionNotAllowed(
                    f"commitment {commitment_id} already has an open settlement"
                ) from exc
            raise errors.InvalidInput(str(exc)) from exc
        return settlement_id

    def request_force_cancel(self, actor: Actor, settlement_id: UUID, reason: str) -> None:
        """An admin asks to unwind a settlement that has not decided COMMIT."""
        if actor.role is not Role.ADMIN:
            raise errors.NotAuthorised("only an admin force-cancels a settlement")
        if not reason or not reason.strip():
            raise errors.InvalidText("reason is required")
        now = self._clock.now()

        def write(uow: Statements) -> None:
            settlement = settlement_records.load_settlement(uow, settlement_id, for_update=True)
            if settlement.decision == Decision.COMMIT:
                raise errors.TransitionNotAllowed(
                    f"settlement {settlement_id} decided COMMIT; it only rolls forward"
                )
            if SettlementStatus(settlement.status) not in (
                SettlementStatus.LOCKING,
                SettlementStatus.UNWINDING,
            ):
                raise errors.TransitionNotAllowed(f"settlement {settlement_id} is closed")
            settlement_records.request_cancel(
                uow, settlement_id, actor.id, reason.strip(), now, key_id=actor.key_id
            )
            settlement_records.append_audit(
                uow,
                commitment_id=settlement.commitment_id,
                actor=actor.id,
                key_id=actor.key_id,
                action="settlement_cancel_requested",
                at=now,
                payload=payload_text({"settlement_id": settlement_id, "reason": reason.strip()}),
            )

        self._db.statements(write)

    # -- driving --------------------------------------------------------------------

    def step(self, settlement_id: UUID) -> StepResult:
        """Advance the settlement as far as it can go now; safe to call at any time."""
        settlement, legs, subs = self._load(settlement_id)
        match settlement.status:
            case SettlementStatus.LOCKING:
                return self._step_locking(settlement, legs, subs)
            case SettlementStatus.COMMITTING | SettlementStatus.UNWINDING:
                return self._step_plan(settlement, legs, subs)
            case _:
                return StepResult(Progress.DONE, SettlementStatus(settlement.status))

    def run_to_end(
        self,
        settlement_id: UUID,
        *,
        timeout_s: float = 60.0,
        poll_s: float = 0.02,
        until: Callable[[], bool] | None = None,
    ) -> StepResult:
        """Step in the foreground until the settlement closes, needs a person, ``until()``
        holds, or ``timeout_s`` passes (the demo and the tests; workers use ``step``).
        Ledgers keep closing meanwhile; the caller moves ledger time if it must."""
        deadline = time.monotonic() + timeout_s
        result = self.step(settlement_id)
        while result.progress is Progress.WAITING and time.monotonic() < deadline:
            if until is not None and until():
                break
            time.sleep(poll_s)
            result = self.step(settlement_id)
        return result

    def _step_locking(
        self, s: SettlementRow, legs: list[LegRow], subs: list[SubmissionRow]
    ) -> StepResult:
        while True:
            by_no = {leg.leg_no: leg for leg in legs}
            facts = [self._facts(s, leg, subs) for leg in legs]
            deadline_passed = self._clock.now() >= s.commit_deadline
            step = lock_plan(
                facts,
                cancel_requested=bool(s.cancel_requested_by),
                deadline_passed=deadline_passed,
            )
            if step is Decision.COMMIT:
                break
            if step is Decision.ABORT:
                return self._decide(s, Decision.ABORT, self._abort_reason(s, legs, subs))
            assert isinstance(step, Move)
            leg = by_no[step.leg_no]
            outcome = self._submit.advance(s, leg, Purpose.LOCK, subs)
            if not isinstance(outcome, Applied | Rejected):
                # expired (never applied: the next step signs the lock again), pending,
                # or the ledger unreachable
                return self._wait(s, outcome, flagged=s.needs_review)
            s, legs, subs = self._load(s.id)
            if (
                isinstance(outcome, Rejected)
                and self._submit.refused(s, leg, Purpose.LOCK, subs) is None
            ):
                # refused before any ledger, attempts left: sign again next step
                return self._wait(s, outcome, flagged=s.needs_review)
        # every leg locked: the commitment is ESCROWED, then the decision
        self._transition(s, Event.LOCK)
        now = self._clock.now()
        if now >= s.commit_deadline:
            return self._decide(s, Decision.ABORT, "commit deadline passed after every leg locked")
        if s.settle_not_before is not None and now < s.settle_not_before:
            wait_s = (s.settle_not_before - now).total_seconds()
            return StepResult(
                Progress.WAITING,
                SettlementStatus(s.status),
                retry_after_s=min(wait_s, 60.0),
                detail=f"escrowed; settles from {s.settle_not_before}",
            )
        return self._decide_on_every_clock(s, legs)

    def _abort_reason(self, s: SettlementRow, legs: list[LegRow], subs: list[SubmissionRow]) -> str:
        if s.cancel_requested_by:
            return f"force-cancel requested by {s.cancel_requested_by}"
        for leg in legs:
            refused = self._submit.refused(s, leg, Purpose.LOCK, subs)
            if leg.state == LegState.PENDING and refused is not None:
                return f"leg {leg.leg_no} lock rejected: {refused.code}"
        # unwinding resolves any lock still in flight before it undoes anything
        return "commit deadline passed before every leg locked"

    def _decide_on_every_clock(self, s: SettlementRow, legs: list[LegRow]) -> StepResult:
        """Every leg is locked and the engine clock is before the deadline: COMMIT if
        every ledger's own clock is too, ABORT if one is not, wait if one cannot say."""
        ledger_now = _LedgerTimes(self._chains)
        for chain in sorted({ChainName(leg.chain) for leg in legs}):
            at = ledger_now(chain)
            if isinstance(at, Unavailable):
                # no decision blind; the engine clock still aborts at the deadline
                return self._wait(s, at, flagged=s.needs_review)
            if at >= s.commit_deadline:
                return self._decide(
                    s,
                    Decision.ABORT,
                    f"commit deadline passed on the {chain} ledger's clock ({at.isoformat()})",
                )
        if self._clock.now() >= s.commit_deadline:
            return self._decide(
                s, Decision.ABORT, "commit deadline passed while reading ledger times"
            )
        return self._decide(s, Decision.COMMIT, "every leg locked before the commit deadline")

    # -- after the decision: the protocol's plan -----------------------------------

    def _step_plan(
        self, s: SettlementRow, legs: list[LegRow], subs: list[SubmissionRow]
    ) -> StepResult:
        ledger_now = _LedgerTimes(self._chains)
        clock = self._escrow_clock(s, legs, ledger_now)
        todo = plan(SettlementStatus(s.status), [self._facts(s, leg, subs) for leg in legs], clock)
        if todo.close is not None:
            return self._finish(s, todo.close)
        flagged = s.needs_review
        if todo.person and not flagged:
            # the first reason is the flag's; a flagged settlement is not written again
            self._flag(s, todo.person[0])
            flagged = True
        waits: list[Outcome] = [Pending("", w) for w in todo.waits]
        # only an escrow's finish carries the secret: opened when one is to be driven
        fulfillment = (
            HashLock(self._sealer.open(s.secret_sealed)).fulfillment_hex
            if any(m.purpose is Purpose.COMMIT and not m.held for m in todo.moves)
            else ""
        )
        by_no = {leg.leg_no: leg for leg in legs}
        for move in todo.moves:
            outcome = self._move(s, by_no[move.leg_no], move, subs, fulfillment)
            if not isinstance(outcome, Applied):
                waits.append(outcome)
        if not todo.moves and not waits and not todo.person:
            waits.append(Pending("", "nothing to do until the ledgers move"))
        if todo.moves and all(not isinstance(w, Pending | Unavailable | Expired) for w in waits):
            # every move of this step is final: the next plan may go further at once
            return StepResult(
                Progress.WAITING,
                SettlementStatus(s.status),
                retry_after_s=0.0,
                detail="progressed",
            )
        if s.status == SettlementStatus.COMMITTING and not flagged:
            flagged = self._near_cancel(s, ledger_now)
        return self._wait(s, *(waits or [Pending("", "waiting")]), flagged=flagged)

    def _facts(self, s: SettlementRow, leg: LegRow, subs: list[SubmissionRow]) -> LegFacts:
        kind = LockKind(leg.lock_kind)
        mine = [x for x in subs if x.leg_no == leg.leg_no]
        return LegFacts(
            leg_no=leg.leg_no,
            kind=kind,
            state=LegState(leg.state),
            open=frozenset(Purpose(x.purpose) for x in mine if x.status == SubmissionStatus.SIGNED),
            stuck=frozenset(
                p for p in Purpose if self._submit.refused(s, leg, p, subs) is not None
            ),
            finish_signed=kind is LockKind.ESCROW and bool(of_purpose(subs, leg, Purpose.COMMIT)),
        )

    def _escrow_clock(
        self, s: SettlementRow, legs: list[LegRow], ledger_now: _LedgerTimes
    ) -> EscrowClock:
        escrows = {
            ChainName(leg.chain)
            for leg in legs
            if leg.lock_kind == LockKind.ESCROW and leg.state in (LegState.LOCKED, LegState.REFUSED)
        }
        if not escrows:
            return EscrowClock.OPEN
        clocks = []
        for chain in escrows:
            at = ledger_now(chain)
            if isinstance(at, Unavailable):
                return EscrowClock.UNKNOWN
            if _past(at, s.cancel_after):
                clocks.append(EscrowClock.PAST_CANCEL)
            elif at < s.cancel_after - timedelta(seconds=self.policy.commit_send_margin_s):
                clocks.append(EscrowClock.OPEN)
            else:
                clocks.append(EscrowClock.CLOSING)
        order = [EscrowClock.OPEN, EscrowClock.CLOSING, EscrowClock.PAST_CANCEL]
        return min(clocks, key=order.index)

    def _move(
        self,
        s: SettlementRow,
        leg: LegRow,
        move: Move,
        subs: list[SubmissionRow],
        fulfillment: str,
    ) -> Outcome:
        if move.purpose is Purpose.LOCK:
            resolved = self._resolve_lock(s, leg, subs)
            return resolved if not isinstance(resolved, LegRow) else Applied("", 0, "", "")
        outcome = self._submit.advance(
            s, leg, move.purpose, subs, held=move.held, fulfillment_hex=fulfillment
        )
        if isinstance(outcome, Rejected) and outcome.ledger_index is not None:
            return self._after_refusal(s, leg, move, outcome)
        return outcome

    def _after_refusal(
        self, s: SettlementRow, leg: LegRow, move: Move, refusal: Rejected
    ) -> Outcome:
        """A claim, payout or unwind the ledger refused inside a ledger. A leg whose
        funds are not with the agent may have lost its lock to someone else: read it
        back. Otherwise the payout is refused for good (REFUSED), or (an unwind) the
        purpose is stuck until a person acts."""
        if leg.state in (LegState.LOCKED, LegState.REFUSED) and not (
            leg.state == LegState.REFUSED and move.held
        ):
            released = self._chains[ChainName(leg.chain)].lock_release(lock_ref(leg))
            if isinstance(released, Unavailable):
                return released
            if released is not None and released.to in (leg.receiver, leg.sender):
                self._record_release(s, leg, released)
                return Applied(released.tx_hash, released.ledger_index, released.ledger_hash, "")
            if released is not None:
                self._record_release(s, leg, released)  # flags it for a person
                return refusal
        if move.purpose in (Purpose.CLAIM, Purpose.COMMIT) and leg.state != LegState.REFUSED:
            self._set_leg(s, leg, LegState.REFUSED)
            self._flag(
                s,
                f"leg {leg.leg_no}'s {move.purpose} refused by {leg.chain} for good: "
                f"{refusal.code}",
            )
        return refusal

    def _record_release(self, s: SettlementRow, leg: LegRow, released: Released) -> None:
        """Someone else took the lock: record where the funds went, with the ledger
        transaction that moved them."""
        if released.to == leg.receiver:
            state, action = LegState.COMMITTED, "leg_paid_by_release"
        elif released.to == leg.sender:
            state, action = LegState.UNWOUND, "leg_returned_by_release"
        else:
            # neither side got it (an issuer's clawback, or a claimant the engine does
            # not expect): nothing the protocol can decide; a person must
            self._flag(
                s,
                f"leg {leg.leg_no}'s lock was taken by {released.to} in {released.tx_hash}, "
                "neither its receiver nor its sender",
            )
            return
        now = self._clock.now()

        def write(uow: Statements) -> None:
            settlement_records.record_release(
                uow,
                s.id,
                leg.leg_no,
                state,
                tx_hash=released.tx_hash,
                ledger_index=released.ledger_index,
                ledger_hash=released.ledger_hash,
                to=released.to,
            )
            body: dict[str, object] = {
                "settlement_id": s.id,
                "leg_no": leg.leg_no,
                "to": released.to,
            }
            if released.delivered is not None:
                body["delivered"] = released.delivered
            settlement_records.append_audit(
                uow,
                commitment_id=s.commitment_id,
                actor=SYSTEM.id,
                action=action,
                at=now,
                chain=leg.chain,
                tx_hash=released.tx_hash,
                ledger_index=released.ledger_index,
                ledger_hash=released.ledger_hash,
                payload=payload_text(body),
            )

        self._db.statements(write)

    def _near_cancel(self, s: SettlementRow, ledger_now: _LedgerTimes) -> bool:
        """Flag a settlement still committing within ``review_before_cancel_s`` of
        T_cancel, judged on the escrow ledger's clock where there is one."""
        at: datetime | Unavailable = self._clock.now()
        if ChainName.XRPL in self._chains:
            read = ledger_now(ChainName.XRPL)
            if not isinstance(read, Unavailable):
                at = read
        assert isinstance(at, datetime)
        remaining = (s.cancel_after - at).total_seconds()
        if remaining < self.policy.review_before_cancel_s:
            self._flag(s, f"still committing {remaining:.0f} s before T_cancel")
            return True
        return False

    def _finish(self, s: SettlementRow, status: SettlementStatus) -> StepResult:
        commitment = self._service.get(s.commitment_id)
        if status is SettlementStatus.SETTLED:
            self._transition(s, Event.SETTLE)
        elif commitment.state == State.ESCROWED:
            self._transition(s, Event.FORCE_CANCEL if s.cancel_requested_by else Event.RELEASE)
        else:
            # unwound before every leg locked: the commitment never left VERIFIED, so no
            # transition says so; the close carries its own audit entry (and the
            # allocator's ``settlement.unwound`` event)
            self._close(s, status, audit_action="settlement_unwound")
            return StepResult(Progress.DONE, status)
        self._close(s, status)
        return StepResult(Progress.DONE, status)

    def _resolve_lock(
        self, s: SettlementRow, leg: LegRow, subs: list[SubmissionRow]
    ) -> LegRow | Outcome:
        """A PENDING leg being unwound: a lock still in flight must be final before we
        know whether there is anything to undo. Returns the leg as it now stands, or
        the outcome to wait on."""
        if open_submission(subs, leg, Purpose.LOCK) is None:
            self._set_leg(s, leg, LegState.NOT_LOCKED)
            return self._leg(s.id, leg.leg_no)
        outcome = self._submit.advance(s, leg, Purpose.LOCK, subs, sign=False)
        match outcome:
            case Applied():
                return self._leg(s.id, leg.leg_no)
            case Rejected() | Expired():
                self._set_leg(s, leg, LegState.NOT_LOCKED)
                return self._leg(s.id, leg.leg_no)
            case Pending() | Unavailable():
                return outcome

    # -- decisions, transitions, review ---------------------------------------------

    def _decide(self, s: SettlementRow, decision: Decision, reason: str) -> StepResult:
        now = self._clock.now()

        def write(uow: Statements) -> Decision:
            current = settlement_records.load_settlement(uow, s.id, for_update=True)
            if current.decision is not None:
                return Decision(current.decision)  # another worker decided first
            chosen, why = decision, reason
            if decision is Decision.COMMIT and current.cancel_requested_by:
                # an admin's cancel recorded after this step read the settlement wins:
                # it is seen here, under the row lock the cancel also takes
                chosen = Decision.ABORT
                why = f"force-cancel requested by {current.cancel_requested_by}"
            SETTLEMENTS.require(SettlementStatus(current.status), DECIDES[chosen])
            settlement_records.decide(uow, s.id, chosen.value, why, now)
            settlement_records.append_audit(
                uow,
                commitment_id=s.commitment_id,
                actor=SYSTEM.id,
                action=f"settlement_{chosen.value.lower()}",
                at=now,
                payload=payload_text({"settlement_id": s.id, "reason": why}),
            )
            return chosen

        decided = self._db.statements(write)
        return StepResult(Progress.WAITING, DECIDES[decided], detail=reason)

    def _transition(self, s: SettlementRow, event: Event) -> None:
        """Move the commitment with the settlement (lock, settle, release, force_cancel),
        once: a replay finds the idempotency key, or the commitment already there."""
        actor = SYSTEM
        reason = None
        if event is Event.FORCE_CANCEL:
            assert s.cancel_requested_by is not None
            actor = Actor(s.cancel_requested_by, Role.ADMIN, key_id=s.cancel_requested_key_id)
            reason = s.cancel_reason
        try:
            self._service.apply(
                actor,
                s.commitment_id,
                event,
                reason=reason,
                idempotency_key=f"settlement:{s.id}:{event}",
                payload={"settlement_id": str(s.id)},
            )
        except errors.TransitionNotAllowed:
            # already there (a replay of this step after a crash found no key, e.g. the
            # commitment moved by the same event in an earlier life of this settlement)
            state = self._service.state_of(s.commitment_id)
            if state not in {t.target for t in transitions_for_event(event)}:
                raise

    def _close(
        self, s: SettlementRow, status: SettlementStatus, *, audit_action: str | None = None
    ) -> None:
        """The one place a settlement closes; the table is checked before the database's
        own rule, so a wrong close is named here. With ``audit_action``, an audit entry
        of the close is written in the same transaction."""
        SETTLEMENTS.require(SettlementStatus(s.status), status)
        now = self._clock.now()

        def write(uow: Statements) -> None:
            settlement_records.close(uow, s.id, status, now)
            if audit_action is not None:
                settlement_records.append_audit(
                    uow,
                    commitment_id=s.commitment_id,
                    actor=SYSTEM.id,
                    action=audit_action,
                    at=now,
                    payload=payload_text(
                        {"settlement_id": s.id, "reason": s.decision_reason or status.value}
                    ),
                )

        self._db.statements(write)

    def _flag(self, s: SettlementRow, reason: str) -> None:
        now = self._clock.now()

        def write(uow: Statements) -> None:
            if settlement_records.flag_for_review(uow, s.id, reason, now):
                settlement_records.append_audit(
                    uow,
                    commitment_id=s.commitment_id,
                    actor=SYSTEM.id,
                    action="settlement_flagged",
                    at=now,
                    payload=payload_text({"settlement_id": s.id, "reason": reason}),
                )

        self._db.statements(write)

    def _wait(self, s: SettlementRow, *waiting: Outcome, flagged: bool) -> StepResult:
        """Hand the settlement back until the soonest of what it waits on can have
        changed; the first is what the result reports."""
        return StepResult(
            Progress.NEEDS_REVIEW if flagged else Progress.WAITING,
            SettlementStatus(s.status),
            retry_after_s=min(self._retry_after(x) for x in waiting),
            detail=_describe(waiting[0]),
        )

    def _retry_after(self, outcome: Outcome) -> float:
        if isinstance(outcome, Pending) and outcome.look_again_s is not None:
            p = self.policy
            return min(max(outcome.look_again_s, p.min_poll_s), p.max_poll_s)
        return self.policy.retry_after_s

    def _set_leg(self, s: SettlementRow, leg: LegRow, state: LegState) -> None:
        self._db.statements(
            lambda uow: settlement_records.set_leg_state(uow, s.id, leg.leg_no, state)
        )

    def _leg(self, settlement_id: UUID, leg_no: int) -> LegRow:
        def read(uow: Statements) -> LegRow:
            return next(
                x for x in settlement_records.load_legs(uow, settlement_id) if x.leg_no == leg_no
            )

        return self._db.statements(read)

    def _load(self, settlement_id: UUID) -> tuple[SettlementRow, list[LegRow], list[SubmissionRow]]:
        def read(uow: Statements) -> tuple[SettlementRow, list[LegRow], list[SubmissionRow]]:
            return (
                settlement_records.load_settlement(uow, settlement_id),
                settlement_records.load_legs(uow, settlement_id),
                settlement_records.submissions(uow, settlement_id),
            )

        try:
            # three reads, no writes: each may see its own snapshot, as under READ
            # COMMITTED in one transaction; a step acts on what the ledger says anyway
            return self._db.statements(read, atomic=False)
        except db_errors.RecordNotFound as exc:
            raise errors.CommitmentNotFound(str(exc)) from exc

    # -- reads ----------------------------------------------------------------------

    def settlement(
        self, settlement_id: UUID
    ) -> tuple[SettlementRow, list[LegRow], list[SubmissionRow]]:
        return self._load(settlement_id)


def _leg_rows(legs: Sequence[LegInstruction], kinds: Sequence[LockKind]) -> list[dict[str, Any]]:
    """The legs as ``settlement_records.insert_settlement`` takes them, numbered from 0."""
    return [
        {
            "leg_no": n,
            "kind": leg.kind,
            "chain": leg.chain.value,
            "asset_code": leg.asset.code,
            "asset_issuer": leg.asset.issuer,
            "amount": leg.amount,
            "sender": leg.sender,
            "receiver": leg.receiver,
            "lock_kind": kind.value,
        }
        for n, (leg, kind) in enumerate(zip(legs, kinds, strict=True))
    ]


class _LedgerTimes:
    """Each chain's latest validated close time, read at most once per step (a step
    that needs it on several legs of one chain asks the ledger once)."""

    def __init__(self, chains: Mapping[ChainName, Chain]) -> None:
        self._chains = chains
        self._read: dict[ChainName, datetime | Unavailable] = {}

    def __call__(self, chain: ChainName) -> datetime | Unavailable:
        if chain not in self._read:
            self._read[chain] = self._chains[chain].ledger_time()
        return self._read[chain]


def _past(ledger_time: datetime, moment: datetime) -> bool:
    """Whether a ledger whose close time is ``ledger_time`` (whole seconds) is strictly
    after ``moment`` as a ledger records it: rounded up to the second, as the adapters
    round CancelAfter, so a cancel is never sent the ledger would still refuse."""
    whole = moment.replace(microsecond=0)
    if moment.microsecond:
        whole += timedelta(seconds=1)
    return ledger_time > whole


def _describe(outcome: Outcome) -> str:
    match outcome:
        case Pending(tx_hash=h, detail=d):
            return f"pending {h[:12]} {d}".strip()
        case Unavailable(reason=r):
            return f"ledger unavailable: {r}"
        case Rejected(code=c):
            return f"rejected: {c}"
        case Expired(tx_hash=h):
            return f"expired {h[:12]}"
        case Applied(tx_hash=h):
            return f"applied {h[:12]}"


__all__ = ["DvpCoordinator", "DvpPolicy", "LegInstruction", "Progress", "StepResult"]
