"""Seeded fault simulation of delivery versus payment (shared by the simulation tests,
the crash test and the benchmark).

Two layers, one set of invariants (DESIGN section 8):

``FakeLedger`` / ``FakeChain``
    A deterministic in-memory ledger behind the real ``Chain`` port. It keeps what the
    coordinator depends on: locally computed hashes, per-account sequence numbers (a
    transaction applies only at its account's sequence, so two signatures racing for a
    sequence can never both apply), ledgers that close only when told to, expiry by
    ledger index (XRPL LastLedgerSequence) or by ledger time (Stellar time bounds),
    hash-locked escrows that finish only with the right fulfillment and before
    CancelAfter and cancel only after it (XRPL), claimable balances the agent claims at
    any time (Stellar), balances per asset (fees are paid in the native asset, which is
    not one of the settled assets, so the settled assets are conserved exactly). Faults:
    a lost or 504 response after the transaction went to the ledger, a rejection that
    never applies, a transaction held back for several closes (it may expire), a
    partition (every call ``Unavailable``), ledgers that stop closing. It records every
    transaction that applied, so the checks can compare the database with the ledger.

``SimEnv`` / ``run_fake_seed``
    One seed: a few settlements (some underfunded, some with a settlement date, fee
    legs, force-cancels) over two fake ledgers, a real PostgreSQL and the real
    coordinator, interleaved with faults, ledger closes, clock moves and injected
    serialization failures (SQLSTATE 40001, some retried inside the transaction, some
    exhausting the retries so a step fails and is simply run again). Then every fault is
    healed, the settlements are driven to rest, and ``check_invariants`` runs.

The real local networks (``run_real_seed`` in ``test_simulation``) use the same checks
with the ledger side read from the XRPL and Stellar nodes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from cryptography.fernet import Fernet
from support import ADMIN, ALLOCATOR, OFFICER

from adapters.chain import (
    Applied,
    Asset,
    ChainName,
    Expired,
    LedgerTx,
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
from adapters.conditions import condition_of_fulfillment
from adapters.errors import AdapterError, LegInvalid
from ledger import settlements as records
from ledger.audit import verify_all
from ledger.database import TRANSIENT_RETRIES, Database, DriverUnitOfWork, UnitOfWork
from ledger.errors import SerializationFailure, TransientConflict
from ledger.settlements import LegRow, SettlementRow, SubmissionRow
from settlement import bootstrap, errors
from settlement.clock import Clock, ManualClock
from settlement.domain import SYSTEM
from settlement.dvp import DvpCoordinator, DvpPolicy, LegInstruction, Progress
from settlement.sealing import Sealer
from settlement.service import CommitmentService
from settlement.states import State

T = TypeVar("T")
W = TypeVar("W")

CLOSED = ("SETTLED", "UNWOUND")


# --------------------------------------------------------------------------------------
# the fake ledger
# --------------------------------------------------------------------------------------


@dataclass
class _Lock:
    sender: str
    receiver: str
    asset: Asset
    amount: Decimal
    condition_hex: str
    cancel_after: datetime


@dataclass
class _Tx:
    """A signed transaction as its blob carries it."""

    tx_hash: str
    purpose: Purpose
    account: str
    sequence: int
    body: dict[str, Any]
    expires_ledger: int | None
    expires_at: datetime | None


@dataclass
class _Result:
    ledger_index: int
    ledger_hash: str
    code: str
    success: bool


@dataclass
class FakeLedger:
    """One in-memory ledger (``xrpl`` or ``stellar`` flavour); see the module docstring."""

    chain: ChainName
    clock: Clock
    agent: str
    #: XRPL: ledgers a transaction may wait (LastLedgerSequence = validated + window);
    #: Stellar: seconds of its time bounds
    window: int = 6
    index: int = 1
    close_time: datetime | None = None
    balances: dict[tuple[str, Asset], Decimal] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    locks: dict[str, _Lock] = field(default_factory=dict)
    results: dict[str, _Result] = field(default_factory=dict)
    ledger_hashes: dict[int, str] = field(default_factory=dict)
    #: transactions sent and not yet in a ledger (hash -> tx, closes to hold it back)
    pool: dict[str, tuple[_Tx, int]] = field(default_factory=dict)
    #: every transaction the ledger received, for the write-ahead check
    received: set[str] = field(default_factory=set)
    #: queued submit faults: ("drop" | "timeout" | "reject" | "hold", argument)
    submit_faults: list[tuple[str, Any]] = field(default_factory=list)
    partitioned: bool = False
    stalled: bool = False
    signatures: int = 0
    fees_paid: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.close_time = self.clock.now()
        self.ledger_hashes[self.index] = _digest(f"{self.chain}:ledger:{self.index}")

    # -- set-up -------------------------------------------------------------------------

    def fund(self, account: str, asset: Asset, amount: Decimal) -> None:
        self.sequences.setdefault(account, 1)
        key = (account, asset)
        self.balances[key] = self.balances.get(key, Decimal(0)) + amount

    def move_out(self, account: str, asset: Asset, amount: Decimal, to: str) -> None:
        """Someone spends outside the engine (the scenario's 'funds left' case)."""
        self.sequences.setdefault(to, 1)
        self.balances[(account, asset)] -= amount
        self.balances[(to, asset)] = self.balances.get((to, asset), Decimal(0)) + amount

    def total(self, asset: Asset) -> Decimal:
        held = sum((v for (_, a), v in self.balances.items() if a == asset), Decimal(0))
        return held + sum((x.amount for x in self.locks.values() if x.asset == asset), Decimal(0))

    def balance(self, account: str, asset: Asset) -> Decimal:
        return self.balances.get((account, asset), Decimal(0))

    # -- ledger closes ------------------------------------------------------------------

    def close(self) -> bool:
        """Close one ledger: apply what is due in sequence order; drop what expired."""
        if self.stalled:
            return False
        self.index += 1
        ledger_hash = _digest(f"{self.chain}:ledger:{self.index}:{len(self.results)}")
        self.ledger_hashes[self.index] = ledger_hash
        self.close_time = self.clock.now()
        held: dict[str, tuple[_Tx, int]] = {}
        due = []
        for tx_hash, (tx, hold) in self.pool.items():
            if self._expired(tx):
                continue  # it can never apply now
            if hold > 0:
                held[tx_hash] = (tx, hold - 1)
            else:
                due.append(tx)
        progress = True
        while progress:
            progress = False
            for tx in sorted(due, key=lambda t: (t.account, t.sequence)):
                current = self.sequences.get(tx.account, 1)
                if tx.sequence < current:
                    due.remove(tx)  # tefPAST_SEQ: another signature took this sequence
                    progress = True
                elif tx.sequence == current:
                    due.remove(tx)
                    self._apply(tx, ledger_hash)
                    progress = True
        for tx in due:  # a sequence gap: waits in the queue
            held[tx.tx_hash] = (tx, 0)
        self.pool = held
        return True

    def _expired(self, tx: _Tx) -> bool:
        if tx.expires_ledger is not None:
            return self.index > tx.expires_ledger
        assert tx.expires_at is not None and self.close_time is not None
        return self.close_time > tx.expires_at

    def _apply(self, tx: _Tx, ledger_hash: str) -> None:
        self.sequences[tx.account] = tx.sequence + 1
        self.fees_paid[tx.account] += 1
        code = self._effect(tx)
        success = code in ("tesSUCCESS", "tx_success")
        self.results[tx.tx_hash] = _Result(self.index, ledger_hash, code, success)

    def _effect(self, tx: _Tx) -> str:
        ok = "tesSUCCESS" if self.chain is ChainName.XRPL else "tx_success"
        body = tx.body
        now = self.close_time
        assert now is not None
        if tx.purpose is Purpose.LOCK:
            asset = Asset(body["asset_code"], body["asset_issuer"])
            amount = Decimal(body["amount"])
            cancel_after = datetime.fromisoformat(body["cancel_after"])
            if self.chain is ChainName.XRPL and cancel_after <= now:
                return "tecNO_PERMISSION"
            if self.balance(tx.account, asset) < amount:
                return "tecUNFUNDED" if self.chain is ChainName.XRPL else "tx_failed"
            self.balances[(tx.account, asset)] -= amount
            self.locks[body["lock_id"]] = _Lock(
                tx.account, body["receiver"], asset, amount, body["condition"], cancel_after
            )
            return ok
        lock = self.locks.get(body["lock_id"])
        if lock is None:
            return "tecNO_TARGET" if self.chain is ChainName.XRPL else "tx_failed"
        if tx.purpose is Purpose.COMMIT:
            if self.chain is ChainName.XRPL:
                if now >= lock.cancel_after:
                    return "tecNO_PERMISSION"
                fulfilled = condition_of_fulfillment(body["fulfillment"])
                if fulfilled.upper() != lock.condition_hex.upper():
                    return "tecCRYPTOCONDITION_ERROR"
            to = lock.receiver
        else:
            if self.chain is ChainName.XRPL and now <= lock.cancel_after:
                return "tecNO_PERMISSION"
            to = lock.sender
        del self.locks[body["lock_id"]]
        self.balances[(to, lock.asset)] = self.balances.get((to, lock.asset), Decimal(0)) + (
            lock.amount
        )
        return ok

    # -- what the port sees -------------------------------------------------------------

    def sign(
        self, purpose: Purpose, account: str, body: dict[str, Any]
    ) -> tuple[_Tx, SignedSubmission]:
        if self.partitioned:
            raise AdapterError(f"{self.chain}: connection refused")
        # the "current" sequence: the ledger's, past any queued transactions that follow
        # it without a gap (a queue never holds a transaction that cannot be next)
        pending = {t.sequence for t, _ in self.pool.values() if t.account == account}
        sequence = self.sequences.get(account, 1)
        while sequence in pending:
            sequence += 1
        if purpose is Purpose.LOCK:
            body["lock_id"] = (
                f"{account}:{sequence}"
                if self.chain is ChainName.XRPL
                else _digest(f"balance:{account}:{sequence}")
            )
        expires_ledger = expires_at = None
        if self.chain is ChainName.XRPL:
            expires_ledger = self.index + self.window
        else:
            expires_at = self.clock.now() + timedelta(seconds=self.window * 5)
        blob = json.dumps(
            {
                "purpose": purpose.value,
                "account": account,
                "sequence": sequence,
                "body": body,
                "expires_ledger": expires_ledger,
                "expires_at": None if expires_at is None else expires_at.isoformat(),
            },
            sort_keys=True,
        )
        tx_hash = _digest(blob)
        self.signatures += 1
        tx = _Tx(tx_hash, purpose, account, sequence, body, expires_ledger, expires_at)
        lock_ref = None
        if purpose is Purpose.LOCK:
            if self.chain is ChainName.XRPL:
                lock_ref = LockRef(self.chain, account, sequence=sequence)
            else:
                lock_ref = LockRef(self.chain, account, balance_id=body["lock_id"])
        return tx, SignedSubmission(
            self.chain, purpose, tx_hash, blob, expires_ledger, expires_at, lock_ref
        )

    def submit(self, signed: SignedSubmission) -> Outcome:
        if self.partitioned:
            return Unavailable(f"{self.chain}: connection refused")
        tx = _decode(signed)
        assert tx.tx_hash == signed.tx_hash, "the hash is computed from the blob"
        self.received.add(tx.tx_hash)
        if tx.tx_hash in self.results or tx.tx_hash in self.pool:
            return self.status(signed)
        if self._expired_now(tx):
            return self.status(signed)
        fault = self.submit_faults.pop(0) if self.submit_faults else None
        kind = fault[0] if fault else None
        if kind == "reject":
            return Rejected(tx.tx_hash, fault[1], applied=False, detail="injected rejection")
        if self.chain is ChainName.STELLAR and tx.sequence < self.sequences.get(tx.account, 1):
            return Rejected(tx.tx_hash, "tx_bad_seq", applied=False)
        self.pool[tx.tx_hash] = (tx, fault[1] if kind == "hold" else 0)
        if kind in ("drop", "timeout"):
            return Pending(tx.tx_hash, f"response lost ({kind})")
        return Pending(tx.tx_hash, "queued")

    def _expired_now(self, tx: _Tx) -> bool:
        return self._expired(tx)

    def status(self, signed: SignedSubmission) -> Outcome:
        if self.partitioned:
            return Unavailable(f"{self.chain}: connection refused")
        found = self.results.get(signed.tx_hash)
        if found is not None:
            if found.success:
                return Applied(signed.tx_hash, found.ledger_index, found.ledger_hash, found.code)
            return Rejected(
                signed.tx_hash,
                found.code,
                applied=True,
                ledger_index=found.ledger_index,
                ledger_hash=found.ledger_hash,
            )
        if signed.tx_hash in self.pool:
            return Pending(signed.tx_hash, "in the queue")
        tx = _decode(signed)
        if self._expired(tx):
            return Expired(signed.tx_hash, "past its expiry and in no ledger")
        return Pending(signed.tx_hash, "not in a validated ledger yet")

    def lookup(self, tx_hash: str) -> LedgerTx | None:
        if self.partitioned:
            raise AdapterError(f"{self.chain}: connection refused")
        found = self.results.get(tx_hash)
        if found is None:
            return None
        return LedgerTx(tx_hash, found.ledger_index, found.ledger_hash, True, found.success)

    def clear_faults(self) -> None:
        self.submit_faults.clear()
        self.partitioned = False
        self.stalled = False
        self.pool = {h: (tx, 0) for h, (tx, _) in self.pool.items()}


class FakeChain:
    """The ``Chain`` port over a ``FakeLedger``."""

    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger

    @property
    def name(self) -> ChainName:
        return self.ledger.chain

    def validate_leg(self, leg: Leg) -> None:
        places = 7 if self.ledger.chain is ChainName.STELLAR else 6
        if leg.amount != leg.amount.quantize(Decimal(1).scaleb(-places)):
            raise LegInvalid(f"{leg.amount} is finer than {places} decimal places")
        for account in (leg.sender, leg.receiver):
            if account not in self.ledger.sequences:
                raise LegInvalid(f"account {account} does not exist")
        if self.ledger.balance(leg.sender, leg.asset) < leg.amount:
            raise LegInvalid(f"sender {leg.sender} holds less than {leg.amount}")

    def submission_channels(self, leg: Leg, purpose: Purpose) -> tuple[str, ...]:
        return ()

    def prepare_lock(
        self, leg: Leg, terms: LockTerms, *, channel: str | None = None
    ) -> SignedSubmission:
        assert channel is None, "the fake ledger has no channel accounts"
        return self.ledger.sign(
            Purpose.LOCK,
            leg.sender,
            {
                "receiver": leg.receiver,
                "asset_code": leg.asset.code,
                "asset_issuer": leg.asset.issuer,
                "amount": f"{leg.amount:f}",
                "condition": terms.condition_hex,
                "cancel_after": terms.cancel_after.isoformat(),
            },
        )[1]

    def prepare_commit(
        self, leg: Leg, lock: LockRef, fulfillment_hex: str, *, channel: str | None = None
    ) -> SignedSubmission:
        assert channel is None, "the fake ledger has no channel accounts"
        return self.ledger.sign(
            Purpose.COMMIT,
            self.ledger.agent,
            {"lock_id": _lock_id(lock), "fulfillment": fulfillment_hex},
        )[1]

    def prepare_unwind(
        self, leg: Leg, lock: LockRef, *, channel: str | None = None
    ) -> SignedSubmission:
        assert channel is None, "the fake ledger has no channel accounts"
        return self.ledger.sign(Purpose.UNWIND, self.ledger.agent, {"lock_id": _lock_id(lock)})[1]

    def submit(self, submission: SignedSubmission) -> Outcome:
        return self.ledger.submit(submission)

    def status(self, submission: SignedSubmission) -> Outcome:
        return self.ledger.status(submission)

    def lookup(self, tx_hash: str) -> LedgerTx | None:
        return self.ledger.lookup(tx_hash)

    def ledger_time(self) -> datetime | Unavailable:
        if self.ledger.partitioned:
            return Unavailable(f"{self.ledger.chain}: connection refused")
        assert self.ledger.close_time is not None
        return self.ledger.close_time


def _lock_id(lock: LockRef) -> str:
    if lock.chain is ChainName.XRPL:
        return f"{lock.owner}:{lock.sequence}"
    assert lock.balance_id is not None
    return lock.balance_id


def _decode(signed: SignedSubmission) -> _Tx:
    data = json.loads(signed.blob)
    expires_at = data["expires_at"]
    return _Tx(
        _digest(signed.blob),
        Purpose(data["purpose"]),
        data["account"],
        data["sequence"],
        data["body"],
        data["expires_ledger"],
        None if expires_at is None else datetime.fromisoformat(expires_at),
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest().upper()


# --------------------------------------------------------------------------------------
# serialization failures
# --------------------------------------------------------------------------------------


class FlakyDatabase:
    """The coordinator's ``Database`` with injected serialization failures: the work
    runs, then the transaction fails with 40001 as a real one would at commit, and the
    database layer retries it whole. ``plan`` gives how many attempts of the next
    transaction fail (more than ``TRANSIENT_RETRIES`` makes the call itself fail)."""

    def __init__(self, inner: Database, plan: Callable[[], int]) -> None:
        self._inner = inner
        self._plan = plan
        self.injected = 0
        self.escaped = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def transaction(
        self, work: Callable[[UnitOfWork], T], *, retries: int = TRANSIENT_RETRIES
    ) -> T:
        return self._inner.transaction(self._flaky(work, retries), retries=retries)

    def statements(
        self,
        work: Callable[[DriverUnitOfWork], T],
        *,
        atomic: bool = True,
        retries: int = TRANSIENT_RETRIES,
    ) -> T:
        return self._inner.statements(self._flaky(work, retries), atomic=atomic, retries=retries)

    def _flaky(self, work: Callable[[W], T], retries: int) -> Callable[[W], T]:
        failures = self._plan()
        attempts = [0]

        def flaky(uow: W) -> T:
            result = work(uow)
            if attempts[0] < failures:
                attempts[0] += 1
                self.injected += 1
                raise SerializationFailure("injected: could not serialize access", sqlstate="40001")
            return result

        if failures > retries:
            self.escaped += 1
        return flaky


# --------------------------------------------------------------------------------------
# invariants (DESIGN section 8)
# --------------------------------------------------------------------------------------


@dataclass
class Settled:
    """What one settlement ended as, read back from the database."""

    settlement: SettlementRow
    legs: list[LegRow]
    subs: list[SubmissionRow]
    commitment_state: State


@dataclass
class LedgerView:
    """The ledger side of the checks: a lookup per chain."""

    lookup: Callable[[ChainName, str], LedgerTx | None]


def load(db: Database, service: CommitmentService, ids: Iterable[UUID]) -> list[Settled]:
    out = []
    for sid in ids:

        def read(uow: UnitOfWork, sid: UUID = sid) -> tuple[Any, ...]:
            return (
                records.load_settlement(uow, sid),
                records.load_legs(uow, sid),
                records.submissions(uow, sid),
            )

        s, legs, subs = db.transaction(read)
        out.append(Settled(s, legs, subs, service.state_of(s.commitment_id)))
    return out


def expected_moves(settled: Iterable[Settled]) -> dict[tuple[str, str, str], Decimal]:
    """(chain, asset code, account) -> net movement the settled legs must have caused."""
    moves: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for x in settled:
        if x.settlement.status != "SETTLED":
            continue
        for leg in x.legs:
            moves[(leg.chain, leg.asset_code, leg.sender)] -= leg.amount
            moves[(leg.chain, leg.asset_code, leg.receiver)] += leg.amount
    return {k: v for k, v in moves.items() if v}


def check_invariants(
    label: str,
    db: Database,
    service: CommitmentService,
    settled: list[Settled],
    ledgers: LedgerView,
    *,
    allow_open_if_flagged: bool = True,
) -> None:
    """Every at-rest invariant of DESIGN section 8 that the database and the ledgers can
    show; ``label`` (the seed) is in every assertion message."""
    for x in settled:
        s = x.settlement
        tag = f"{label} settlement {s.id}"
        states = [leg.state for leg in x.legs]
        # 1. no partial settlement at rest
        if s.status == "SETTLED":
            assert s.decision == "COMMIT", f"{tag}: SETTLED without COMMIT"
            assert set(states) == {"COMMITTED"}, f"{tag}: SETTLED with legs {states}"
            assert x.commitment_state is State.SETTLED, f"{tag}: commitment {x.commitment_state}"
        elif s.status == "UNWOUND":
            assert s.decision == "ABORT", f"{tag}: UNWOUND without ABORT"
            assert set(states) <= {"UNWOUND", "NOT_LOCKED"}, f"{tag}: UNWOUND with legs {states}"
            expected = (
                {State.CANCELLED, State.VERIFIED} if s.cancel_requested_by else {State.VERIFIED}
            )
            assert x.commitment_state in expected, f"{tag}: commitment {x.commitment_state}"
        else:
            assert allow_open_if_flagged and s.needs_review, (
                f"{tag}: still {s.status} with legs {states} and nobody told (not flagged)"
            )
            assert x.commitment_state is not State.SETTLED, f"{tag}: open but SETTLED"
        if "COMMITTED" in states:
            assert s.decision == "COMMIT", f"{tag}: a leg committed without a COMMIT decision"
        # 3. SETTLED only if every commit is applied in a validated ledger
        for leg in x.legs:
            mine = [u for u in x.subs if u.leg_no == leg.leg_no]
            applied = {u.purpose: u for u in mine if u.status == "APPLIED"}
            if leg.state == "COMMITTED":
                assert "commit" in applied, f"{tag} leg {leg.leg_no}: COMMITTED, no applied commit"
            if leg.state == "UNWOUND":
                assert "unwind" in applied, f"{tag} leg {leg.leg_no}: UNWOUND, no applied unwind"
            if leg.state in ("LOCKED", "COMMITTED", "UNWOUND"):
                assert "lock" in applied, f"{tag} leg {leg.leg_no}: {leg.state}, no applied lock"
            if leg.state == "NOT_LOCKED":
                assert "lock" not in applied, f"{tag} leg {leg.leg_no}: NOT_LOCKED but locked"
        # 5. one signature per purpose at a time, and at most one applied
        check_submission_history(tag, x.subs)
        # the database agrees with the ledger about every final outcome
        for u in x.subs:
            found = ledgers.lookup(ChainName(u.chain), u.tx_hash)
            where = f"{tag} leg {u.leg_no} {u.purpose} {u.tx_hash[:12]} ({u.status})"
            if u.status == "APPLIED":
                assert found is not None and found.validated and found.successful, (
                    f"{where}: recorded APPLIED, the ledger says {found}"
                )
                assert (found.ledger_index, found.ledger_hash) == (u.ledger_index, u.ledger_hash), (
                    f"{where}: recorded ledger differs from the ledger's"
                )
            elif u.status in ("REJECTED", "EXPIRED"):
                assert found is None or not found.successful, (
                    f"{where}: recorded {u.status} but it applied on the ledger"
                )
            elif s.status in CLOSED:
                raise AssertionError(f"{where}: still open in a closed settlement")
    # 4. exactly one audit entry per state change; every chain verifies with its ledger refs
    cids = {x.settlement.commitment_id for x in settled}
    for cid in cids:
        history = [(h.from_state, h.to_state, h.event) for h in service.history(cid)]
        trail = [
            (e.from_state, e.to_state, e.action)
            for e in service.audit_trail(cid)
            if e.to_state is not None
        ]
        assert history == trail, f"{label} commitment {cid}: transitions {history} audit {trail}"

    def ref_check(
        chain: str, tx_hash: str, index: int | None, ledger_hash: str | None
    ) -> str | None:
        tx = ledgers.lookup(ChainName(chain), tx_hash)
        if tx is None:
            return "transaction not found on the ledger"
        if not tx.validated:
            return "transaction not validated"
        if (tx.ledger_index, tx.ledger_hash) != (index, ledger_hash):
            return f"ledger {tx.ledger_index} {tx.ledger_hash} differs from the record"
        return None

    with db.unit_of_work() as uow:
        report = verify_all(uow.connection, check_ledger_ref=ref_check, commitment_ids=cids)
    assert report.ok, f"{label}: audit breaks {report.breaks}"


def check_submission_history(tag: str, subs: list[SubmissionRow]) -> None:
    """No (leg, purpose) has two APPLIED submissions, and none was signed while an
    earlier one was still open (each earlier one was final before the next was signed)."""
    groups: dict[tuple[int, str], list[SubmissionRow]] = defaultdict(list)
    for u in sorted(subs, key=lambda u: u.id):
        groups[(u.leg_no, u.purpose)].append(u)
    for (leg_no, purpose), rows in groups.items():
        applied = [u for u in rows if u.status == "APPLIED"]
        assert len(applied) <= 1, f"{tag} leg {leg_no} {purpose}: applied twice {applied}"
        for earlier, later in itertools.pairwise(rows):
            assert earlier.status != "SIGNED" and earlier.finalized_at is not None, (
                f"{tag} leg {leg_no} {purpose}: {later.tx_hash[:12]} signed while "
                f"{earlier.tx_hash[:12]} was still open"
            )
            assert earlier.finalized_at <= later.signed_at, (
                f"{tag} leg {leg_no} {purpose}: signed again before the last was final"
            )
            assert earlier.status != "APPLIED", (
                f"{tag} leg {leg_no} {purpose}: signed again after it applied"
            )


# --------------------------------------------------------------------------------------
# the fake-ledger simulation
# --------------------------------------------------------------------------------------

BOND = Asset("BND", "rBondIssuer")
USDC = Asset("USDC", "GUSDCISSUER")
POLICY = DvpPolicy(safety_margin_s=120, min_window_s=5, retry_after_s=0.0)


@dataclass
class SimEnv:
    """What lives across seeds: one database, one engine, one manual clock."""

    engine: bootstrap.Engine
    clock: ManualClock
    sealer: Sealer = field(default_factory=lambda: Sealer(Fernet.generate_key()))

    def verified_commitment(self, usdc: Decimal) -> UUID:
        service = self.engine.commitments
        created = service.create(
            ALLOCATOR, deal_ref="BOND-SIM", amount=f"{usdc:f}", currency="USDC"
        )
        service.submit(ALLOCATOR, created.commitment_id)
        service.approve(OFFICER, created.commitment_id)
        return created.commitment_id


@dataclass
class SeedReport:
    seed: int
    outcomes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    errors: list[str] = field(default_factory=list)


def run_fake_seed(env: SimEnv, seed: int) -> SeedReport:
    """Run one seed over two fake ledgers and check every invariant (raises
    ``AssertionError`` naming the seed)."""
    rng = random.Random(seed)
    report = SeedReport(seed)
    label = f"seed {seed}"
    clock = env.clock
    xrpl = FakeLedger(ChainName.XRPL, clock, agent=f"rAgent{seed}", window=rng.choice([3, 6, 10]))
    stellar = FakeLedger(
        ChainName.STELLAR, clock, agent=f"GAGENT{seed}", window=rng.choice([3, 6, 10])
    )
    ledgers = {ChainName.XRPL: xrpl, ChainName.STELLAR: stellar}
    seller_x, buyer_x = f"rSeller{seed}", f"rBuyer{seed}"
    buyers_s = [f"GBUYER{seed}_{n}" for n in range(rng.choice([1, 2]))]
    seller_s, fees_s = f"GSELLER{seed}", f"GFEES{seed}"
    xrpl.fund(xrpl.agent, BOND, Decimal(0))
    xrpl.fund(seller_x, BOND, Decimal(100))
    xrpl.fund(buyer_x, BOND, Decimal(0))
    stellar.fund(stellar.agent, USDC, Decimal(0))
    for buyer in buyers_s:
        stellar.fund(buyer, USDC, Decimal(10_000))
    stellar.fund(seller_s, USDC, Decimal(0))
    stellar.fund(fees_s, USDC, Decimal(0))
    start = {asset: ledger.total(asset) for ledger, asset in ((xrpl, BOND), (stellar, USDC))}
    start_balances = {c: dict(ledger.balances) for c, ledger in ledgers.items()}

    def db_failures() -> int:
        roll = rng.random()
        if roll < 0.9:
            return 0
        return rng.choice([1, 1, 2, 3, TRANSIENT_RETRIES + 1])

    flaky = FlakyDatabase(env.engine.db, db_failures)
    coordinator = DvpCoordinator(
        flaky,  # type: ignore[arg-type]
        service=env.engine.commitments,
        chains={c: FakeChain(ledger) for c, ledger in ledgers.items()},
        sealer=env.sealer,
        clock=clock,
        policy=POLICY,
    )
    external: list[tuple[ChainName, str, Asset, Decimal]] = []
    ids: list[UUID] = []
    for _ in range(rng.choice([1, 2, 2, 3])):
        price = Decimal(rng.choice([100, 250, 1000]))
        bond_units = Decimal(rng.randint(1, 10))
        buyer = rng.choice(buyers_s)
        legs = [
            LegInstruction(ChainName.STELLAR, USDC, price, buyer, seller_s),
            LegInstruction(ChainName.XRPL, BOND, bond_units, seller_x, buyer_x),
        ]
        if rng.random() < 0.3:
            legs.insert(
                0, LegInstruction(ChainName.STELLAR, USDC, Decimal("2.5"), buyer, fees_s, "fee")
            )
        if rng.random() < 0.3:
            legs.reverse()  # the coordinator orders the locks itself
        cid = env.verified_commitment(price)
        now = clock.now()
        deadline = now + timedelta(seconds=rng.choice([30, 60, 120, 300]))
        settle_at = None
        if rng.random() < 0.2:
            settle_at = now + timedelta(seconds=rng.choice([5, 10]))
        try:
            sid = coordinator.instruct(
                SYSTEM, cid, legs, commit_deadline=deadline, settle_not_before=settle_at
            )
        except (errors.InvalidInput, TransientConflict):
            report.outcomes["refused"] += 1
            continue
        ids.append(sid)
        roll = rng.random()
        if roll < 0.1:  # the buyer's money leaves after the instruction was checked
            sink = f"GELSEWHERE{seed}"
            amount = stellar.balance(buyer, USDC) - price + Decimal(1)
            if amount > 0:
                stellar.move_out(buyer, USDC, amount, sink)
                external.append((ChainName.STELLAR, buyer, USDC, -amount))
                external.append((ChainName.STELLAR, sink, USDC, amount))
        elif roll < 0.2:  # the seller's bonds leave
            sink = f"rElsewhere{seed}"
            amount = xrpl.balance(seller_x, BOND)
            if amount > 0:
                xrpl.move_out(seller_x, BOND, amount, sink)
                external.append((ChainName.XRPL, seller_x, BOND, -amount))
                external.append((ChainName.XRPL, sink, BOND, amount))

    def statuses() -> dict[UUID, tuple[str, bool]]:
        return env.engine.db.transaction(
            lambda uow: {
                row[0]: (row[1], row[2])
                for row in uow.execute(
                    "SELECT id, status, needs_review FROM settlements WHERE id = ANY(:ids)",
                    {"ids": ids},
                ).all()
            }
        )

    def open_ids() -> list[UUID]:
        return [sid for sid, (status, _) in statuses().items() if status not in CLOSED]

    def committing() -> bool:
        """A commit is under way that a person has not been asked to look at."""
        return ("COMMITTING", False) in statuses().values()

    def step(sid: UUID) -> Any:
        report.steps += 1
        try:
            return coordinator.step(sid)
        except TransientConflict:
            report.faults["step_failed_40001"] += 1  # the worker runs it again later
            return None
        except Exception as exc:  # noqa: BLE001 - what Worker._drive does: log, retry later
            report.faults[f"step_error:{type(exc).__name__}"] += 1
            report.errors.append(repr(exc)[:300])
            return None

    partition_ticks = {c: 0 for c in ledgers}
    stall_ticks = {c: 0 for c in ledgers}
    for _ in range(rng.randint(15, 50)):
        for c, ledger in ledgers.items():  # faults that last some ticks wear off
            if partition_ticks[c] > 0:
                partition_ticks[c] -= 1
                ledger.partitioned = partition_ticks[c] > 0
            if stall_ticks[c] > 0:
                stall_ticks[c] -= 1
                ledger.stalled = stall_ticks[c] > 0
        live = open_ids()
        if not live:
            break
        roll = rng.random()
        if roll < 0.5:
            step(rng.choice(live))
        elif roll < 0.75:
            rng.choice(list(ledgers.values())).close()
        elif roll < 0.85:
            clock.advance(timedelta(seconds=rng.randint(0, 5)))
        elif roll < 0.87 and not any(st == "COMMITTING" for st, _ in statuses().values()):
            # a jump past deadlines; never while committing (T_cancel's margin covers
            # ledger closes and clock skew, not an engine stopped for minutes)
            clock.advance(timedelta(seconds=rng.choice([30, 150, 300])))
            report.faults["clock_jump"] += 1
        elif roll < 0.885:
            sid = rng.choice(live)
            try:
                coordinator.request_force_cancel(ADMIN, sid, "simulated operator cancel")
                report.faults["force_cancel"] += 1
            except (errors.TransitionNotAllowed, TransientConflict):
                pass
        else:
            c = rng.choice(list(ledgers))
            ledger = ledgers[c]
            kind = rng.choice(["drop", "timeout", "reject", "hold", "partition", "stall"])
            report.faults[f"{c}:{kind}"] += 1
            if kind in ("drop", "timeout"):
                ledger.submit_faults.append((kind, None))
            elif kind == "reject":
                code = "temMALFORMED" if c is ChainName.XRPL else "tx_insufficient_fee"
                ledger.submit_faults.append(("reject", code))
            elif kind == "hold":
                ledger.submit_faults.append(("hold", rng.randint(1, 12)))
            elif kind == "partition":
                partition_ticks[c] = rng.randint(2, 8)
                ledger.partitioned = True
            else:
                stall_ticks[c] = rng.randint(2, 8)
                ledger.stalled = True

    # heal, then drive everything to rest
    for ledger in ledgers.values():
        ledger.clear_faults()
    flaky._plan = lambda: 0  # the faults stop here
    stuck_rounds = 0
    for _ in range(400):
        live = open_ids()
        if not live:
            break
        results = [step(sid) for sid in live]
        for ledger in ledgers.values():
            ledger.close()
        if all(r is not None and r.progress is Progress.NEEDS_REVIEW for r in results):
            stuck_rounds += 1
            if stuck_rounds > 20:
                break  # a commit the ledger keeps refusing: for a person
        else:
            stuck_rounds = 0
        # time passes: unwinding waits for CancelAfter on XRPL, LOCKING for its deadline;
        # committing gets a second a round (its T_cancel margin is minutes)
        clock.advance(timedelta(seconds=1 if committing() else 10))
    settled = load(env.engine.db, env.engine.commitments, ids)
    for x in settled:
        report.outcomes[x.settlement.status] += 1
    report.faults["db_40001_injected"] += flaky.injected

    def lookup(chain: ChainName, tx_hash: str) -> LedgerTx | None:
        return ledgers[chain].lookup(tx_hash)

    check_invariants(label, env.engine.db, env.engine.commitments, settled, LedgerView(lookup))
    check_fake_ledgers(label, ledgers, settled, start, start_balances, external)
    return report


def check_fake_ledgers(
    label: str,
    ledgers: Mapping[ChainName, FakeLedger],
    settled: list[Settled],
    start: Mapping[Asset, Decimal],
    start_balances: Mapping[ChainName, Mapping[tuple[str, Asset], Decimal]],
    external: list[tuple[ChainName, str, Asset, Decimal]],
) -> None:
    """The ledger side: conservation per asset, exact balances after what settled, no
    lock left behind by a closed settlement, no lock applied twice, and nothing on a
    ledger that the database did not record first (write-ahead)."""
    xrpl, stellar = ledgers[ChainName.XRPL], ledgers[ChainName.STELLAR]
    # 2. conservation: balances plus what is locked, per asset
    assert xrpl.total(BOND) == start[BOND], f"{label}: BND not conserved"
    assert stellar.total(USDC) == start[USDC], f"{label}: USDC not conserved"
    all_closed = all(x.settlement.status in CLOSED for x in settled)
    recorded = {u.tx_hash for x in settled for u in x.subs}
    for chain, ledger in ledgers.items():
        unrecorded = ledger.received - recorded
        assert not unrecorded, f"{label}: {chain} received unrecorded {sorted(unrecorded)[:3]}"
        # a lock that applied twice would leave two locks (or two paid-out locks) for a leg
        lock_keys = Counter()
        for tx_hash, result in ledger.results.items():
            if result.success and tx_hash in recorded:
                sub = next(u for x in settled for u in x.subs if u.tx_hash == tx_hash)
                lock_keys[(sub.settlement_id, sub.leg_no, sub.purpose)] += 1
        twice = [k for k, n in lock_keys.items() if n > 1]
        assert not twice, f"{label}: {chain} applied twice {twice}"
        if all_closed:
            assert not ledger.locks, f"{label}: {chain} locks left behind {ledger.locks}"
            moves = expected_moves(settled)
            expected = dict(start_balances[chain])
            for (c, code, account), delta in moves.items():
                if c != chain.value:
                    continue
                asset = BOND if code == BOND.code else USDC
                expected[(account, asset)] = expected.get((account, asset), Decimal(0)) + delta
            for c, account, asset, delta in external:
                if c is chain:
                    expected[(account, asset)] = expected.get((account, asset), Decimal(0)) + delta
            actual = {k: v for k, v in ledger.balances.items() if v}
            assert actual == {k: v for k, v in expected.items() if v}, (
                f"{label}: {chain} balances {actual} expected {expected}"
            )
