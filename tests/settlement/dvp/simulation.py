"""Seeded fault simulation of delivery versus payment (shared by the simulation tests
and the crash test).

Two layers, one set of invariants (DESIGN section 8):

``FakeLedger`` / ``FakeChain``
    A deterministic in-memory ledger behind the real ``Chain`` port. It keeps what the
    coordinator depends on: locally computed hashes, per-account sequence numbers (a
    transaction applies only at its account's sequence, so two signatures racing for a
    sequence can never both apply; one that lost the race is refused before any ledger),
    ledgers that close only when told to, expiry by ledger index (XRPL
    LastLedgerSequence) or by ledger time (Stellar time bounds), and the three lock
    primitives: hash-locked escrows that finish only with the right fulfillment and
    before CancelAfter and cancel only after it (XRPL; tokens only where the ledger has
    ``token_escrow``), custody locks that pay the agent (XRPL tokens otherwise), and
    claimable balances the agent claims at any time and the sender from T_cancel on
    (Stellar). Payouts from the agent are plain payments out of its one account. Balances
    are kept per asset; fees are paid in the native asset, which is not one of the settled
    assets, so the settled assets are conserved exactly.

    Faults: a lost or 504 response after the transaction went to the ledger; a
    rejection that never applies; a transaction held back for several closes (it may
    expire); a partition (every call ``Unavailable``); ledgers that stop closing; a
    receiver that refuses payments (deposit authorisation, an issuer's freeze, a
    de-authorised line: the payout fails inside a ledger, fee spent); third parties
    taking a lock (the receiver finishing an escrow once a finish was sent, anyone
    cancelling one past CancelAfter, the sender reclaiming a balance from T_cancel on);
    status and release answers from a lagging server; fee surges and lost sequence races
    (refusals before any ledger, several in a row). The ledger remembers which
    transaction took each lock and to whom, and every transaction that applied, so the
    checks compare the database with the ledger.

    The lagging view is consistent, as the adapters' whole-window proofs are: it sees
    the ledger as it was some closes ago, so it may answer "pending" for a transaction
    that has applied since, but "expired" only when its own (older) ledger is already
    past the expiry, which a transaction that applied cannot be.

    The fake keeps the Chain port's contract as the real adapters do: the adapters'
    contract suite runs against it (``tests/adapters/test_fake_chain_contract.py``), with
    a circuit breaker in front (``FakeChain(guard=...)``) and a ledger that closes
    whenever a status is read (``on_status_read``).

``FakeWorld`` / ``run_fake_seed``
    One seed: a few settlements (some underfunded, some with a settlement date, fee
    legs, force-cancels), each between accounts of its own, over two fake ledgers, a
    real PostgreSQL and the real coordinator, interleaved with the faults above, ledger
    closes, clock moves (past T_cancel too, while committing) and injected
    serialization failures (SQLSTATE 40001, some retried inside the transaction, some
    exhausting the retries so a step fails and is simply run again). Then every fault
    is healed, the settlements are driven to rest (a person retries a flagged one once),
    and the checks run: ``check_invariants`` on the database and the ledgers,
    ``check_fake_ledgers`` on the ledgers' balances, and ``check_legs_moved_together``:
    per settlement, from the balances alone, every leg moved or none did.

The real local networks (``run_real_seed`` in ``test_simulation``) use the same checks
with the ledger side read from the XRPL and Stellar nodes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from cryptography.fernet import Fernet

from adapters.chain import (
    Applied,
    Asset,
    Chain,
    ChainName,
    Expired,
    LedgerTx,
    Leg,
    LockClaimant,
    LockKind,
    LockRef,
    LockState,
    LockTerms,
    Outcome,
    Pending,
    Purpose,
    Rejected,
    Released,
    SignedSubmission,
    Unavailable,
)
from adapters.conditions import condition_of_fulfillment
from adapters.errors import (
    AccountNotFound,
    AdapterError,
    BreakerOpen,
    LegInvalid,
    TransportError,
)
from adapters.resilience import ChainGuard
from ledger import settlements as records
from ledger.audit import verify_all
from ledger.database import TRANSIENT_RETRIES, Database, DriverUnitOfWork, UnitOfWork
from ledger.errors import SerializationFailure, TransientConflict
from ledger.settlements import LegRow, SettlementRow, SubmissionRow
from settlement import bootstrap
from settlement.clock import Clock, ManualClock
from settlement.domain import errors
from settlement.domain.states import State
from settlement.domain.values import SYSTEM
from settlement.dvp import DvpCoordinator, DvpPolicy, LegInstruction, StepResult
from settlement.sealing import Sealer
from settlement.services.commitments import CommitmentService
from settlement.services.settlements import SettlementDesk
from tests.support import ADMIN, ALLOCATOR, OFFICER

T = TypeVar("T")
W = TypeVar("W")

CLOSED = ("SETTLED", "UNWOUND")


# --------------------------------------------------------------------------------------
# the fake ledger
# --------------------------------------------------------------------------------------


@dataclass
class _Lock:
    kind: LockKind
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


@dataclass(frozen=True)
class _Release:
    """The validated transaction that took a lock off the ledger, and to whom."""

    tx_hash: str
    ledger_index: int
    ledger_hash: str
    to: str
    amount: Decimal


#: how a receiver refuses a payout, as the fake ledger models it: ``deposit_auth`` (XRPL
#: deposit authorisation: only the account's own transactions may pay it, so the
#: receiver can still finish an escrow itself), ``frozen`` (an issuer froze or
#: de-authorised the line: nobody can pay it)
REFUSALS = ("deposit_auth", "frozen")
_XRPL_REFUSAL_CODE = {"deposit_auth": "tecNO_PERMISSION", "frozen": "tecFROZEN"}


@dataclass
class FakeLedger:
    """One in-memory ledger (``xrpl`` or ``stellar`` flavour); see the module docstring."""

    chain: ChainName
    clock: Clock
    agent: str
    #: XRPL: ledgers a transaction may wait (LastLedgerSequence = validated + window);
    #: Stellar: its time bounds span window x 5 s
    window: int = 6
    #: XRPL: the TokenEscrow amendment is enabled (a token is locked in an escrow;
    #: otherwise in custody)
    token_escrow: bool = True
    #: draws the lagging views
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    index: int = 1
    close_time: datetime | None = None
    close_times: dict[int, datetime] = field(default_factory=dict)
    balances: dict[tuple[str, Asset], Decimal] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    locks: dict[str, _Lock] = field(default_factory=dict)
    #: lock id -> the transaction that took it (the engine's or anyone's)
    released: dict[str, _Release] = field(default_factory=dict)
    results: dict[str, _Result] = field(default_factory=dict)
    ledger_hashes: dict[int, str] = field(default_factory=dict)
    #: transactions sent and not yet in a ledger (hash -> tx, closes to hold it back)
    pool: dict[str, tuple[_Tx, int]] = field(default_factory=dict)
    #: transactions of others (not the engine's), applied first in the next close
    external: list[_Tx] = field(default_factory=list)
    #: every transaction the ledger received from the engine, for the write-ahead check
    received: set[str] = field(default_factory=set)
    #: escrows whose fulfillment was on the wire (a finish was sent): public from then on
    public: set[str] = field(default_factory=set)
    #: account -> how it refuses payouts (``REFUSALS``)
    refusing: dict[str, str] = field(default_factory=dict)
    #: queued submit faults: ("drop" | "timeout" | "reject" | "hold", argument)
    submit_faults: list[tuple[str, Any]] = field(default_factory=list)
    partitioned: bool = False
    stalled: bool = False
    #: signers read the account's sequence from the validated ledger, not past their own
    #: queued transactions: two in one close take the same number
    contention: bool = False
    #: a status or release answer may come from a server up to this many ledgers behind
    lag: int = 0
    #: the chance that someone cancels an escrow in the very ledger that passes its
    #: CancelAfter, ahead of the engine's cancel (a watcher of the sender's)
    eager_cancel: float = 0.0
    #: transactions of others sent, by kind
    others: Counter[str] = field(default_factory=Counter)
    #: run when the engine reads the ledger's time: a test's way to act between the
    #: coordinator's reads and its decision
    on_time_read: Callable[[], None] | None = None
    #: run when the engine reads a transaction's status: a test's way to have ledgers
    #: close between polls, as a real ledger closes on its own timer (the contract suite)
    on_status_read: Callable[[], object] | None = None
    signatures: int = 0
    fees_paid: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.close_time = self.clock.now()
        self.close_times[self.index] = self.close_time
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

    def locked(self, lock: LockRef) -> Decimal:
        """What ``lock`` holds now: 0 once it is released, or if it never was."""
        found = self.locks.get(_lock_id(lock))
        return Decimal(0) if found is None else found.amount

    # -- ledger closes ------------------------------------------------------------------

    def close(self) -> bool:
        """Close one ledger: others' transactions first (they raced the engine's), then
        what is due of the engine's in sequence order; drop what expired."""
        if self.stalled:
            return False
        self.index += 1
        ledger_hash = _digest(f"{self.chain}:ledger:{self.index}:{len(self.results)}")
        self.ledger_hashes[self.index] = ledger_hash
        self.close_time = self.clock.now()
        self.close_times[self.index] = self.close_time
        sent = {tx.body["lock_id"] for tx in self.external}
        for lock_id, lock in list(self.locks.items()):
            if (
                lock.kind is LockKind.ESCROW
                and self.close_time > lock.cancel_after
                and lock_id not in sent
                and self.rng.random() < self.eager_cancel
            ):
                self.send_external("cancel", lock_id, f"rWatcher{self.index}")
        for tx in self.external:
            self._apply(tx, ledger_hash)
        self.external = []
        held: dict[str, tuple[_Tx, int]] = {}
        due = []
        for tx_hash, (tx, hold) in self.pool.items():
            if self._expired(tx, self.index):
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

    def _expired(self, tx: _Tx, view: int) -> bool:
        """Whether ``tx`` can no longer apply, as the ledger ``view`` shows."""
        if tx.expires_ledger is not None:
            return view > tx.expires_ledger
        assert tx.expires_at is not None
        return self.close_times[view] > tx.expires_at

    def _apply(self, tx: _Tx, ledger_hash: str) -> None:
        assert tx.tx_hash not in self.results, f"{tx.tx_hash[:12]} would apply twice"
        self.sequences[tx.account] = max(self.sequences.get(tx.account, 1), tx.sequence + 1)
        self.fees_paid[tx.account] += 1
        code = self._effect(tx, ledger_hash)
        success = code in ("tesSUCCESS", "tx_success")
        self.results[tx.tx_hash] = _Result(self.index, ledger_hash, code, success)

    def _ok(self) -> str:
        return "tesSUCCESS" if self.chain is ChainName.XRPL else "tx_success"

    def _failed(self, xrpl_code: str) -> str:
        """A failure inside a ledger (fee spent): XRPL's tec code, Stellar's tx_failed."""
        return xrpl_code if self.chain is ChainName.XRPL else "tx_failed"

    def _effect(self, tx: _Tx, ledger_hash: str) -> str:
        body = tx.body
        if "external" in body:
            return self._external(tx, ledger_hash)
        if tx.purpose is Purpose.LOCK:
            return self._lock(tx)
        if body.get("held"):
            asset = Asset(body["asset_code"], body["asset_issuer"])
            return self._pay(self.agent, body["to"], asset, Decimal(body["amount"]))
        lock_id = body["lock_id"]
        lock = self.locks.get(lock_id)
        if lock is None:
            return self._failed("tecNO_TARGET")
        now = self.close_time
        assert now is not None
        match tx.purpose:
            case Purpose.CLAIM:
                if lock.kind is not LockKind.CLAIMABLE:
                    return self._failed("tecNO_PERMISSION")
                return self._release(lock_id, tx.tx_hash, ledger_hash, self.agent)
            case Purpose.COMMIT:
                if lock.kind is LockKind.ESCROW:
                    if now >= lock.cancel_after:
                        return "tecNO_PERMISSION"
                    fulfilled = condition_of_fulfillment(body["fulfillment"])
                    if fulfilled.upper() != lock.condition_hex.upper():
                        return "tecCRYPTOCONDITION_ERROR"
                refused = self._refusal(lock.receiver, payer=self.agent)
                if refused is not None:
                    return refused
                return self._release(lock_id, tx.tx_hash, ledger_hash, lock.receiver)
            case _:
                if lock.kind is LockKind.ESCROW and now <= lock.cancel_after:
                    return "tecNO_PERMISSION"
                return self._release(lock_id, tx.tx_hash, ledger_hash, lock.sender)

    def _lock(self, tx: _Tx) -> str:
        body = tx.body
        kind = LockKind(body["kind"])
        asset = Asset(body["asset_code"], body["asset_issuer"])
        amount = Decimal(body["amount"])
        cancel_after = datetime.fromisoformat(body["cancel_after"])
        assert self.close_time is not None
        if kind is LockKind.ESCROW and cancel_after <= self.close_time:
            return "tecNO_PERMISSION"
        if self.balance(tx.account, asset) < amount:
            return self._failed("tecUNFUNDED")
        self.balances[(tx.account, asset)] -= amount
        if kind is LockKind.CUSTODY:  # the lock is a payment into the agent's account
            self.fund(self.agent, asset, amount)
            return self._ok()
        self.locks[body["lock_id"]] = _Lock(
            kind, tx.account, body["receiver"], asset, amount, body["condition"], cancel_after
        )
        return self._ok()

    def _pay(self, payer: str, payee: str, asset: Asset, amount: Decimal) -> str:
        refused = self._refusal(payee, payer=payer)
        if refused is not None:
            return refused
        if self.balance(payer, asset) < amount:
            return self._failed("tecUNFUNDED_PAYMENT")
        self.balances[(payer, asset)] -= amount
        self.fund(payee, asset, amount)
        return self._ok()

    def _refusal(self, payee: str, *, payer: str) -> str | None:
        """The code a payout to ``payee`` fails with inside a ledger, if it refuses."""
        how = self.refusing.get(payee)
        if how is None or (how == "deposit_auth" and payer == payee):
            return None
        return self._failed(_XRPL_REFUSAL_CODE[how])

    def _release(self, lock_id: str, tx_hash: str, ledger_hash: str, to: str) -> str:
        lock = self.locks.pop(lock_id)
        self.fund(to, lock.asset, lock.amount)
        self.released[lock_id] = _Release(tx_hash, self.index, ledger_hash, to, lock.amount)
        return self._ok()

    # -- others' transactions -----------------------------------------------------------

    def _external(self, tx: _Tx, ledger_hash: str) -> str:
        lock_id = tx.body["lock_id"]
        lock = self.locks.get(lock_id)
        if lock is None:
            return self._failed("tecNO_TARGET")
        now = self.close_time
        assert now is not None
        match tx.body["external"]:
            case "finish":  # the receiver, with the fulfillment a finish made public
                if now >= lock.cancel_after or lock_id not in self.public:
                    return "tecNO_PERMISSION"
                refused = self._refusal(lock.receiver, payer=lock.receiver)
                if refused is not None:
                    return refused
                return self._release(lock_id, tx.tx_hash, ledger_hash, lock.receiver)
            case "cancel":  # anyone, past CancelAfter
                if now <= lock.cancel_after:
                    return "tecNO_PERMISSION"
                return self._release(lock_id, tx.tx_hash, ledger_hash, lock.sender)
            case _:  # "reclaim": the sender's own claim, from T_cancel on
                if now < lock.cancel_after:
                    return self._failed("tecNO_PERMISSION")
                return self._release(lock_id, tx.tx_hash, ledger_hash, lock.sender)

    def third_party(self, rng: random.Random) -> str | None:
        """Someone outside the engine sends a transaction taking a lock it may take as
        of the latest ledger (applied in the next close, before the engine's): the
        receiver finishes an escrow whose fulfillment is public, anyone cancels an
        escrow past CancelAfter, a sender reclaims a balance from T_cancel on. Returns
        what was sent, or None when no lock can be taken by anyone now."""
        now = self.close_time
        assert now is not None
        options: list[tuple[str, str, str]] = []
        sent = {tx.body["lock_id"] for tx in self.external}
        for lock_id, lock in self.locks.items():
            if lock_id in sent:
                continue
            if lock.kind is LockKind.ESCROW and now > lock.cancel_after:
                options.append(("cancel", lock_id, f"rAnyone{self.index}"))
            elif lock.kind is LockKind.ESCROW and lock_id in self.public:
                options.append(("finish", lock_id, lock.receiver))
            elif lock.kind is LockKind.CLAIMABLE and now >= lock.cancel_after:
                options.append(("reclaim", lock_id, lock.sender))
        if not options:
            return None
        kind = rng.choice(sorted({k for k, _, _ in options}))  # each kind its fair share
        _, lock_id, actor = rng.choice([o for o in options if o[0] == kind])
        self.send_external(kind, lock_id, actor)
        return kind

    def send_external(self, kind: str, lock_id: str, actor: str) -> str:
        """Queue another party's ``kind`` ("finish", "cancel", "reclaim") of a lock for
        the next close; returns its hash."""
        sequence = self.sequences.setdefault(actor, 1)
        body = {"external": kind, "lock_id": lock_id}
        blob = json.dumps({"account": actor, "sequence": sequence, "body": body}, sort_keys=True)
        purpose = Purpose.COMMIT if kind == "finish" else Purpose.UNWIND
        tx = _Tx(_digest(blob), purpose, actor, sequence, body, None, None)
        self.external.append(tx)
        self.others[kind] += 1
        return tx.tx_hash

    # -- what the port sees -------------------------------------------------------------

    def _view(self) -> int:
        """The ledger a status or release answer is read at: the latest, or while
        lagging an older one (a server behind the balancer)."""
        if self.lag <= 0:
            return self.index
        return max(1, self.index - self.rng.randint(0, self.lag))

    def sign(
        self, purpose: Purpose, account: str, body: dict[str, Any]
    ) -> tuple[_Tx, SignedSubmission]:
        if self.partitioned:
            raise AdapterError(f"{self.chain}: connection refused")
        # the "current" sequence: the ledger's, past any queued transactions that follow
        # it without a gap (a queue never holds a transaction that cannot be next); under
        # contention the signer does not see the queue and takes a number already taken
        sequence = self.sequences.get(account, 1)
        if not self.contention:
            pending = {t.sequence for t, _ in self.pool.values() if t.account == account}
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
        if "fulfillment" in tx.body:
            self.public.add(tx.body["lock_id"])  # on the wire: anyone may have seen it
        if tx.tx_hash in self.results or tx.tx_hash in self.pool:
            return self.status(signed)
        if self._expired(tx, self.index):
            return self.status(signed)
        fault = self.submit_faults.pop(0) if self.submit_faults else None
        if fault is not None and fault[0] == "reject":
            return Rejected(tx.tx_hash, fault[1], applied=False, detail="injected rejection")
        if self._sequence_taken(tx):
            code = "tefPAST_SEQ" if self.chain is ChainName.XRPL else "tx_bad_seq"
            return Rejected(tx.tx_hash, code, applied=False, detail="sequence already used")
        self.pool[tx.tx_hash] = (tx, fault[1] if fault is not None and fault[0] == "hold" else 0)
        if fault is not None and fault[0] in ("drop", "timeout"):
            return Pending(tx.tx_hash, f"response lost ({fault[0]})")
        return Pending(tx.tx_hash, "queued")

    def _sequence_taken(self, tx: _Tx) -> bool:
        """Whether another transaction holds ``tx``'s sequence already: applied, or
        queued (several signers of one account in one close)."""
        if tx.sequence < self.sequences.get(tx.account, 1):
            return True
        return any(
            t.account == tx.account and t.sequence == tx.sequence for t, _ in self.pool.values()
        )

    def status(self, signed: SignedSubmission) -> Outcome:
        if self.partitioned:
            return Unavailable(f"{self.chain}: connection refused")
        view = self._view()
        found = self.results.get(signed.tx_hash)
        if found is not None and found.ledger_index <= view:
            if found.success:
                return Applied(signed.tx_hash, found.ledger_index, found.ledger_hash, found.code)
            return Rejected(
                signed.tx_hash,
                found.code,
                applied=True,
                ledger_index=found.ledger_index,
                ledger_hash=found.ledger_hash,
            )
        if view == self.index and signed.tx_hash in self.pool:
            return Pending(signed.tx_hash, "in the queue", held=True)
        if self._expired(_decode(signed), view):
            return Expired(signed.tx_hash, f"past its expiry at ledger {view} and in none")
        return Pending(signed.tx_hash, "not in a validated ledger yet")

    def release_of(self, lock_id: str) -> _Release | None:
        """Who took the lock, as a (possibly lagging) server's view shows."""
        found = self.released.get(lock_id)
        if found is None or found.ledger_index > self._view():
            return None
        return found

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
        self.contention = False
        self.lag = 0
        self.pool = {h: (tx, 0) for h, (tx, _) in self.pool.items()}


class FakeChain:
    """The ``Chain`` port over a ``FakeLedger``. No channels: every transaction of the
    agent takes the agent's own sequence, as a deployment without channel accounts.

    With a ``guard`` the port's reads and submissions go through its circuit breaker, as
    the real adapters' do: a partition is a transport failure the breaker counts, and
    while it is open the answer is ``Unavailable`` with ``breaker_open``, the ledger not
    asked. Without one (the simulation) a partition is simply ``Unavailable``."""

    def __init__(self, ledger: FakeLedger, *, guard: ChainGuard | None = None) -> None:
        self.ledger = ledger
        self.guard = guard

    def _ask(self, read: Callable[[], T]) -> T | Unavailable:
        """``read`` the ledger, through the guard when there is one."""
        if self.guard is None:
            return read()

        def once() -> T:
            if self.ledger.partitioned:
                raise TransportError(f"{self.ledger.chain}: connection refused")
            return read()

        try:
            return self.guard.call(once)
        except BreakerOpen as exc:
            return Unavailable(str(exc), breaker_open=True)
        except TransportError as exc:
            return Unavailable(str(exc))

    @property
    def name(self) -> ChainName:
        return self.ledger.chain

    def validate_leg(self, leg: Leg, *, kind: LockKind | None = None) -> None:
        del kind  # every kind asks the same of the fake's accounts
        if leg.amount <= 0:
            raise LegInvalid(f"amount {leg.amount} is not positive")
        places = 7 if self.ledger.chain is ChainName.STELLAR else 6
        if leg.amount != leg.amount.quantize(Decimal(1).scaleb(-places)):
            raise LegInvalid(f"{leg.amount} is finer than {places} decimal places")
        for account in (leg.sender, leg.receiver):
            if account not in self.ledger.sequences:
                raise LegInvalid(f"account {account} does not exist")
        if self.ledger.balance(leg.sender, leg.asset) < leg.amount:
            raise LegInvalid(f"sender {leg.sender} holds less than {leg.amount}")
        how = self.ledger.refusing.get(leg.receiver)
        if how is not None:
            raise LegInvalid(f"receiver {leg.receiver} refuses the payout ({how})")

    def lock_kind(self, leg: Leg) -> LockKind:
        if self.ledger.chain is ChainName.STELLAR:
            return LockKind.CLAIMABLE
        if leg.asset.is_native or self.ledger.token_escrow:
            return LockKind.ESCROW
        return LockKind.CUSTODY

    def submission_channels(self, leg: Leg, purpose: Purpose) -> tuple[str, ...]:
        return ()

    def prepare_lock(
        self,
        leg: Leg,
        terms: LockTerms,
        *,
        channel: str | None = None,
        kind: LockKind | None = None,
    ) -> SignedSubmission:
        """As the XRPL adapter: ``kind`` is the one recorded for the leg; without it
        ``lock_kind`` decides now."""
        assert channel is None, "the fake ledger has no channel accounts"
        return self.ledger.sign(
            Purpose.LOCK,
            leg.sender,
            {
                "kind": (kind or self.lock_kind(leg)).value,
                "receiver": leg.receiver,
                "asset_code": leg.asset.code,
                "asset_issuer": leg.asset.issuer,
                "amount": f"{leg.amount:f}",
                "condition": terms.condition_hex,
                "cancel_after": terms.cancel_after.isoformat(),
            },
        )[1]

    def prepare_claim(
        self, leg: Leg, lock: LockRef, *, channel: str | None = None
    ) -> SignedSubmission:
        assert channel is None, "the fake ledger has no channel accounts"
        if self.ledger.chain is not ChainName.STELLAR:
            raise ValueError("the XRP Ledger has no claimable locks")
        return self.ledger.sign(Purpose.CLAIM, self.ledger.agent, {"lock_id": _lock_id(lock)})[1]

    def prepare_commit(
        self,
        leg: Leg,
        lock: LockRef,
        fulfillment_hex: str,
        *,
        held: bool = False,
        channel: str | None = None,
    ) -> SignedSubmission:
        assert channel is None, "the fake ledger has no channel accounts"
        if held:
            body = _payment(leg, lock, leg.receiver)
        elif self.ledger.chain is ChainName.XRPL:
            body = {"lock_id": _lock_id(lock), "fulfillment": fulfillment_hex}
        else:  # the agent's claim and the payment, in one transaction
            body = {"lock_id": _lock_id(lock)}
        return self.ledger.sign(Purpose.COMMIT, self.ledger.agent, body)[1]

    def prepare_unwind(
        self, leg: Leg, lock: LockRef, *, held: bool = False, channel: str | None = None
    ) -> SignedSubmission:
        assert channel is None, "the fake ledger has no channel accounts"
        body = _payment(leg, lock, leg.sender) if held else {"lock_id": _lock_id(lock)}
        return self.ledger.sign(Purpose.UNWIND, self.ledger.agent, body)[1]

    def submit(self, submission: SignedSubmission) -> Outcome:
        return self._ask(lambda: self.ledger.submit(submission))

    def status(self, submission: SignedSubmission) -> Outcome:
        if self.ledger.on_status_read is not None:
            self.ledger.on_status_read()
        return self._ask(lambda: self.ledger.status(submission))

    def lookup(self, tx_hash: str) -> LedgerTx | None:
        return self.ledger.lookup(tx_hash)

    def lock_state(self, lock: LockRef) -> LockState | Unavailable:
        return self._ask(lambda: self._lock_state(lock))

    def _lock_state(self, lock: LockRef) -> LockState | Unavailable:
        if self.ledger.partitioned:
            return Unavailable(f"{self.ledger.chain}: connection refused")
        found = self.ledger.locks.get(_lock_id(lock))
        return _lock_state(lock, found, self.ledger.index, self.ledger.agent)

    def lock_release(self, lock: LockRef) -> Released | Unavailable | None:
        return self._ask(lambda: self._lock_release(lock))

    def _lock_release(self, lock: LockRef) -> Released | Unavailable | None:
        if self.ledger.partitioned:
            return Unavailable(f"{self.ledger.chain}: connection refused")
        found = self.ledger.release_of(_lock_id(lock))
        if found is None:
            return None
        return Released(
            lock, found.to, found.tx_hash, found.ledger_index, found.ledger_hash, found.amount
        )

    def locks_of(self, account: str) -> list[LockState] | Unavailable:
        return self._ask(lambda: self._locks_of(account))

    def _locks_of(self, account: str) -> list[LockState] | Unavailable:
        if self.ledger.partitioned:
            return Unavailable(f"{self.ledger.chain}: connection refused")
        ledger = self.ledger
        return [
            _lock_state(_ref_of(ledger.chain, lock_id, x), x, ledger.index, ledger.agent)
            for lock_id, x in ledger.locks.items()
            if account in (x.sender, x.receiver, ledger.agent)
        ]

    def ledger_time(self) -> datetime | Unavailable:
        if self.ledger.on_time_read is not None:
            self.ledger.on_time_read()
        return self._ask(self._ledger_time)

    def _ledger_time(self) -> datetime | Unavailable:
        if self.ledger.partitioned:
            return Unavailable(f"{self.ledger.chain}: connection refused")
        assert self.ledger.close_time is not None
        return self.ledger.close_time

    def balance(self, account: str, asset: Asset) -> Decimal:
        """As the adapters: ``AccountNotFound`` for an account never funded, and while
        partitioned a ``TransportError`` (through the guard and its breaker, if any)."""

        def read() -> Decimal:
            if self.ledger.partitioned:
                raise TransportError(f"{self.ledger.chain}: connection refused")
            if account not in self.ledger.sequences:
                raise AccountNotFound(f"{account} does not exist on the fake ledger")
            return self.ledger.balance(account, asset)

        return read() if self.guard is None else self.guard.call(read)


def _payment(leg: Leg, lock: LockRef, to: str) -> dict[str, Any]:
    """A payment of the leg's amount from the agent (the lock names the leg, so two
    legs' payments never sign alike)."""
    return {
        "held": True,
        "lock_id": _lock_id(lock),
        "to": to,
        "asset_code": leg.asset.code,
        "asset_issuer": leg.asset.issuer,
        "amount": f"{leg.amount:f}",
    }


def _lock_id(lock: LockRef) -> str:
    if lock.chain is ChainName.XRPL:
        return f"{lock.owner}:{lock.sequence}"
    assert lock.balance_id is not None
    return lock.balance_id


def _ref_of(chain: ChainName, lock_id: str, lock: _Lock) -> LockRef:
    if chain is ChainName.XRPL:
        return LockRef(chain, lock.sender, sequence=int(lock_id.rsplit(":", 1)[1]))
    return LockRef(chain, lock.sender, balance_id=lock_id)


def _lock_state(ref: LockRef, lock: _Lock | None, index: int, agent: str) -> LockState:
    """The lock as the ledger at ``index`` holds it. A claimable balance names its
    claimants as the Stellar adapter reads them: the agent at once, the sender from
    T_cancel on; an escrow names its receiver instead."""
    if lock is None:
        return LockState.absent(ref, key=_lock_id(ref), ledger_index=index)
    claimants: tuple[LockClaimant, ...] = ()
    if lock.kind is LockKind.CLAIMABLE:
        claimants = (
            LockClaimant(agent, unconditional=True),
            LockClaimant(lock.sender, unconditional=False, not_before=lock.cancel_after),
        )
    return LockState(
        lock=ref,
        exists=True,
        key=_lock_id(ref),
        asset=lock.asset,
        amount=lock.amount,
        sender=lock.sender,
        receiver=lock.receiver if lock.kind is LockKind.ESCROW else None,
        claimants=claimants,
        cancel_after=lock.cancel_after,
        condition_hex=lock.condition_hex if lock.kind is LockKind.ESCROW else None,
        ledger_index=index,
    )


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


#: leg states that say the funds are back with the sender (or never left)
_RETURNED = frozenset({"UNWOUND", "NOT_LOCKED"})


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
        # 1. no partial settlement, at rest or open: never a leg paid and another back
        assert not ("COMMITTED" in states and _RETURNED & set(states)), (
            f"{tag}: one leg paid and another returned: {states}"
        )
        _check_status(tag, x, allow_open_if_flagged=allow_open_if_flagged)
        # 3. every leg's state is backed by what applied on its ledger
        for leg in x.legs:
            _check_leg_record(tag, s, leg, [u for u in x.subs if u.leg_no == leg.leg_no], ledgers)
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


def _check_status(tag: str, x: Settled, *, allow_open_if_flagged: bool) -> None:
    """The settlement's status, decision and commitment agree with its legs."""
    s = x.settlement
    states = [leg.state for leg in x.legs]
    if s.status == "SETTLED":
        assert s.decision == "COMMIT", f"{tag}: SETTLED without COMMIT"
        assert set(states) == {"COMMITTED"}, f"{tag}: SETTLED with legs {states}"
        assert x.commitment_state is State.SETTLED, f"{tag}: commitment {x.commitment_state}"
    elif s.status == "UNWOUND":
        assert set(states) <= _RETURNED, f"{tag}: UNWOUND with legs {states}"
        if s.decision == "COMMIT":
            # every leg returned after COMMIT: recorded with its reason, a person told
            assert s.needs_review, f"{tag}: returned after COMMIT and nobody told"
            assert x.commitment_state is State.VERIFIED, f"{tag}: commitment {x.commitment_state}"
        else:
            assert s.decision == "ABORT", f"{tag}: UNWOUND without a decision"
            expected = (
                {State.CANCELLED, State.VERIFIED} if s.cancel_requested_by else {State.VERIFIED}
            )
            assert x.commitment_state in expected, f"{tag}: commitment {x.commitment_state}"
    else:
        assert allow_open_if_flagged and s.needs_review, (
            f"{tag}: still {s.status} with legs {states} and nobody told (not flagged)"
        )
        assert x.commitment_state is not State.SETTLED, f"{tag}: open but SETTLED"
    if "REFUSED" in states:
        assert s.needs_review, f"{tag}: a payout refused for good and nobody told"


def _check_leg_record(
    tag: str, s: SettlementRow, leg: LegRow, mine: list[SubmissionRow], ledgers: LedgerView
) -> None:
    """A leg's state follows from a transaction applied on its ledger: the engine's own
    (an applied submission) or another party's (a recorded release, which the ledger
    must hold as recorded)."""
    where = f"{tag} leg {leg.leg_no}"
    applied = {u.purpose for u in mine if u.status == "APPLIED"}
    released_to = leg.released_to
    if leg.released_tx_hash is not None:
        found = ledgers.lookup(ChainName(leg.chain), leg.released_tx_hash)
        assert found is not None and found.validated and found.successful, (
            f"{where}: released by {leg.released_tx_hash[:12]}, the ledger says {found}"
        )
        assert (found.ledger_index, found.ledger_hash) == (
            leg.released_ledger_index,
            leg.released_ledger_hash,
        ), f"{where}: the release's recorded ledger differs from the ledger's"
    if leg.state == "COMMITTED":
        assert "commit" in applied or released_to == leg.receiver, (
            f"{where}: COMMITTED, no applied commit and no release to the receiver"
        )
    if leg.state == "UNWOUND":
        assert "unwind" in applied or released_to == leg.sender, (
            f"{where}: UNWOUND, no applied unwind and no release to the sender"
        )
    if leg.state == "HELD":
        assert "claim" in applied or leg.lock_kind == "custody" or released_to is not None, (
            f"{where}: HELD, neither claimed nor a custody lock"
        )
    if leg.state in ("LOCKED", "HELD", "REFUSED", "COMMITTED", "UNWOUND"):
        assert "lock" in applied, f"{where}: {leg.state}, no applied lock"
    if leg.state == "NOT_LOCKED":
        assert "lock" not in applied, f"{where}: NOT_LOCKED but locked"
    if leg.state in ("COMMITTED", "HELD", "REFUSED"):
        assert s.decision == "COMMIT", f"{where}: {leg.state} without a COMMIT decision"


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


def check_legs_moved_together(
    label: str, settled: list[Settled], moved: Callable[[ChainName, str, Asset], Decimal]
) -> None:
    """Per settlement, from the ledgers' balances and not the database: every leg moved
    or none did. ``moved`` is what an account gained in an asset over the run, outside
    moves aside; each settlement's accounts are its own, and each receiver receives one
    leg, so a receiver's gain says whether its leg was paid, a sender's loss whether
    its legs are gone from it. A receiver has exactly its leg's amount or nothing; once
    one leg is paid, every sender has lost every leg (nothing went back); a closed
    settlement moved everything (SETTLED) or nothing (UNWOUND). An open one, flagged for
    a person, may have funds with the agent: its senders lost them, its receivers do
    not have them yet."""
    for x in settled:
        tag = f"{label} settlement {x.settlement.id}"
        owed: dict[tuple[ChainName, str, Asset], Decimal] = defaultdict(Decimal)
        paid = []
        for leg in x.legs:
            chain, asset = ChainName(leg.chain), Asset(leg.asset_code, leg.asset_issuer)
            owed[(chain, leg.sender, asset)] += leg.amount
            got = moved(chain, leg.receiver, asset)
            assert got in (Decimal(0), leg.amount), (
                f"{tag} leg {leg.leg_no}: the receiver got {got} of {leg.amount}"
            )
            if got:
                paid.append(leg.leg_no)
        lost = {key: -moved(*key) for key in owed}
        for key, total in owed.items():
            assert Decimal(0) <= lost[key] <= total, (
                f"{tag}: sender {key[1]} lost {lost[key]} of its legs' {total}"
            )
        if paid:
            back = {key[1]: total - lost[key] for key, total in owed.items() if lost[key] != total}
            assert not back, f"{tag}: legs {paid} paid while {back} went back to the senders"
        status = x.settlement.status
        if status == "SETTLED":
            assert len(paid) == len(x.legs), f"{tag}: SETTLED but only legs {paid} paid"
        elif status == "UNWOUND":
            assert not paid and not any(lost.values()), (
                f"{tag}: UNWOUND but legs {paid} paid, senders lost {lost}"
            )


# --------------------------------------------------------------------------------------
# the fake-ledger simulation
# --------------------------------------------------------------------------------------

BOND = Asset("BND", "rBondIssuer")
USDC = Asset("USDC", "GUSDCISSUER")
#: ``expiry_recheck_s`` 0: the second poll of an expired transaction is its second proof
#: (the coordinator measures the pause on the machine's monotonic clock, which a
#: simulation step does not move)
POLICY = DvpPolicy(
    safety_margin_s=120,
    commit_send_margin_s=30,
    min_window_s=5,
    retry_after_s=0.0,
    expiry_recheck_s=0.0,
)


@dataclass
class SimEnv:
    """What lives across seeds: one database, one engine, one manual clock."""

    engine: bootstrap.Services
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


@dataclass(frozen=True)
class Parties:
    """One settlement's accounts, its own alone: the balances then say what it moved."""

    buyer: str  # Stellar: pays the price and any fee in USDC
    seller: str  # Stellar: receives the price
    fees: str  # Stellar: receives the fee
    seller_x: str  # XRPL: delivers the bonds
    buyer_x: str  # XRPL: receives them

    def legs(
        self, price: Decimal, bond_units: Decimal, *, fee: Decimal | None = None
    ) -> list[LegInstruction]:
        legs = [
            LegInstruction(ChainName.STELLAR, USDC, price, self.buyer, self.seller),
            LegInstruction(ChainName.XRPL, BOND, bond_units, self.seller_x, self.buyer_x),
        ]
        if fee is not None:
            legs.insert(
                0, LegInstruction(ChainName.STELLAR, USDC, fee, self.buyer, self.fees, "fee")
            )
        return legs


@dataclass(frozen=True)
class Snapshot:
    """Where one settlement stands, read in one query: what the drive loop watches."""

    status: str
    flagged: bool
    cancel_after: datetime
    legs: str
    submissions: int


class FakeWorld:
    """Two fake ledgers, the real coordinator over them, and accounts of their own for
    each settlement (``parties``). What every account was given and what left it outside
    the engine is kept, so ``moved`` is what the settlements did to it."""

    def __init__(
        self,
        env: SimEnv,
        tag: str,
        *,
        rng: random.Random | None = None,
        token_escrow: bool = True,
        windows: tuple[int, int] = (6, 6),
        db: Database | FlakyDatabase | None = None,
        seed: int | None = None,
    ) -> None:
        self.env = env
        self.clock = env.clock
        self.tag = tag
        draw = rng or random.Random(tag)
        self.xrpl = FakeLedger(
            ChainName.XRPL,
            env.clock,
            agent=f"rAgent{tag}",
            window=windows[0],
            token_escrow=token_escrow,
            rng=random.Random(draw.random()),
        )
        self.stellar = FakeLedger(
            ChainName.STELLAR,
            env.clock,
            agent=f"GAGENT{tag}",
            window=windows[1],
            rng=random.Random(draw.random()),
        )
        self.ledgers = {ChainName.XRPL: self.xrpl, ChainName.STELLAR: self.stellar}
        self.funded: dict[tuple[ChainName, str, Asset], Decimal] = defaultdict(Decimal)
        self.outside: dict[tuple[ChainName, str, Asset], Decimal] = defaultdict(Decimal)
        self.fund(ChainName.XRPL, self.xrpl.agent, BOND, Decimal(0))
        self.fund(ChainName.STELLAR, self.stellar.agent, USDC, Decimal(0))
        self.chains = {c: FakeChain(ledger) for c, ledger in self.ledgers.items()}
        chains: dict[ChainName, Chain] = dict(self.chains)
        self.coordinator = DvpCoordinator(
            db or env.engine.db,  # type: ignore[arg-type]
            service=env.engine.commitments,
            chains=chains,
            sealer=env.sealer,
            clock=env.clock,
            policy=dataclasses.replace(POLICY, seed=seed),
        )
        self.ids: list[UUID] = []
        self.parties_of: dict[UUID, Parties] = {}
        self._count = 0

    # -- accounts -----------------------------------------------------------------------

    def fund(self, chain: ChainName, account: str, asset: Asset, amount: Decimal) -> None:
        self.ledgers[chain].fund(account, asset, amount)
        self.funded[(chain, account, asset)] += amount

    def parties(self, *, bonds: Decimal = Decimal(100), usdc: Decimal = Decimal(10_000)) -> Parties:
        n = self._count
        self._count += 1
        p = Parties(
            buyer=f"GBUYER{self.tag}_{n}",
            seller=f"GSELLER{self.tag}_{n}",
            fees=f"GFEES{self.tag}_{n}",
            seller_x=f"rSeller{self.tag}_{n}",
            buyer_x=f"rBuyer{self.tag}_{n}",
        )
        self.fund(ChainName.STELLAR, p.buyer, USDC, usdc)
        self.fund(ChainName.STELLAR, p.seller, USDC, Decimal(0))
        self.fund(ChainName.STELLAR, p.fees, USDC, Decimal(0))
        self.fund(ChainName.XRPL, p.seller_x, BOND, bonds)
        self.fund(ChainName.XRPL, p.buyer_x, BOND, Decimal(0))
        return p

    def move_out(self, chain: ChainName, account: str, asset: Asset, amount: Decimal) -> None:
        """The account spends ``amount`` outside the engine."""
        sink = f"elsewhere{self.tag}"
        self.ledgers[chain].move_out(account, asset, amount, sink)
        self.outside[(chain, account, asset)] -= amount
        self.outside[(chain, sink, asset)] += amount

    def moved(self, chain: ChainName, account: str, asset: Asset) -> Decimal:
        """What the settlements did to the account's balance of ``asset``."""
        key = (chain, account, asset)
        return self.ledgers[chain].balance(account, asset) - self.funded[key] - self.outside[key]

    # -- settlements --------------------------------------------------------------------

    def instruct(
        self,
        parties: Parties,
        legs: list[LegInstruction],
        price: Decimal,
        *,
        deadline_s: float = 120,
        settle_in_s: float | None = None,
    ) -> UUID:
        cid = self.env.verified_commitment(price)
        now = self.clock.now()
        sid = self.coordinator.instruct(
            SYSTEM,
            cid,
            legs,
            commit_deadline=now + timedelta(seconds=deadline_s),
            settle_not_before=None if settle_in_s is None else now + timedelta(seconds=settle_in_s),
        )
        self.ids.append(sid)
        self.parties_of[sid] = parties
        return sid

    def close(self) -> None:
        for ledger in self.ledgers.values():
            ledger.close()

    def run(
        self,
        sid: UUID,
        *,
        rounds: int = 400,
        advance_s: float = 1.0,
        until: Callable[[Settled], bool] | None = None,
    ) -> Settled:
        """Step, close both ledgers and move the clock, until the settlement closes,
        ``until`` holds, or ``rounds`` pass; returns where it stands."""
        x = self.settled([sid])[0]
        for _ in range(rounds):
            if x.settlement.status in CLOSED or (until is not None and until(x)):
                break
            self.coordinator.step(sid)
            self.close()
            self.clock.advance(timedelta(seconds=advance_s))
            x = self.settled([sid])[0]
        return x

    def settled(self, ids: Iterable[UUID] | None = None) -> list[Settled]:
        engine = self.env.engine
        return load(engine.db, engine.commitments, self.ids if ids is None else ids)

    def snapshot(self) -> dict[UUID, Snapshot]:
        rows: Sequence[Any] = self.env.engine.db.transaction(
            lambda uow: uow.execute(
                "SELECT s.id, s.status, s.needs_review, s.cancel_after,"
                " (SELECT string_agg(l.state, ',' ORDER BY l.leg_no) FROM settlement_legs l"
                "  WHERE l.settlement_id = s.id),"
                " (SELECT count(*) FROM ledger_submissions x WHERE x.settlement_id = s.id)"
                " FROM settlements s WHERE s.id = ANY(:ids)",
                {"ids": self.ids},
            ).all()
        )
        return {
            row[0]: Snapshot(
                status=row[1],
                flagged=row[2],
                cancel_after=row[3],
                legs=row[4],
                submissions=row[5],
            )
            for row in rows
        }

    def check(self, label: str) -> list[Settled]:
        """Every check of the module over this world's settlements; returns them."""
        settled = self.settled()

        def lookup(chain: ChainName, tx_hash: str) -> LedgerTx | None:
            return self.ledgers[chain].lookup(tx_hash)

        engine = self.env.engine
        check_invariants(label, engine.db, engine.commitments, settled, LedgerView(lookup))
        check_fake_ledgers(label, self, settled)
        check_legs_moved_together(label, settled, self.moved)
        return settled


def check_fake_ledgers(label: str, world: FakeWorld, settled: list[Settled]) -> None:
    """The ledger side: conservation per asset, no lock left behind by a closed
    settlement, no purpose applied twice, nothing on a ledger that the database did not
    record first (write-ahead), and when every settlement is closed, exact balances
    after what settled."""
    recorded = {u.tx_hash: u for x in settled for u in x.subs}
    for chain, ledger in world.ledgers.items():
        given: dict[Asset, Decimal] = defaultdict(Decimal)
        for (c, _, asset), amount in world.funded.items():
            if c is chain:
                given[asset] += amount
        for asset, amount in given.items():
            assert ledger.total(asset) == amount, f"{label}: {chain} {asset.code} not conserved"
        unrecorded = ledger.received - recorded.keys()
        assert not unrecorded, f"{label}: {chain} received unrecorded {sorted(unrecorded)[:3]}"
        # a purpose that applied twice would move a leg's funds twice
        applied = Counter(
            (u.settlement_id, u.leg_no, u.purpose)
            for tx_hash, result in ledger.results.items()
            if result.success and (u := recorded.get(tx_hash)) is not None
        )
        twice = [k for k, n in applied.items() if n > 1]
        assert not twice, f"{label}: {chain} applied twice {twice}"
        for x in settled:
            if x.settlement.status not in CLOSED:
                continue
            for leg in x.legs:
                if leg.chain != chain.value or leg.lock_owner is None:
                    continue
                lock_id = (
                    f"{leg.lock_owner}:{leg.lock_sequence}"
                    if chain is ChainName.XRPL
                    else leg.lock_balance_id
                )
                assert lock_id not in ledger.locks, (
                    f"{label}: {chain} lock of closed settlement {x.settlement.id} leg "
                    f"{leg.leg_no} left behind"
                )
    if not all(x.settlement.status in CLOSED for x in settled):
        return
    for chain, ledger in world.ledgers.items():
        expected: dict[tuple[str, Asset], Decimal] = defaultdict(Decimal)
        for (c, account, asset), amount in itertools.chain(
            world.funded.items(), world.outside.items()
        ):
            if c is chain:
                expected[(account, asset)] += amount
        for x in settled:
            if x.settlement.status != "SETTLED":
                continue
            for leg in x.legs:
                if leg.chain == chain.value:
                    asset = Asset(leg.asset_code, leg.asset_issuer)
                    expected[(leg.sender, asset)] -= leg.amount
                    expected[(leg.receiver, asset)] += leg.amount
        actual = {k: v for k, v in ledger.balances.items() if v}
        assert actual == {k: v for k, v in expected.items() if v}, (
            f"{label}: {chain} balances {actual} expected {dict(expected)}"
        )


@dataclass
class SeedReport:
    seed: int
    outcomes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    errors: list[str] = field(default_factory=list)


#: faults that last a few ticks, then wear off
_LASTING = ("partition", "stall", "contention", "lag")
_SURGE_CODE = {ChainName.XRPL: "telINSUF_FEE_P", ChainName.STELLAR: "tx_insufficient_fee"}
#: refused before any ledger as wrong in itself: counts against the purpose
_MALFORMED_CODE = {ChainName.XRPL: "temMALFORMED", ChainName.STELLAR: "tx_bad_auth"}


class _SeedRun:
    """One seed's run: the world, its draws, and what the report counts."""

    def __init__(self, env: SimEnv, seed: int) -> None:
        self.env = env
        self.rng = random.Random(seed)
        self.report = SeedReport(seed)
        rng = self.rng

        def db_failures() -> int:
            roll = rng.random()
            if roll < 0.9:
                return 0
            return rng.choice([1, 1, 2, 3, TRANSIENT_RETRIES + 1])

        self.flaky = FlakyDatabase(env.engine.db, db_failures)
        self.world = FakeWorld(
            env,
            str(seed),
            rng=rng,
            token_escrow=rng.random() < 0.6,
            windows=(rng.choice([3, 6, 10]), rng.choice([3, 6, 10])),
            db=self.flaky,
            seed=seed,
        )
        self.world.xrpl.eager_cancel = rng.choice([0.0, 0.8])
        self.lasting: dict[tuple[ChainName, str], int] = {}

    def instruct_some(self) -> None:
        rng, world = self.rng, self.world
        for _ in range(rng.choice([1, 2, 2, 3])):
            parties = world.parties()
            price = Decimal(rng.choice([100, 250, 1000]))
            fee = Decimal("2.5") if rng.random() < 0.3 else None
            legs = parties.legs(price, Decimal(rng.randint(1, 10)), fee=fee)
            if rng.random() < 0.3:
                legs.reverse()  # the coordinator orders the locks itself
            if rng.random() < 0.05:  # bad input: a payout the ledger would refuse
                world.xrpl.refusing[parties.buyer_x] = rng.choice(REFUSALS)
            try:
                world.instruct(
                    parties,
                    legs,
                    price,
                    deadline_s=rng.choice([30, 60, 120, 300]),
                    settle_in_s=rng.choice([5, 10]) if rng.random() < 0.2 else None,
                )
            except (errors.InvalidInput, TransientConflict):
                self.report.outcomes["refused"] += 1
                continue
            finally:
                world.xrpl.refusing.pop(parties.buyer_x, None)
            roll = rng.random()
            if roll < 0.1:  # the buyer's money leaves after the instruction was checked
                amount = world.stellar.balance(parties.buyer, USDC) - price + Decimal(1)
                world.move_out(ChainName.STELLAR, parties.buyer, USDC, amount)
            elif roll < 0.2:  # the seller's bonds leave
                amount = world.xrpl.balance(parties.seller_x, BOND)
                world.move_out(ChainName.XRPL, parties.seller_x, BOND, amount)

    def step(self, sid: UUID) -> StepResult | None:
        self.report.steps += 1
        try:
            return self.world.coordinator.step(sid)
        except TransientConflict:
            self.report.faults["step_failed_40001"] += 1  # the worker runs it again later
            return None
        except Exception as exc:  # noqa: BLE001 - what Worker._drive does: log, retry later
            self.report.faults[f"step_error:{type(exc).__name__}"] += 1
            self.report.errors.append(repr(exc)[:300])
            return None

    def third_party(self) -> None:
        self.rng.choice(list(self.world.ledgers.values())).third_party(self.rng)

    def wear_off(self) -> None:
        for (c, kind), ticks in list(self.lasting.items()):
            ledger = self.world.ledgers[c]
            if ticks > 1:
                self.lasting[(c, kind)] = ticks - 1
                continue
            del self.lasting[(c, kind)]
            match kind:
                case "partition":
                    ledger.partitioned = False
                case "stall":
                    ledger.stalled = False
                case "contention":
                    ledger.contention = False
                case _:
                    ledger.lag = 0

    def refuse(
        self, live: list[UUID], snap: Mapping[UUID, Snapshot], *, committing_only: bool = False
    ) -> None:
        """A receiver starts refusing its payout: its issuer freezes or de-authorises
        the line, or it sets deposit authorisation (XRPL)."""
        rng, world = self.rng, self.world
        # the moments that matter most first: after COMMIT, then between lock and commit
        committing = [sid for sid in live if snap[sid].status == "COMMITTING"]
        locked = [sid for sid in live if "LOCKED" in snap[sid].legs or "HELD" in snap[sid].legs]
        if committing_only and not committing:
            return
        sid = rng.choice(committing or locked or live)
        p = world.parties_of[sid]
        chain, account = rng.choice(
            [
                (ChainName.XRPL, p.buyer_x),
                (ChainName.STELLAR, p.seller),
                (ChainName.STELLAR, p.fees),
            ]
        )
        how = rng.choice(REFUSALS) if chain is ChainName.XRPL else "frozen"
        world.ledgers[chain].refusing[account] = how
        at = snap[sid]
        if at.status == "LOCKING" and ("LOCKED" in at.legs or "HELD" in at.legs):
            self.report.faults["refuse_between_lock_and_commit"] += 1
        elif at.status == "COMMITTING":
            self.report.faults["refuse_after_commit"] += 1
        else:
            self.report.faults["refuse_elsewhen"] += 1

    def ledger_fault(self) -> None:
        rng = self.rng
        c = rng.choice(list(self.world.ledgers))
        ledger = self.world.ledgers[c]
        kind = rng.choice(["drop", "timeout", "reject", "hold", "surge", *_LASTING])
        self.report.faults[f"{c}:{kind}"] += 1
        match kind:
            case "drop" | "timeout":
                ledger.submit_faults.append((kind, None))
            case "reject":
                ledger.submit_faults.append(("reject", _MALFORMED_CODE[c]))
            case "hold":
                ledger.submit_faults.append(("hold", rng.randint(1, 12)))
            case "surge":  # the open ledger's fee climbs: several refusals in a row
                ledger.submit_faults.extend([("reject", _SURGE_CODE[c])] * rng.randint(2, 8))
            case "partition":
                ledger.partitioned = True
            case "stall":
                ledger.stalled = True
            case "contention":  # several signers of one account in one close
                ledger.contention = True
            case _:  # "lag": answers from a server up to a few ledgers behind
                ledger.lag = rng.randint(1, 4)
        if kind in _LASTING:
            self.lasting[(c, kind)] = rng.randint(2, 8)

    def with_faults(self) -> None:
        rng, world, clock = self.rng, self.world, self.env.clock
        for _ in range(rng.randint(20, 60)):
            self.wear_off()
            snap = world.snapshot()
            live = [sid for sid, at in snap.items() if at.status not in CLOSED]
            if not live:
                return
            roll = rng.random()
            if roll < 0.45:
                self.step(rng.choice(live))
            elif roll < 0.68:
                rng.choice(list(world.ledgers.values())).close()
            elif roll < 0.78:
                clock.advance(timedelta(seconds=rng.randint(0, 5)))
            elif roll < 0.80:
                # a jump past deadlines, and while committing past T_cancel: an engine
                # stopped for minutes (the protocol returns every leg if nothing is paid)
                clock.advance(timedelta(seconds=rng.choice([30, 150, 300])))
                committing = any(snap[sid].status == "COMMITTING" for sid in live)
                self.report.faults["clock_jump_committing" if committing else "clock_jump"] += 1
            elif roll < 0.815:
                try:
                    world.coordinator.request_force_cancel(
                        ADMIN, rng.choice(live), "simulated operator cancel"
                    )
                    self.report.faults["force_cancel"] += 1
                except (errors.TransitionNotAllowed, TransientConflict):
                    pass
            elif roll < 0.845:
                self.refuse(live, snap)
            elif roll < 0.875:
                self.third_party()
            else:
                self.ledger_fault()

    def to_rest(self) -> None:
        """Heal every fault of transport and time, then drive everything to rest. Time
        passes (a second a round while a commit is under way that nobody was told about,
        ten otherwise: unwinding waits for CancelAfter); others may still take a lock
        they are entitled to, and a receiver may still start refusing a payout (refusals
        are never healed: the protocol resolves them). A settlement that stays put,
        flagged, past T_cancel gets a person's retry once."""
        rng, world, clock = self.rng, self.world, self.env.clock
        for ledger in world.ledgers.values():
            ledger.clear_faults()
        self.lasting.clear()
        self.flaky._plan = lambda: 0  # the faults stop here
        desk = SettlementDesk(self.env.engine.db, clock)
        retried: set[UUID] = set()
        last: dict[UUID, Snapshot] | None = None
        quiet = 0
        for _ in range(600):
            snap = world.snapshot()
            live = [sid for sid, at in snap.items() if at.status not in CLOSED]
            if not live:
                return
            quiet = quiet + 1 if snap == last else 0
            last = snap
            late = clock.now() - timedelta(seconds=60)
            if quiet >= 12 and all(snap[sid].cancel_after < late for sid in live):
                fresh = [sid for sid in live if snap[sid].flagged and sid not in retried]
                if not fresh:
                    return  # what is left waits for a person outside the engine
                for sid in fresh:
                    desk.retry(ADMIN, sid, "simulated: the cause was looked at")
                    retried.add(sid)
                    self.report.faults["person_retry"] += 1
                quiet = 0
            if rng.random() < 0.3:  # sent before the engine's of this round: it may win
                self.third_party()
            for sid in live:
                self.step(sid)
            world.close()
            if rng.random() < 0.03:  # an issuer or a receiver acts while a commit runs
                self.refuse(live, snap, committing_only=True)
            busy = any(snap[sid].status == "COMMITTING" and not snap[sid].flagged for sid in live)
            clock.advance(timedelta(seconds=1 if busy else 10))

    def tally(self, settled: list[Settled]) -> None:
        outcomes = self.report.outcomes
        for x in settled:
            s = x.settlement
            outcomes[s.status] += 1
            if s.status == "UNWOUND" and s.decision == "COMMIT":
                outcomes["returned_after_commit"] += 1
            if s.status not in CLOSED and {"HELD", "REFUSED"} & {leg.state for leg in x.legs}:
                outcomes["waits_with_agent"] += 1
            for leg in x.legs:
                if leg.released_to is None:
                    continue
                whose = {leg.receiver: "receiver", leg.sender: "sender"}.get(leg.released_to)
                outcomes[f"released_to_{whose or 'agent'}"] += 1
        self.report.faults["db_40001_injected"] += self.flaky.injected
        for ledger in self.world.ledgers.values():
            self.report.faults.update({f"third_party:{k}": n for k, n in ledger.others.items()})


def run_fake_seed(env: SimEnv, seed: int) -> SeedReport:
    """Run one seed over two fake ledgers and check every invariant (raises
    ``AssertionError`` naming the seed)."""
    run = _SeedRun(env, seed)
    run.instruct_some()
    run.with_faults()
    run.to_rest()
    settled = run.world.check(f"seed {seed}")
    run.tally(settled)
    return run.report
