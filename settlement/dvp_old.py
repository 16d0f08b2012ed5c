"""Two-phase delivery versus payment: the coordinator.

A settlement moves a VERIFIED commitment's legs on their ledgers, all or none:

    LOCKING ──every leg locked in time──► COMMIT ──► COMMITTING ──► SETTLED (roll forward)
       │
       └──a lock fails, the deadline passes, an admin cancels──► ABORT ──► UNWINDING ──► UNWOUND

All progress is in the database; ``step`` reads it, does the next thing that can be
done, writes what happened, and returns. Calling ``step`` again, after any crash at any
point, resumes from what was recorded. The rules it keeps (DESIGN section 4):

- write-ahead: a transaction is signed, recorded and committed before it is sent; a lost
  response is "pending", resolved by polling the hash, never by signing again; only a
  final outcome (applied, rejected, expired) allows a new signature for the purpose, and
  the database refuses a second open one;
- legs that can be unwound at once (Stellar) are locked before legs that can only be
  unwound after CancelAfter (XRPL escrow), one at a time;
- the decision is written in its own transaction with an audit entry before phase 2;
  after COMMIT the coordinator only rolls forward; commit starts only before the commit
  deadline, and T_cancel = deadline + a safety margin;
- time is judged on every clock that matters, never on an estimate of skew: the ledgers
  enforce CancelAfter and claim predicates on their own close times, which may run ahead
  of or behind the engine's clock by any amount. COMMIT is decided only while the engine
  clock AND the latest validated close time of every ledger of the settlement are before
  the commit deadline; an XRPL commit is signed only while that ledger's time is
  ``commit_send_margin_s`` before T_cancel (after it the ledger refuses EscrowFinish);
  an XRPL escrow is unwound only once that ledger's time is past CancelAfter (before it
  the ledger refuses EscrowCancel), whatever the engine's clock says. A ledger whose
  time cannot be read is waited for, as if unreachable;
- a commit leg the ledger rejects, or a ledger unreachable too close to T_cancel, flags
  the settlement for a person: it is never reported SETTLED.

Commitment transitions (lock, settle, release, force_cancel) carry idempotency keys
derived from the settlement, so a retry after a crash replays instead of failing.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from adapters.chain import (
    Applied,
    Asset,
    Chain,
    ChainName,
    Expired,
    Leg,
    LockRef,
    LockTerms,
    Outcome,
    Pending,
    Purpose,
    Rejected,
    SignedSubmission,
    Unavailable,
)
from adapters.conditions import HashLock
from adapters.errors import AdapterError, LegInvalid
from ledger import errors as db_errors
from ledger import settlements as records
from ledger.audit import payload_text
from ledger.database import Database, Statements
from ledger.settlements import LegRow, SettlementRow, SubmissionRow
from settlement import errors
from settlement.clock import Clock
from settlement.domain import SYSTEM, Actor, Role
from settlement.review import ComplianceService
from settlement.sealing import Sealer
from settlement.service import CommitmentService
from settlement.states import State

#: legs whose lock can only be undone after CancelAfter are locked last
_LOCK_ORDER = {ChainName.STELLAR: 0, ChainName.XRPL: 1}
#: chains whose unwind is refused by the ledger until CancelAfter has passed
_UNWIND_AFTER_CANCEL = frozenset({ChainName.XRPL})


class Progress(StrEnum):
    DONE = "done"  # the settlement is closed (SETTLED or UNWOUND)
    WAITING = "waiting"  # call step again later
    NEEDS_REVIEW = "needs_review"  # a person must look; the worker keeps polling


@dataclass(frozen=True)
class LegInstruction:
    chain: ChainName
    asset: Asset
    amount: Decimal
    sender: str
    receiver: str
    kind: str = "principal"

    def as_leg(self) -> Leg:
        return Leg(self.chain, self.asset, self.amount, self.sender, self.receiver)


@dataclass(frozen=True)
class DvpPolicy:
    #: T_cancel = commit deadline + this: several ledger closes plus clock skew
    safety_margin_s: float = 120.0
    #: the shortest commit window an instruction may ask for
    min_window_s: float = 10.0
    #: when waiting on a ledger that cannot say when it next moves, look again after
    #: this long; a chain that expects its next validated ledger at a known time
    #: (``Pending.look_again_s``) is looked at again just after it, within the bounds
    #: below
    retry_after_s: float = 1.0
    min_poll_s: float = 0.05
    max_poll_s: float = 10.0
    #: a commit still unresolved this close to T_cancel needs a person
    review_before_cancel_s: float = 60.0
    #: signatures per leg for a commit or an unwind the ledger keeps rejecting
    max_rejected_attempts: int = 3
    #: an XRPL commit (EscrowFinish) is signed only while the ledger's own time is at
    #: least this far before T_cancel: the ledger refuses it once its parent close time
    #: passes CancelAfter, and the transaction needs a few closes to get in
    commit_send_margin_s: float = 5.0


@dataclass(frozen=True)
class StepResult:
    progress: Progress
    status: str
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
    ) -> None:
        self._db = db
        self._service = service
        self._chains = dict(chains)
        self._sealer = sealer
        self._clock = clock
        self.policy = policy or DvpPolicy()
        self._accounts = accounts
        # chooses among free channel accounts; not security-relevant
        self._random = random.Random()  # noqa: S311 - spreads load, guards nothing

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

        Everything is checked before anything is signed: at least two legs, known
        chains, every leg valid on its ledger (precision, accounts, trust lines), no
        account on both sides of a leg, the principal legs in the commitment's currency
        pay exactly its amount against a delivery in another asset, and a deadline at
        least ``min_window_s`` away. With ``settle_not_before`` (a settlement date) the
        legs lock at once and the commitment rests ESCROWED until then; COMMIT is decided
        only from that time on and before the deadline. Raises ``InvalidInput`` (nothing
        is written) or ``TransitionNotAllowed`` when the commitment is not VERIFIED or
        already has an open settlement.
        """
        if actor.role not in (Role.ADMIN, Role.SYSTEM, Role.ALLOCATOR):
            raise errors.NotAuthorised(f"{actor.role} may not instruct a settlement")
        commitment = self._service.get(commitment_id)
        if actor.role is Role.ALLOCATOR and actor.party != commitment.owner_party:
            raise errors.NotAuthorised(f"party {actor.party} does not own {commitment_id}")
        if commitment.state != State.VERIFIED:
            raise errors.TransitionNotAllowed(
                f"a settlement needs a VERIFIED commitment; {commitment_id} is {commitment.state}"
            )
        now = self._clock.now()
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
        self._check_instruction(legs, commitment.amount, commitment.currency)
        if self._accounts is not None:
            self._check_accounts(commitment_id, commitment.owner_party, legs)
        lock = HashLock.generate()
        settlement_id = uuid.uuid4()
        cancel_after = commit_deadline + timedelta(seconds=self.policy.safety_margin_s)
        rows = [
            {
                "leg_no": n,
                "kind": leg.kind,
                "chain": leg.chain.value,
                "asset_code": leg.asset.code,
                "asset_issuer": leg.asset.issuer,
                "amount": leg.amount,
                "sender": leg.sender,
                "receiver": leg.receiver,
            }
            for n, leg in enumerate(legs)
        ]

        def write(uow: Statements) -> None:
            records.insert_settlement(
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
            records.append_audit(
                uow,
                commitment_id=commitment_id,
                actor=actor.id,
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

    def _check_instruction(
        self, legs: Sequence[LegInstruction], amount: Decimal, currency: str
    ) -> None:
        if len(legs) < 2:
            raise errors.InvalidInput("a settlement has at least two legs")
        for leg in legs:
            if leg.chain not in self._chains:
                raise errors.InvalidInput(f"no adapter for chain {leg.chain!r}")
            if leg.kind not in ("principal", "fee"):
                raise errors.InvalidInput(f"leg kind must be principal or fee, not {leg.kind!r}")
            if leg.sender == leg.receiver:
                raise errors.InvalidInput(f"leg sends from {leg.sender} to itself")
            if not isinstance(leg.amount, Decimal) or not leg.amount.is_finite() or leg.amount <= 0:
                raise errors.InvalidAmount(f"leg amount must be a positive Decimal: {leg.amount!r}")
            try:
                self._chains[leg.chain].validate_leg(leg.as_leg())
            except LegInvalid as exc:
                raise errors.InvalidInput(f"{leg.chain} leg: {exc}") from exc
            except AdapterError as exc:
                raise errors.EngineUnavailable(f"{leg.chain} cannot check the leg: {exc}") from exc
        self._check_sender_totals(legs)
        principal = [leg for leg in legs if leg.kind == "principal"]
        if not any(leg.asset.code != currency for leg in principal):
            # delivery versus payment: something is delivered against the payment
            raise errors.InvalidInput(f"no principal leg delivers anything against {currency}")
        paid = sum(
            (leg.amount for leg in legs if leg.kind == "principal" and leg.asset.code == currency),
            Decimal(0),
        )
        if paid != amount:
            raise errors.InvalidInput(
                f"the principal legs pay {paid} {currency}; the commitment is for {amount}"
            )

    def _check_accounts(
        self, commitment_id: UUID, owner: str, legs: Sequence[LegInstruction]
    ) -> None:
        """Every account on a leg is a KYC'd party's registered ledger account; the
        principal legs move only between the commitment's own parties (its allocator
        and its counterparty), and a fee is paid by one of them."""
        assert self._accounts is not None
        parties = {owner}
        counterparty = self._accounts.counterparty_of(commitment_id)
        if counterparty is not None:
            parties.add(counterparty)
        wanted = sorted({(leg.chain.value, a) for leg in legs for a in (leg.sender, leg.receiver)})
        owners = self._accounts.owners_of(wanted)
        for leg in legs:
            for role, account in (("sender", leg.sender), ("receiver", leg.receiver)):
                party = owners.get((leg.chain.value, account))
                if party is None:
                    raise errors.InvalidInput(
                        f"{leg.chain} {role} {account} is not a registered account of any party"
                    )
                if (leg.kind == "principal" or role == "sender") and party not in parties:
                    raise errors.InvalidInput(
                        f"{leg.chain} {role} {account} belongs to {party}, not to a party of "
                        f"commitment {commitment_id} ({', '.join(sorted(parties))})"
                    )

    def _check_sender_totals(self, legs: Sequence[LegInstruction]) -> None:
        """Legs may pass one by one yet not together: check what each sender owes in
        each asset, as one leg, when it sends more than one."""
        groups: dict[tuple[ChainName, str, Asset], list[LegInstruction]] = {}
        for leg in legs:
            groups.setdefault((leg.chain, leg.sender, leg.asset), []).append(leg)
        for (chain, sender, asset), together in groups.items():
            if len(together) < 2:
                continue
            total = sum((leg.amount for leg in together), Decimal(0))
            combined = Leg(chain, asset, total, sender, together[0].receiver)
            try:
                self._chains[chain].validate_leg(combined)
            except LegInvalid as exc:
                raise errors.InvalidInput(f"{chain} legs of {sender} together: {exc}") from exc

    def request_force_cancel(self, actor: Actor, settlement_id: UUID, reason: str) -> None:
        """An admin asks to unwind a settlement that has not decided COMMIT."""
        if actor.role is not Role.ADMIN:
            raise errors.NotAuthorised("only an admin force-cancels a settlement")
        if not reason or not reason.strip():
            raise errors.InvalidText("reason is required")
        now = self._clock.now()

        def write(uow: Statements) -> None:
            settlement = records.load_settlement(uow, settlement_id, for_update=True)
            if settlement.decision == "COMMIT":
                raise errors.TransitionNotAllowed(
                    f"settlement {settlement_id} decided COMMIT; it only rolls forward"
                )
            if settlement.status not in ("LOCKING", "UNWINDING"):
                raise errors.TransitionNotAllowed(f"settlement {settlement_id} is closed")
            records.request_cancel(uow, settlement_id, actor.id, reason.strip(), now)
            records.append_audit(
                uow,
                commitment_id=settlement.commitment_id,
                actor=actor.id,
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
            case "LOCKING":
                return self._step_locking(settlement, legs, subs)
            case "COMMITTING":
                return self._step_committing(settlement, legs, subs)
            case "UNWINDING":
                return self._step_unwinding(settlement, legs, subs)
            case _:
                return StepResult(Progress.DONE, settlement.status)

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
        if s.cancel_requested_by:
            return self._decide(s, "ABORT", f"force-cancel requested by {s.cancel_requested_by}")
        if self._clock.now() >= s.commit_deadline:
            # unwinding resolves any lock still in flight before it undoes anything
            return self._decide(s, "ABORT", "commit deadline passed before every leg locked")
        for leg in sorted(legs, key=lambda leg: (_LOCK_ORDER[ChainName(leg.chain)], leg.leg_no)):
            if leg.state != "PENDING":
                continue
            outcome = self._advance(s, leg, Purpose.LOCK, subs)
            match outcome:
                case Applied():
                    continue
                case Rejected(code=code, applied=True) | Rejected(code=code, ledger_index=int()):
                    return self._decide(s, "ABORT", f"leg {leg.leg_no} lock rejected: {code}")
                case Rejected(applied=False) if self._may_sign_again(leg, Purpose.LOCK, subs):
                    # refused before any ledger: sign again
                    return self._wait(s, outcome, flagged=s.needs_review)
                case Rejected(code=code):
                    return self._decide(s, "ABORT", f"leg {leg.leg_no} lock refused: {code}")
                case Expired() | Pending() | Unavailable():
                    # expired: never applied, so the next step signs the lock again
                    return self._wait(s, outcome, flagged=s.needs_review)
        # every leg locked: the commitment is ESCROWED, then the decision
        self._transition(s, "lock")
        now = self._clock.now()
        if now >= s.commit_deadline:
            return self._decide(s, "ABORT", "commit deadline passed after every leg locked")
        if s.settle_not_before is not None and now < s.settle_not_before:
            wait_s = (s.settle_not_before - now).total_seconds()
            return StepResult(
                Progress.WAITING,
                s.status,
                retry_after_s=min(wait_s, 60.0),
                detail=f"escrowed; settles from {s.settle_not_before}",
            )
        return self._decide_on_every_clock(s, legs)

    def _decide_on_every_clock(self, s: SettlementRow, legs: list[LegRow]) -> StepResult:
        """Every leg is locked and the engine clock is before the deadline: COMMIT if
        every ledger's own clock is too, ABORT if one is not, wait if one cannot say."""
        # The ledgers judge CancelAfter and the claim predicates on their own clocks: a
        # deadline met on the engine's clock alone may already have passed on a ledger
        # whose time runs ahead, leaving less than the safety margin there before a
        # sender may cancel. Every clock must be before the deadline.
        ledger_now = _LedgerTimes(self._chains)
        for chain in sorted({ChainName(leg.chain) for leg in legs}):
            at = ledger_now(chain)
            if isinstance(at, Unavailable):
                # no decision blind; the engine clock still aborts at the deadline
                return self._wait(s, at, flagged=s.needs_review)
            if at >= s.commit_deadline:
                return self._decide(
                    s,
                    "ABORT",
                    f"commit deadline passed on the {chain} ledger's clock ({at.isoformat()})",
                )
        if self._clock.now() >= s.commit_deadline:
            return self._decide(s, "ABORT", "commit deadline passed while reading ledger times")
        return self._decide(s, "COMMIT", "every leg locked before the commit deadline")

    def _step_committing(
        self, s: SettlementRow, legs: list[LegRow], subs: list[SubmissionRow]
    ) -> StepResult:
        fulfillment = HashLock(self._sealer.open(s.secret_sealed)).fulfillment_hex
        waits: list[Outcome] = []  # what each leg still waits on; the first is reported
        flagged = s.needs_review
        ledger_now = _LedgerTimes(self._chains)
        for leg in legs:
            if leg.state == "COMMITTED":
                continue
            refused = self._commit_refused_by_ledger_time(s, leg, subs, ledger_now)
            if refused is not None:
                if not isinstance(refused, Unavailable):
                    self._flag(s, refused.detail)
                    flagged = True
                waits.append(refused)
                continue
            outcome = self._advance(s, leg, Purpose.COMMIT, subs, fulfillment_hex=fulfillment)
            match outcome:
                case Applied():
                    continue
                case Rejected(code=code):
                    self._flag(s, f"leg {leg.leg_no} commit rejected by {leg.chain}: {code}")
                    flagged = True
                    waits.append(outcome)
                case Expired() | Pending() | Unavailable():
                    # expired: a new signature follows at the next step; the others wait
                    waits.append(outcome)
        if waits:
            waiting = waits[0]
            remaining = (s.cancel_after - self._clock.now()).total_seconds()
            if remaining < self.policy.review_before_cancel_s and not isinstance(waiting, Rejected):
                self._flag(s, f"commit not complete {remaining:.0f} s before T_cancel: {waiting}")
                flagged = True
            return self._wait(s, *waits, flagged=flagged)
        self._transition(s, "settle")
        self._close(s, "SETTLED")
        return StepResult(Progress.DONE, "SETTLED")

    def _step_unwinding(
        self, s: SettlementRow, legs: list[LegRow], subs: list[SubmissionRow]
    ) -> StepResult:
        waits: list[Outcome] = []  # what each leg still waits on; the first is reported
        flagged = s.needs_review
        ledger_now = _LedgerTimes(self._chains)
        for row in legs:
            if row.state in ("UNWOUND", "NOT_LOCKED"):
                continue
            leg = row if row.state == "LOCKED" else self._resolve_lock(s, row, subs)
            if not isinstance(leg, LegRow):
                waits.append(leg)
                continue
            if leg.state != "LOCKED":
                continue
            chain = ChainName(leg.chain)
            if chain in _UNWIND_AFTER_CANCEL and _open(subs, leg, Purpose.UNWIND) is None:
                # the ledger refuses the cancel until its own time is past CancelAfter;
                # the engine's clock says nothing about that
                at = ledger_now(chain)
                if isinstance(at, Unavailable):
                    waits.append(at)
                    continue
                if not _past(at, s.cancel_after):
                    waits.append(
                        Pending(
                            "",
                            f"leg {leg.leg_no} unwinds once {chain} time passes {s.cancel_after}",
                        )
                    )
                    continue
            outcome = self._advance(s, leg, Purpose.UNWIND, subs)
            match outcome:
                case Applied():
                    continue
                case Rejected(code=code):
                    self._flag(s, f"leg {leg.leg_no} unwind rejected by {leg.chain}: {code}")
                    flagged = True
                    waits.append(outcome)
                case Expired() | Pending() | Unavailable():
                    waits.append(outcome)
        if waits:
            return self._wait(s, *waits, flagged=flagged)
        commitment = self._service.get(s.commitment_id)
        if commitment.state == State.ESCROWED:
            self._transition(s, "force_cancel" if s.cancel_requested_by else "release")
        self._close(s, "UNWOUND")
        return StepResult(Progress.DONE, "UNWOUND")

    def _commit_refused_by_ledger_time(
        self,
        s: SettlementRow,
        leg: LegRow,
        subs: list[SubmissionRow],
        ledger_now: _LedgerTimes,
    ) -> Pending | Unavailable | None:
        """Before signing a new commit on a ledger that refuses it after T_cancel (XRPL
        EscrowFinish past CancelAfter): None when it may be signed; ``Unavailable`` when
        that ledger's time cannot be read; ``Pending`` (to be flagged) when the ledger's
        own time is too close to T_cancel for it to apply. An open commit is always
        polled and resent: it was signed in time, and the ledger alone decides it. On
        other ledgers (Stellar: the agent may claim at any time) the roll-forward is
        always attempted, since stopping could only leave the settlement partial."""
        chain = ChainName(leg.chain)
        if chain not in _UNWIND_AFTER_CANCEL or _open(subs, leg, Purpose.COMMIT) is not None:
            return None
        at = ledger_now(chain)
        if isinstance(at, Unavailable):
            return at
        latest = s.cancel_after - timedelta(seconds=self.policy.commit_send_margin_s)
        if at < latest:
            return None
        return Pending(
            "",
            f"leg {leg.leg_no} commit not signed: {chain} ledger time {at.isoformat()} is "
            f"within {self.policy.commit_send_margin_s:.0f} s of T_cancel {s.cancel_after}",
        )

    def _resolve_lock(
        self, s: SettlementRow, leg: LegRow, subs: list[SubmissionRow]
    ) -> LegRow | Outcome:
        """A PENDING leg being unwound: a lock still in flight must be final before we
        know whether there is anything to undo. Returns the leg as it now stands, or
        the outcome to wait on."""
        if _open(subs, leg, Purpose.LOCK) is None:
            self._set_leg(s, leg, "NOT_LOCKED")
            return self._leg(s.id, leg.leg_no)
        outcome = self._advance(s, leg, Purpose.LOCK, subs)
        match outcome:
            case Applied():
                return self._leg(s.id, leg.leg_no)
            case Rejected() | Expired():
                self._set_leg(s, leg, "NOT_LOCKED")
                return self._leg(s.id, leg.leg_no)
            case Pending() | Unavailable():
                return outcome

    # -- one leg, one purpose: reliable submission ----------------------------------

    def _advance(
        self,
        s: SettlementRow,
        leg: LegRow,
        purpose: Purpose,
        subs: list[SubmissionRow],
        *,
        fulfillment_hex: str | None = None,
    ) -> Outcome:
        """Drive one purpose of one leg one step: poll the open submission, or sign,
        record and send a new one when (and only when) the last one is final."""
        chain = self._chains[ChainName(leg.chain)]
        open_sub = _open(subs, leg, purpose)
        if open_sub is not None:
            signed = _signed(open_sub)
            outcome = chain.status(signed)
            if isinstance(outcome, Pending) and not outcome.held:
                # lost on the way, dropped, or never sent: the same blob (the ledger
                # applies it once); one the server holds only needs time
                resent = chain.submit(signed)
                outcome = resent if not isinstance(resent, Unavailable) else outcome
            return self._settle_outcome(s, leg, open_sub.tx_hash, purpose, outcome)
        history = _of(subs, leg, purpose)
        applied = [x for x in history if x.status == "APPLIED"]
        if applied:
            a = applied[0]
            assert a.ledger_index is not None
            assert a.ledger_hash is not None
            return Applied(a.tx_hash, a.ledger_index, a.ledger_hash, a.result_code or "")
        rejected = [
            x
            for x in history
            if x.status == "REJECTED"
            and (
                s.attempts_reset_at is None or (x.finalized_at or x.signed_at) > s.attempts_reset_at
            )
        ]
        # A lock the ledger rejected inside a ledger (fee spent: underfunded, no trust
        # line) is final for the settlement; one refused before any ledger (a sequence
        # taken by another transaction of the same account) never applied and is signed
        # again, like any rejected purpose, a bounded number of times.
        in_ledger = [x for x in rejected if x.ledger_index is not None]
        if (purpose is Purpose.LOCK and in_ledger) or len(
            rejected
        ) >= self.policy.max_rejected_attempts:
            last = (in_ledger or rejected)[-1]
            return Rejected(
                last.tx_hash,
                last.result_code or "",
                applied=last.ledger_index is not None,
                ledger_index=last.ledger_index,
                ledger_hash=last.ledger_hash,
            )
        try:
            channel = self._free_channel(chain, leg, purpose)
            if isinstance(channel, Pending):
                return channel
            signed = self._prepare(chain, s, leg, purpose, fulfillment_hex, channel=channel)
        except AdapterError as exc:
            return Unavailable(f"cannot prepare {purpose} of leg {leg.leg_no}: {exc}")
        now = self._clock.now()

        def write_ahead(uow: Statements) -> None:
            records.record_submission(
                uow,
                settlement_id=s.id,
                leg_no=leg.leg_no,
                purpose=purpose.value,
                chain=leg.chain,
                tx_hash=signed.tx_hash,
                blob=signed.blob,
                expires_ledger=signed.expires_ledger,
                expires_at=signed.expires_at,
                at=now,
                channel=signed.channel,
            )
            if purpose is Purpose.LOCK and signed.lock_ref is not None:
                ref = signed.lock_ref
                records.set_leg_state(
                    uow,
                    s.id,
                    leg.leg_no,
                    "PENDING",
                    lock_owner=ref.owner,
                    lock_sequence=ref.sequence,
                    lock_balance_id=ref.balance_id,
                )

        try:
            self._db.statements(write_ahead)
        except db_errors.ConstraintViolation as exc:
            if exc.sqlstate != "23505":
                raise
            if records.CHANNEL_TAKEN in str(exc):
                # another settlement recorded a transaction on this channel first; this
                # signature was never sent and never will be: the next step signs again
                return Pending(signed.tx_hash, f"channel {signed.channel} taken meanwhile")
            # byte-identical to a transaction already recorded (signed again before the
            # ledger moved on): nothing new to send; the next step signs afresh
            return Pending(signed.tx_hash, "identical to a recorded transaction")
        outcome = chain.submit(signed)
        return self._settle_outcome(s, leg, signed.tx_hash, purpose, outcome)

    def _free_channel(self, chain: Chain, leg: LegRow, purpose: Purpose) -> str | Pending | None:
        """A channel (Stellar channel account, XRPL ticket) for ``purpose`` of ``leg`` with
        no transaction that could still apply, or None when the chain offers none (the
        signer's own sequence is used), or ``Pending`` when every one is busy. Picked at
        random among the free ones so that workers racing for channels rarely choose the
        same; the write-ahead row's unique index settles a collision.

        The open submissions are read before the ledger's channels: an XRPL ticket is
        gone from the validated ledger once a transaction spent it, so one still listed
        after the read can only be spent by a transaction recorded since, which the
        unique index refuses, or (if that one has also become final meanwhile) the ledger
        refuses (tefNO_TICKET): it never applies, and is final once its expiry passes."""
        busy = self._db.statements(lambda uow: records.busy_channels(uow, chain.name.value))
        channels = chain.submission_channels(_leg(leg), purpose)
        if not channels:
            return None
        free = [c for c in channels if c not in busy]
        if not free:
            return Pending("", f"every {chain.name} channel carries a transaction")
        return self._random.choice(free)

    def _may_sign_again(self, leg: LegRow, purpose: Purpose, subs: list[SubmissionRow]) -> bool:
        """Whether a purpose just rejected may be signed again: the rejections this step
        loaded, and the one it has just recorded, stay below the allowed attempts."""
        earlier = sum(1 for x in _of(subs, leg, purpose) if x.status == "REJECTED")
        return earlier + 1 < self.policy.max_rejected_attempts

    def _prepare(
        self,
        chain: Chain,
        s: SettlementRow,
        leg: LegRow,
        purpose: Purpose,
        fulfillment_hex: str | None,
        *,
        channel: str | None,
    ) -> SignedSubmission:
        spec = _leg(leg)
        match purpose:
            case Purpose.LOCK:
                terms = LockTerms(s.condition_hex, s.cancel_after)
                return chain.prepare_lock(spec, terms, channel=channel)
            case Purpose.COMMIT:
                assert fulfillment_hex is not None
                return chain.prepare_commit(spec, _lock_ref(leg), fulfillment_hex, channel=channel)
            case Purpose.UNWIND:
                return chain.prepare_unwind(spec, _lock_ref(leg), channel=channel)

    def _settle_outcome(
        self, s: SettlementRow, leg: LegRow, tx_hash: str, purpose: Purpose, outcome: Outcome
    ) -> Outcome:
        """Record a final outcome (and the leg's new state) in one transaction."""
        now = self._clock.now()
        match outcome:
            case Applied(ledger_index=index, ledger_hash=ledger_hash, code=code):
                new_state = {
                    Purpose.LOCK: "LOCKED",
                    Purpose.COMMIT: "COMMITTED",
                    Purpose.UNWIND: "UNWOUND",
                }[purpose]

                def applied(uow: Statements) -> None:
                    records.finalize_submission(
                        uow,
                        tx_hash=tx_hash,
                        status="APPLIED",
                        result_code=code,
                        ledger_index=index,
                        ledger_hash=ledger_hash,
                        at=now,
                    )
                    records.set_leg_state(uow, s.id, leg.leg_no, new_state)
                    records.append_audit(
                        uow,
                        commitment_id=s.commitment_id,
                        actor=SYSTEM.id,
                        action=f"leg_{purpose.value}",
                        at=now,
                        chain=leg.chain,
                        tx_hash=tx_hash,
                        ledger_index=index,
                        ledger_hash=ledger_hash,
                        payload=payload_text(
                            {"settlement_id": s.id, "leg_no": leg.leg_no, "result": code}
                        ),
                    )

                self._db.statements(applied)
            case Rejected(code=code, ledger_index=index, ledger_hash=ledger_hash):
                in_ledger = index is not None and ledger_hash is not None
                self._final_failure(
                    s,
                    leg,
                    purpose,
                    tx_hash,
                    status="REJECTED",
                    code=code,
                    now=now,
                    ledger=(index, ledger_hash) if in_ledger else None,
                )
            case Expired():
                self._final_failure(
                    s, leg, purpose, tx_hash, status="EXPIRED", code=None, now=now, ledger=None
                )
            case Pending() | Unavailable():
                pass
        return outcome

    def _final_failure(
        self,
        s: SettlementRow,
        leg: LegRow,
        purpose: Purpose,
        tx_hash: str,
        *,
        status: str,
        code: str | None,
        now: datetime,
        ledger: tuple[int | None, str | None] | None,
    ) -> None:
        """Record a rejection or expiry, with an audit entry: what the engine decides
        next follows from it. A rejection inside a ledger (fee spent) carries that
        ledger as its reference; one refused before any ledger names the hash only."""
        index, ledger_hash = ledger if ledger is not None else (None, None)

        def write(uow: Statements) -> None:
            records.finalize_submission(
                uow,
                tx_hash=tx_hash,
                status=status,
                result_code=code,
                ledger_index=index,
                ledger_hash=ledger_hash,
                at=now,
            )
            body = {"settlement_id": s.id, "leg_no": leg.leg_no, "result": code or status}
            if ledger is None:
                body["tx_hash"] = tx_hash
            records.append_audit(
                uow,
                commitment_id=s.commitment_id,
                actor=SYSTEM.id,
                action=f"leg_{purpose.value}_{status.lower()}",
                at=now,
                chain=leg.chain if ledger is not None else None,
                tx_hash=tx_hash if ledger is not None else None,
                ledger_index=index,
                ledger_hash=ledger_hash,
                payload=payload_text(body),
            )

        self._db.statements(write)

    # -- decisions, transitions, review ---------------------------------------------

    def _decide(self, s: SettlementRow, decision: str, reason: str) -> StepResult:
        now = self._clock.now()

        def write(uow: Statements) -> None:
            current = records.load_settlement(uow, s.id, for_update=True)
            if current.decision is not None:
                return  # another worker decided first; its decision stands
            records.decide(uow, s.id, decision, reason, now)
            records.append_audit(
                uow,
                commitment_id=s.commitment_id,
                actor=SYSTEM.id,
                action=f"settlement_{decision.lower()}",
                at=now,
                payload=payload_text({"settlement_id": s.id, "reason": reason}),
            )

        self._db.statements(write)
        return StepResult(
            Progress.WAITING, "COMMITTING" if decision == "COMMIT" else "UNWINDING", detail=reason
        )

    def _transition(self, s: SettlementRow, event: str) -> None:
        actor = SYSTEM
        reason = None
        if event == "force_cancel":
            assert s.cancel_requested_by is not None
            actor = Actor(s.cancel_requested_by, Role.ADMIN)
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
            expected = {
                "lock": State.ESCROWED,
                "settle": State.SETTLED,
                "release": State.VERIFIED,
                "force_cancel": State.CANCELLED,
            }[event]
            if state != expected:
                raise

    def _close(self, s: SettlementRow, status: str) -> None:
        self._db.statements(lambda uow: records.close(uow, s.id, status, self._clock.now()))

    def _flag(self, s: SettlementRow, reason: str) -> None:
        now = self._clock.now()

        def write(uow: Statements) -> None:
            if records.flag_for_review(uow, s.id, reason, now):
                records.append_audit(
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
            s.status,
            retry_after_s=min(self._retry_after(x) for x in waiting),
            detail=_describe(waiting[0]),
        )

    def _retry_after(self, outcome: Outcome) -> float:
        if isinstance(outcome, Pending) and outcome.look_again_s is not None:
            p = self.policy
            return min(max(outcome.look_again_s, p.min_poll_s), p.max_poll_s)
        return self.policy.retry_after_s

    def _set_leg(self, s: SettlementRow, leg: LegRow, state: str) -> None:
        self._db.statements(lambda uow: records.set_leg_state(uow, s.id, leg.leg_no, state))

    def _leg(self, settlement_id: UUID, leg_no: int) -> LegRow:
        def read(uow: Statements) -> LegRow:
            return next(x for x in records.load_legs(uow, settlement_id) if x.leg_no == leg_no)

        return self._db.statements(read)

    def _load(self, settlement_id: UUID) -> tuple[SettlementRow, list[LegRow], list[SubmissionRow]]:
        def read(uow: Statements) -> tuple[SettlementRow, list[LegRow], list[SubmissionRow]]:
            return (
                records.load_settlement(uow, settlement_id),
                records.load_legs(uow, settlement_id),
                records.submissions(uow, settlement_id),
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


def _of(subs: list[SubmissionRow], leg: LegRow, purpose: Purpose) -> list[SubmissionRow]:
    return [x for x in subs if x.leg_no == leg.leg_no and x.purpose == purpose.value]


def _open(subs: list[SubmissionRow], leg: LegRow, purpose: Purpose) -> SubmissionRow | None:
    return next((x for x in _of(subs, leg, purpose) if x.status == "SIGNED"), None)


def _signed(row: SubmissionRow) -> SignedSubmission:
    return SignedSubmission(
        chain=ChainName(row.chain),
        purpose=Purpose(row.purpose),
        tx_hash=row.tx_hash,
        blob=row.blob,
        expires_ledger=row.expires_ledger,
        expires_at=row.expires_at,
        channel=row.channel,
    )


def _leg(row: LegRow) -> Leg:
    return Leg(
        ChainName(row.chain),
        Asset(row.asset_code, row.asset_issuer),
        row.amount,
        row.sender,
        row.receiver,
    )


def _lock_ref(row: LegRow) -> LockRef:
    assert row.lock_owner is not None, f"leg {row.leg_no} has no recorded lock"
    return LockRef(ChainName(row.chain), row.lock_owner, row.lock_sequence, row.lock_balance_id)


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
