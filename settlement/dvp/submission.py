"""Reliable submission: one purpose of one leg, driven one step at a time.

The rule that prevents double locks and double payments (DESIGN section 4): a
transaction is signed, recorded and committed before it is sent; a lost response is
"pending", resolved by polling the hash, never by signing again; only a final outcome
(applied, rejected, expired) allows a new signature for the purpose, and the database
refuses a second open one (a partial unique index).

What counts against a purpose's attempts:
- a rejection inside a ledger (fee spent: the ledger's rules refused it) is final for
  the purpose until a person resets the settlement; the coordinator decides what it
  means (a lock refused aborts; a payout refused may return every leg);
- a refusal before any ledger that says the transaction itself is wrong (malformed, a
  bad signature) counts, up to ``max_rejected_attempts``;
- a refusal before any ledger that says only that the moment was wrong (a sequence
  taken by another transaction, a fee below the open ledger's, a full queue, too late
  or too early) never counts: after COMMIT the engine keeps signing until the leg
  applies. Only a lock gives up after ``max_rejected_attempts`` of those, because
  giving up a lock is safe (the settlement aborts).

"Expired" (never applied, so signing again is safe) is taken from the adapter only when
two answers, at least ``expiry_recheck_s`` apart, both say so: each is one server's
whole-window proof, and asking again after a pause covers a balancer that switched to a
server that had not yet seen the ledger in between.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from adapters.chain import (
    Applied,
    Asset,
    Chain,
    ChainName,
    Expired,
    Leg,
    LockKind,
    LockRef,
    LockTerms,
    Outcome,
    Pending,
    Purpose,
    Rejected,
    SignedSubmission,
    Unavailable,
)
from adapters.errors import AdapterError
from ledger import errors as db_errors
from ledger import settlements as settlement_records
from ledger.audit import payload_text
from ledger.database import Database, Statements
from ledger.settlements import LegRow, SettlementRow, SubmissionRow
from settlement.clock import Clock
from settlement.domain.settlements import LegState, SubmissionStatus
from settlement.domain.values import SYSTEM
from settlement.dvp.protocol import held_after_lock

#: what an applied transaction of each purpose makes of its leg
_APPLIED_STATE = {
    Purpose.LOCK: LegState.LOCKED,
    Purpose.CLAIM: LegState.HELD,
    Purpose.COMMIT: LegState.COMMITTED,
    Purpose.UNWIND: LegState.UNWOUND,
}

#: refusals before any ledger that say only that the moment was wrong (XRPL classes
#: ter/tef/tel; the Stellar codes below): the same purpose is simply signed again
_TRANSIENT_STELLAR = (
    "tx_bad_seq",
    "tx_too_late",
    "tx_too_early",
    "tx_insufficient_fee",
    "tx_insufficient_balance",
)
_PERMANENT_XRPL = frozenset({"tefBAD_AUTH", "tefBAD_AUTH_MASTER", "tefMASTER_DISABLED"})


def transient_refusal(code: str) -> bool:
    """Whether a refusal before any ledger says nothing against the transaction itself."""
    if code.startswith(("ter", "tel")):
        return True
    if code.startswith("tef"):
        return code not in _PERMANENT_XRPL
    return code.startswith(_TRANSIENT_STELLAR)


@dataclass(frozen=True)
class SubmitPolicy:
    #: signatures per purpose refused before any ledger as malformed or badly signed
    #: (and, for a lock only, for any reason) before the engine stops and asks a person
    max_rejected_attempts: int = 3
    #: "never applied" needs two proofs at least this far apart
    expiry_recheck_s: float = 1.0


class Submitter:
    """Drives one purpose of one leg: poll the open submission, or sign, record and send
    a new one when (and only when) the last one is final."""

    def __init__(
        self,
        db: Database,
        chains: dict[ChainName, Chain],
        clock: Clock,
        policy: SubmitPolicy,
        *,
        seed: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._chains = chains
        self._clock = clock
        self.policy = policy
        # chooses among free channel accounts; spreads load, guards nothing
        self._random = random.Random(seed)  # noqa: S311
        self._monotonic = monotonic
        #: tx hash -> when an adapter first proved it expired (re-read after a pause)
        self._expired_seen: dict[str, float] = {}

    def advance(
        self,
        s: SettlementRow,
        leg: LegRow,
        purpose: Purpose,
        subs: list[SubmissionRow],
        *,
        held: bool = False,
        fulfillment_hex: str | None = None,
        sign: bool = True,
    ) -> Outcome:
        """One step of ``purpose`` of ``leg``. ``sign`` False only polls an open
        submission (a purpose the protocol does not want signed anew)."""
        chain = self._chains[ChainName(leg.chain)]
        open_sub = open_submission(subs, leg, purpose)
        if open_sub is not None:
            signed = as_signed(open_sub)
            outcome = self._confirmed(chain.status(signed))
            if isinstance(outcome, Pending) and not outcome.held:
                # lost on the way, dropped, or never sent: the same blob (the ledger
                # applies it once); one the server holds only needs time
                resent = chain.submit(signed)
                if not isinstance(resent, Unavailable):
                    outcome = self._confirmed(resent)
            return self.record_outcome(s, leg, open_sub.tx_hash, purpose, outcome)
        history = of_purpose(subs, leg, purpose)
        applied = [x for x in history if x.status == SubmissionStatus.APPLIED]
        if applied:
            a = applied[0]
            assert a.ledger_index is not None
            assert a.ledger_hash is not None
            return Applied(a.tx_hash, a.ledger_index, a.ledger_hash, a.result_code or "")
        final = self.refused(s, leg, purpose, subs)
        if final is not None:
            return final
        if not sign:
            return Pending("", f"{purpose} of leg {leg.leg_no} is not to be signed now")
        try:
            channel = self._free_channel(chain, leg, purpose)
            if isinstance(channel, Pending):
                return channel
            signed = self._prepare(
                chain, s, leg, purpose, fulfillment_hex=fulfillment_hex, held=held, channel=channel
            )
        except AdapterError as exc:
            return Unavailable(f"cannot prepare {purpose} of leg {leg.leg_no}: {exc}")
        return self._record_and_send(chain, s, leg, purpose, signed)

    def refused(
        self, s: SettlementRow, leg: LegRow, purpose: Purpose, subs: list[SubmissionRow]
    ) -> Rejected | None:
        """The rejection that stops ``purpose`` of ``leg`` until a person resets the
        settlement, or None while it may be signed again."""
        rejected = [
            x
            for x in of_purpose(subs, leg, purpose)
            if x.status == SubmissionStatus.REJECTED
            and (
                s.attempts_reset_at is None or (x.finalized_at or x.signed_at) > s.attempts_reset_at
            )
        ]
        in_ledger = [x for x in rejected if x.ledger_index is not None]
        counted = [
            x
            for x in rejected
            if x.ledger_index is None
            and (purpose is Purpose.LOCK or not transient_refusal(x.result_code or ""))
        ]
        stop = in_ledger or (counted if len(counted) >= self.policy.max_rejected_attempts else [])
        if not stop:
            return None
        last = stop[-1]
        return Rejected(
            last.tx_hash,
            last.result_code or "",
            applied=last.ledger_index is not None,
            ledger_index=last.ledger_index,
            ledger_hash=last.ledger_hash,
        )

    def _confirmed(self, outcome: Outcome) -> Outcome:
        """An ``Expired`` becomes final only when proved twice, a pause apart."""
        if not isinstance(outcome, Expired):
            return outcome
        now = self._monotonic()
        first = self._expired_seen.get(outcome.tx_hash)
        if first is None:
            self._expired_seen[outcome.tx_hash] = now
        elif now - first >= self.policy.expiry_recheck_s:
            del self._expired_seen[outcome.tx_hash]
            return outcome
        return Pending(
            outcome.tx_hash,
            f"expired once ({outcome.detail}); proved again after a pause",
            held=True,
            look_again_s=self.policy.expiry_recheck_s,
        )

    def _record_and_send(
        self,
        chain: Chain,
        s: SettlementRow,
        leg: LegRow,
        purpose: Purpose,
        signed: SignedSubmission,
    ) -> Outcome:
        now = self._clock.now()

        def write_ahead(uow: Statements) -> None:
            settlement_records.record_submission(
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
                settlement_records.set_leg_state(
                    uow,
                    s.id,
                    leg.leg_no,
                    LegState.PENDING,
                    lock_owner=ref.owner,
                    lock_sequence=ref.sequence,
                    lock_balance_id=ref.balance_id,
                )

        try:
            self._db.statements(write_ahead)
        except db_errors.ConstraintViolation as exc:
            if exc.sqlstate != "23505":
                raise
            if settlement_records.CHANNEL_TAKEN in str(exc):
                # another settlement recorded a transaction on this channel first; this
                # signature was never sent and never will be: the next step signs again
                return Pending(signed.tx_hash, f"channel {signed.channel} taken meanwhile")
            # byte-identical to a transaction already recorded (signed again before the
            # ledger moved on), or another worker's open one: nothing new to send
            return Pending(signed.tx_hash, "identical to a recorded transaction")
        outcome = chain.submit(signed)
        return self.record_outcome(s, leg, signed.tx_hash, purpose, outcome)

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
        busy = self._db.statements(
            lambda uow: settlement_records.busy_channels(uow, chain.name.value)
        )
        channels = chain.submission_channels(leg_spec(leg), purpose)
        if not channels:
            return None
        free = [c for c in channels if c not in busy]
        if not free:
            return Pending("", f"every {chain.name} channel carries a transaction")
        return self._random.choice(free)

    def _prepare(
        self,
        chain: Chain,
        s: SettlementRow,
        leg: LegRow,
        purpose: Purpose,
        *,
        fulfillment_hex: str | None,
        held: bool,
        channel: str | None,
    ) -> SignedSubmission:
        spec = leg_spec(leg)
        match purpose:
            case Purpose.LOCK:
                terms = LockTerms(s.condition_hex, s.cancel_after)
                kind = LockKind(leg.lock_kind)
                return chain.prepare_lock(spec, terms, kind=kind, channel=channel)
            case Purpose.CLAIM:
                return chain.prepare_claim(spec, lock_ref(leg), channel=channel)
            case Purpose.COMMIT:
                assert fulfillment_hex is not None
                return chain.prepare_commit(
                    spec, lock_ref(leg), fulfillment_hex, held=held, channel=channel
                )
            case Purpose.UNWIND:
                return chain.prepare_unwind(spec, lock_ref(leg), held=held, channel=channel)

    def record_outcome(
        self, s: SettlementRow, leg: LegRow, tx_hash: str, purpose: Purpose, outcome: Outcome
    ) -> Outcome:
        """Record a final outcome (and the leg's new state) in one transaction."""
        now = self._clock.now()
        match outcome:
            case Applied(ledger_index=index, ledger_hash=ledger_hash, code=code):
                new_state = _APPLIED_STATE[purpose]
                if purpose is Purpose.LOCK and held_after_lock(LockKind(leg.lock_kind)):
                    new_state = LegState.HELD

                def applied(uow: Statements) -> None:
                    settlement_records.finalize_submission(
                        uow,
                        tx_hash=tx_hash,
                        status=SubmissionStatus.APPLIED,
                        result_code=code,
                        ledger_index=index,
                        ledger_hash=ledger_hash,
                        at=now,
                    )
                    settlement_records.set_leg_state(uow, s.id, leg.leg_no, new_state)
                    settlement_records.append_audit(
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
                    status=SubmissionStatus.REJECTED,
                    code=code,
                    now=now,
                    ledger=(index, ledger_hash) if in_ledger else None,
                )
            case Expired():
                self._final_failure(
                    s,
                    leg,
                    purpose,
                    tx_hash,
                    status=SubmissionStatus.EXPIRED,
                    code=None,
                    now=now,
                    ledger=None,
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
        status: SubmissionStatus,
        code: str | None,
        now: datetime,
        ledger: tuple[int | None, str | None] | None,
    ) -> None:
        """Record a rejection or expiry, with an audit entry: what the engine decides
        next follows from it. A rejection inside a ledger (fee spent) carries that
        ledger as its reference; one refused before any ledger names the hash only."""
        index, ledger_hash = ledger if ledger is not None else (None, None)

        def write(uow: Statements) -> None:
            settlement_records.finalize_submission(
                uow,
                tx_hash=tx_hash,
                status=status,
                result_code=code,
                ledger_index=index,
                ledger_hash=ledger_hash,
                at=now,
            )
            body = {"settlement_id": s.id, "leg_no": leg.leg_no, "result": code or status.value}
            if ledger is None:
                body["tx_hash"] = tx_hash
            settlement_records.append_audit(
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


def of_purpose(subs: list[SubmissionRow], leg: LegRow, purpose: Purpose) -> list[SubmissionRow]:
    return [x for x in subs if x.leg_no == leg.leg_no and x.purpose == purpose.value]


def open_submission(
    subs: list[SubmissionRow], leg: LegRow, purpose: Purpose
) -> SubmissionRow | None:
    return next(
        (x for x in of_purpose(subs, leg, purpose) if x.status == SubmissionStatus.SIGNED), None
    )


def as_signed(row: SubmissionRow) -> SignedSubmission:
    return SignedSubmission(
        chain=ChainName(row.chain),
        purpose=Purpose(row.purpose),
        tx_hash=row.tx_hash,
        blob=row.blob,
        expires_ledger=row.expires_ledger,
        expires_at=row.expires_at,
        channel=row.channel,
    )


def leg_spec(row: LegRow) -> Leg:
    return Leg(
        ChainName(row.chain),
        Asset(row.asset_code, row.asset_issuer),
        row.amount,
        row.sender,
        row.receiver,
    )


def lock_ref(row: LegRow) -> LockRef:
    assert row.lock_owner is not None, f"leg {row.leg_no} has no recorded lock"
    return LockRef(ChainName(row.chain), row.lock_owner, row.lock_sequence, row.lock_balance_id)


__all__ = [
    "SubmitPolicy",
    "Submitter",
    "as_signed",
    "leg_spec",
    "lock_ref",
    "of_purpose",
    "open_submission",
    "transient_refusal",
]
