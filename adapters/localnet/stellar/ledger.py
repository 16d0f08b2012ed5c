"""The ledger: entries, the transaction queue, and closing a ledger.

Closing follows stellar-core's order:
1. drop queued transactions that are no longer valid for this ledger (time bounds
   passed, sequence taken): they never reach the ledger, so they cost nothing;
2. charge every remaining transaction's fee (base fee x operations, at most the
   declared fee) before applying any of them;
3. apply each transaction: re-check it against the state left by the previous ones,
   consume its sequence number, then apply its operations all-or-nothing.
A transaction that fails in step 3 is still in the ledger: its fee and its sequence
number are spent (tx_failed), which is what lets a client treat the result as final.

Surge pricing (stellar-core SurgePricingUtils, TxSetFrame, TransactionQueue): a ledger
holds at most `max_tx_set_size` operations (by default MAX_TX_SET_SIZE, testnet's; None
lifts the limit for load generators that put thousands of operations in one ledger).
When more wait, the highest bids per operation go in (one transaction per account is
queued, so sequence order holds) and every included transaction pays the lowest included
bid per operation, not the network base fee; the rest stay queued for a later ledger,
and are dropped after QUEUE_PENDING_DEPTH ledgers. The queue holds QUEUE_SIZE_MULTIPLIER
ledgers' worth of operations: when full, a new transaction must outbid the cheapest
queued ones (which it evicts) or is refused tx_insufficient_fee with the fee that would
have got in.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from bisect import bisect_left
from dataclasses import dataclass, field, replace
from enum import Enum
from fractions import Fraction

from stellar_sdk import StrKey
from stellar_sdk import xdr as x

from adapters.localnet.stellar.effect_records import Effect, OpChange, op_effects
from adapters.localnet.stellar.operation_records import OpRow, operation_rows
from adapters.localnet.stellar.operations import OpContext, is_success
from adapters.localnet.stellar.operations.base import LedgerContext
from adapters.localnet.stellar.signatures import SignatureChecker
from adapters.localnet.stellar.state import Account, Entries, LedgerRecord, TxRecord
from adapters.localnet.stellar.transaction import TxFrame
from adapters.localnet.stellar.validation import (
    Stage,
    ValidationView,
    Verdict,
    check_op_signature,
    check_valid,
    common_valid,
    handler_for,
    min_fee,
    placeholder_results,
)
from adapters.localnet.stellar.xdrutil import network_id, root_keypair

PROTOCOL_VERSION = 23
TOTAL_COINS = 100_000_000_000 * 10_000_000  # 100 billion XLM, all held by the root at genesis
# testnet's maxTxSetSize: a node's default limit, and what headers show when none is set
MAX_TX_SET_SIZE = 100
QUEUE_SIZE_MULTIPLIER = 2  # core TRANSACTION_QUEUE_SIZE_MULTIPLIER: queue = 2 ledgers of ops
QUEUE_PENDING_DEPTH = 4  # core TRANSACTION_QUEUE_TIMEOUT_LEDGERS: ledgers a tx may wait
REPLACE_BY_FEE_MULTIPLIER = 10  # core TransactionQueue::FEE_MULTIPLIER
SNAPSHOT_LEDGERS = 16  # past ledgers' entries kept for the lagging-server fault
GENESIS_LEDGER = 1
TX = x.TransactionResultCode
log = logging.getLogger(__name__)


class AddStatus(Enum):
    """stellar-core TransactionQueue::AddResultCode."""

    PENDING = "PENDING"
    DUPLICATE = "DUPLICATE"
    TRY_AGAIN_LATER = "TRY_AGAIN_LATER"
    ERROR = "ERROR"


@dataclass(frozen=True)
class AddResult:
    status: AddStatus
    result: x.TransactionResult | None = None
    # Queued transactions this one pushed out (by fee): they will not be applied.
    evicted: tuple[str, ...] = ()


@dataclass
class ClosedLedger:
    record: LedgerRecord
    applied: list[TxRecord] = field(default_factory=list)
    # Queued transactions that the ledger refused, with the reason.
    dropped: dict[str, x.TransactionResult] = field(default_factory=dict)
    # Queued transactions that waited too long for room in a ledger and were dropped.
    evicted: list[str] = field(default_factory=list)


def tx_result(
    fee_charged: int, code: x.TransactionResultCode, ops: list[x.OperationResult] | None = None
) -> x.TransactionResult:
    with_ops = code in (TX.txSUCCESS, TX.txFAILED)
    return x.TransactionResult(
        fee_charged=x.Int64(fee_charged),
        result=x.TransactionResultResult(code, results=(ops or []) if with_ops else None),
        ext=x.TransactionResultExt(0),
    )


def frame_result(
    frame: TxFrame,
    fee_charged: int,
    code: x.TransactionResultCode,
    ops: list[x.OperationResult] | None = None,
    inner_code: x.TransactionResultCode | None = None,
) -> x.TransactionResult:
    """A transaction's result; for a fee bump whose inner transaction was checked or
    applied, the outer code with the inner transaction's hash and result."""
    if code not in (TX.txFEE_BUMP_INNER_SUCCESS, TX.txFEE_BUMP_INNER_FAILED):
        return tx_result(fee_charged, code, ops)
    assert inner_code is not None
    with_ops = inner_code in (TX.txSUCCESS, TX.txFAILED)
    inner = x.InnerTransactionResult(
        # The inner transaction is not charged: the outer fee source paid.
        fee_charged=x.Int64(0),
        result=x.InnerTransactionResultResult(
            inner_code, results=(ops or []) if with_ops else None
        ),
        ext=x.InnerTransactionResultExt(0),
    )
    return x.TransactionResult(
        fee_charged=x.Int64(fee_charged),
        result=x.TransactionResultResult(
            code,
            inner_result_pair=x.InnerTransactionResultPair(x.Hash(frame.hash), inner),
        ),
        ext=x.TransactionResultExt(0),
    )


def is_successful(result: x.TransactionResult) -> bool:
    return result.result.code in (TX.txSUCCESS, TX.txFEE_BUMP_INNER_SUCCESS)


def _derive_effects(changes: list[OpChange]) -> list[list[Effect]]:
    """Each operation's effects. They only describe what happened: a bug deriving them
    must not stop the ledger from closing, so it leaves that operation without any."""
    derived = []
    for change in changes:
        try:
            derived.append(op_effects(change))
        except Exception:
            log.exception("deriving the effects of a %s operation failed", change.op.body.type)
            derived.append([])
    return derived


def _fee_rate(frame: TxFrame) -> Fraction:
    """The bid per operation, which surge pricing ranks by."""
    return Fraction(frame.full_fee_stroops, max(1, frame.op_count))


def _minimal_meta(op_count: int) -> x.TransactionMeta:
    """A valid TransactionMeta v3 without ledger-entry changes: Horizon's
    result_meta_xdr must decode, and no client of this node reads the changes."""
    empty = x.LedgerEntryChanges([])
    return x.TransactionMeta(
        3,
        v3=x.TransactionMetaV3(
            ext=x.ExtensionPoint(0),
            tx_changes_before=empty,
            operations=[x.OperationMeta(empty) for _ in range(op_count)],
            tx_changes_after=empty,
            soroban_meta=None,
        ),
    )


class LocalLedger:
    """All ledger state of the node. Not thread-safe: the node serialises access."""

    def __init__(
        self,
        passphrase: str,
        base_fee: int,
        base_reserve: int,
        max_tx_set_size: int | None = None,
    ) -> None:
        if max_tx_set_size is not None and max_tx_set_size < 1:
            raise ValueError("max_tx_set_size must be >= 1")
        # None: every valid queued transaction goes into the next ledger (no surge pricing).
        self.max_tx_set_size = max_tx_set_size
        self.passphrase = passphrase
        self.network_id = network_id(passphrase)
        self.base_fee = base_fee
        self.base_reserve = base_reserve
        self.root_account_id = root_keypair(passphrase).public_key
        self.entries = Entries()
        self.entries.accounts[self.root_account_id] = Account(
            account_id=self.root_account_id,
            balance=TOTAL_COINS,
            seq_num=0,
            last_modified_ledger=GENESIS_LEDGER,
        )
        self.fee_pool = 0
        self.ledgers: list[LedgerRecord] = []
        self.transactions: dict[str, TxRecord] = {}
        self.tx_hashes: list[str] = []  # in ledger order
        self.queue: dict[str, TxFrame] = {}  # source account -> its one queued transaction
        self.queue_age: dict[str, int] = {}  # queued tx id -> ledgers it has waited
        self.inner_hashes: dict[str, str] = {}  # a fee bump's inner hash -> its outer hash
        # Horizon's effects of each successful transaction, per operation.
        self.effects: dict[str, list[list[Effect]]] = {}
        # Each transaction's operations, parsed from its envelope on first read and kept:
        # pages and streams read them again and again.
        self.op_rows: dict[str, list[OpRow]] = {}
        # Entries as each recent ledger closed: what a lagging server still shows.
        # Safe to share: entries are forked before any change.
        self.snapshots: dict[int, Entries] = {GENESIS_LEDGER: self.entries}
        self.ledgers.append(self._make_record(GENESIS_LEDGER, 0, bytes(32), [], []))

    # -- reading -------------------------------------------------------------

    @property
    def header_max_tx_set_size(self) -> int:
        return MAX_TX_SET_SIZE if self.max_tx_set_size is None else self.max_tx_set_size

    @property
    def last_closed(self) -> LedgerRecord:
        return self.ledgers[-1]

    def submission_view(self, upper_offset: int) -> ValidationView:
        lcl = self.last_closed
        return ValidationView(
            close_time=lcl.closed_at,
            bounds_ledger=lcl.sequence + 1,
            header_ledger=lcl.sequence,
            base_fee=self.base_fee,
            base_reserve=self.base_reserve,
            upper_offset=upper_offset,
        )

    # -- the queue -------------------------------------------------------------

    def try_add(self, frame: TxFrame, upper_offset: int) -> AddResult:
        """TransactionQueue::tryAdd: one transaction per source account at a time (a fee
        bump of the queued one may replace it by paying ten times its rate), and room
        in the queue, made by evicting lower bids, before the validity checks."""
        queued = self.queue.get(frame.source)
        if queued is not None:
            if queued.id_hex == frame.id_hex:
                return AddResult(AddStatus.DUPLICATE)
            if frame.seq_num < queued.seq_num:
                return AddResult(
                    AddStatus.ERROR, self._refusal(frame, Verdict(Stage.INVALID, TX.txBAD_SEQ))
                )
            if frame.fee_bump is None or frame.seq_num != queued.seq_num:
                return AddResult(AddStatus.TRY_AGAIN_LATER)
            needed = _replace_by_fee_minimum(frame, queued)
            if needed is not None:
                verdict = Verdict(Stage.INVALID, TX.txINSUFFICIENT_FEE, fee_needed=needed)
                return AddResult(AddStatus.ERROR, self._refusal(frame, verdict))
        room = self._room_for(frame, queued)
        if isinstance(room, int):
            verdict = Verdict(Stage.INVALID, TX.txINSUFFICIENT_FEE, fee_needed=room)
            return AddResult(AddStatus.ERROR, self._refusal(frame, verdict))
        if room is None:
            return AddResult(AddStatus.TRY_AGAIN_LATER)  # larger than the whole queue
        verdict = check_valid(frame, self.entries, self.submission_view(upper_offset))
        if not verdict.ok:
            return AddResult(AddStatus.ERROR, self._refusal(frame, verdict))
        evicted = [*room, *([queued] if queued is not None else [])]
        for out in evicted:
            self.queue.pop(out.source, None)
            self.queue_age.pop(out.id_hex, None)
        self.queue[frame.source] = frame
        return AddResult(AddStatus.PENDING, evicted=tuple(out.id_hex for out in evicted))

    def _room_for(self, frame: TxFrame, replacing: TxFrame | None) -> list[TxFrame] | int | None:
        """TxQueueLimiter::canAddTx: the queued transactions to evict so `frame` fits
        (lowest bids per operation first, each strictly below `frame`'s bid); or the
        fee that would have outbid them; or None when it cannot fit at all."""
        if self.max_tx_set_size is None:
            return []
        capacity = QUEUE_SIZE_MULTIPLIER * self.max_tx_set_size
        if frame.op_count > capacity:
            return None
        others = [f for f in self.queue.values() if f is not replacing]
        excess = sum(f.op_count for f in others) + frame.op_count - capacity
        if excess <= 0:
            return []
        evict: list[TxFrame] = []
        freed = 0
        for cheapest in sorted(others, key=lambda f: (_fee_rate(f), f.id_hex)):
            if _fee_rate(cheapest) >= _fee_rate(frame):
                # core computeBetterFee: one stroop above the cheapest's rate, for our ops.
                return cheapest.full_fee_stroops * frame.op_count // cheapest.op_count + 1
            evict.append(cheapest)
            freed += cheapest.op_count
            if freed >= excess:
                return evict
        # `frame` alone fits the queue, so evicting every other transaction frees enough.
        raise AssertionError("unreachable: the queued operations cover the excess")

    def _refusal(self, frame: TxFrame, verdict: Verdict) -> x.TransactionResult:
        # A refused transaction's result shows the fee it would have been charged, or
        # for an insufficient bid the fee that would have been accepted.
        fee = min_fee(frame, self.base_fee) if verdict.fee_needed is None else verdict.fee_needed
        return frame_result(frame, fee, verdict.code, verdict.op_results, verdict.inner_code)

    def stale_view(self, ledgers_behind: int) -> LocalLedger:
        """The ledger as a server `ledgers_behind` ledgers behind sees it: entries,
        ledgers and history up to that ledger (no further back than the snapshots
        kept). A read-only copy sharing unchanged parts with this ledger."""
        target = self.stale_sequence(ledgers_behind)
        view = copy.copy(self)
        view.entries = self.snapshots[target]
        view.ledgers = self.ledgers[:target]
        cut = len(self.tx_hashes)
        while cut and self.transactions[self.tx_hashes[cut - 1]].ledger > target:
            cut -= 1
        view.tx_hashes = self.tx_hashes[:cut]
        view.transactions = dict(self.transactions)
        view.inner_hashes = dict(self.inner_hashes)
        for tx_hash in self.tx_hashes[cut:]:
            record = view.transactions.pop(tx_hash)
            view.inner_hashes.pop(record.inner_hash, None)
        view.queue = {}
        return view

    def stale_sequence(self, ledgers_behind: int) -> int:
        """The last ledger a server `ledgers_behind` ledgers behind has closed."""
        return max(self.last_closed.sequence - ledgers_behind, min(self.snapshots))

    def operation_rows(self, tx: TxRecord) -> list[OpRow]:
        """The operations of `tx` (see `operation_records.operation_rows`), parsed once."""
        rows = self.op_rows.get(tx.hash)
        if rows is None:
            rows = self.op_rows[tx.hash] = operation_rows(tx)
        return rows

    def transaction_at(self, sequence: int, order: int) -> TxRecord | None:
        """The transaction applied `order`-th in ledger `sequence`. History is kept in
        ledger order, so it is found by bisection."""

        def position(tx_hash: str) -> tuple[int, int]:
            tx = self.transactions[tx_hash]
            return tx.ledger, tx.application_order

        at = bisect_left(self.tx_hashes, (sequence, order), key=position)
        if at < len(self.tx_hashes) and position(self.tx_hashes[at]) == (sequence, order):
            return self.transactions[self.tx_hashes[at]]
        return None

    def find_transaction(self, tx_hash: str) -> TxRecord | None:
        """A transaction by its hash, or a fee bump by its inner transaction's hash."""
        record = self.transactions.get(tx_hash)
        if record is None and tx_hash in self.inner_hashes:
            record = self.transactions.get(self.inner_hashes[tx_hash])
        return record

    # -- closing -----------------------------------------------------------------

    def close(self, close_time: int) -> ClosedLedger:
        """Close the next ledger at `close_time` (the caller keeps it increasing)."""
        sequence = self.last_closed.sequence + 1
        ledger = LedgerContext(sequence, close_time, self.base_fee, self.base_reserve)
        candidates = list(self.queue.values())
        self.queue.clear()
        # Only what goes back into the queue keeps an age: nothing else is remembered.
        ages, self.queue_age = self.queue_age, {}

        dropped: dict[str, x.TransactionResult] = {}
        valid: list[TxFrame] = []
        view = _applying_view(ledger)
        for frame in candidates:
            verdict = check_valid(frame, self.entries, view)
            if verdict.ok:
                valid.append(frame)
            else:
                dropped[frame.id_hex] = self._refusal(frame, verdict)
        admitted, waiting, surge_base_fee = self._select_tx_set(valid)
        evicted = self._requeue(waiting, ages)

        fees = {frame.id_hex: self._charge_fee(frame, surge_base_fee) for frame in admitted}

        records: list[TxRecord] = []
        results: list[x.TransactionResult] = []
        for order, frame in enumerate(admitted, start=1):
            before = self.entries
            fee = fees[frame.id_hex]
            result, self.entries, changes = self._apply(frame, ledger, fee)
            if changes:
                self.effects[frame.id_hex] = _derive_effects(changes)
            self._stamp_modified(before, sequence)
            participants = self.entries.changed_accounts(before) | {
                frame.source,
                frame.fee_source,
            }
            results.append(result)
            records.append(
                self._tx_record(
                    frame,
                    result=result,
                    sequence=sequence,
                    order=order,
                    close_time=close_time,
                    participants=participants,
                )
            )

        record = self._make_record(
            sequence, close_time, bytes.fromhex(self.last_closed.hash), admitted, results
        )
        self.ledgers.append(record)
        for tx in records:
            self.transactions[tx.hash] = tx
            self.tx_hashes.append(tx.hash)
            if tx.inner_hash:
                self.inner_hashes[tx.inner_hash] = tx.hash
        self.snapshots[sequence] = self.entries
        self.snapshots.pop(sequence - SNAPSHOT_LEDGERS, None)
        return ClosedLedger(record, records, dropped, evicted)

    def _select_tx_set(self, valid: list[TxFrame]) -> tuple[list[TxFrame], list[TxFrame], int]:
        """(included, left waiting, base fee per operation) for the next ledger.
        Over capacity, the best bids per operation go in, skipping any that no longer
        fit, and the base fee is the lowest included bid (SurgePricingPriorityQueue,
        TxSetUtils: the lane "had a transaction not fitting")."""
        limit = self.max_tx_set_size
        if limit is None or sum(f.op_count for f in valid) <= limit:
            return valid, [], self.base_fee
        room = limit
        chosen: set[str] = set()
        # Ties are broken by hash: core shuffles them, a test wants to know.
        for frame in sorted(valid, key=lambda f: (-_fee_rate(f), f.id_hex)):
            if frame.op_count <= room:
                chosen.add(frame.id_hex)
                room -= frame.op_count
        included = [f for f in valid if f.id_hex in chosen]
        waiting = [f for f in valid if f.id_hex not in chosen]
        # The queue holds two ledgers' worth, so a transaction larger than a ledger can
        # be all that waits: then nothing goes in and it waits like any other.
        lowest_bid = min((f.full_fee_stroops // max(1, f.op_count) for f in included), default=0)
        return included, waiting, max(self.base_fee, lowest_bid)

    def _requeue(self, waiting: list[TxFrame], ages: dict[str, int]) -> list[str]:
        """Put back what did not fit, one ledger older than in `ages`; drop what has
        waited QUEUE_PENDING_DEPTH ledgers."""
        evicted: list[str] = []
        for frame in waiting:
            age = ages.get(frame.id_hex, 0) + 1
            if age >= QUEUE_PENDING_DEPTH:
                evicted.append(frame.id_hex)
            else:
                self.queue_age[frame.id_hex] = age
                self.queue[frame.source] = frame
        return evicted

    def _charge_fee(self, frame: TxFrame, base_fee: int) -> int:
        """Fee phase: the ledger's base fee per operation, capped by the bid and the
        balance, taken from the fee source (a fee bump's outer source)."""
        account = self.entries.accounts[frame.fee_source]
        fee = min(frame.full_fee_stroops, min_fee(frame, base_fee), account.balance)
        self.entries = self.entries.fork()
        self.entries.accounts[frame.fee_source] = replace(account, balance=account.balance - fee)
        self.fee_pool += fee
        return fee

    def _apply(
        self, frame: TxFrame, ledger: LedgerContext, fee: int
    ) -> tuple[x.TransactionResult, Entries, list[OpChange]]:
        if frame.fee_bump is None:
            return self._apply_tx(frame, ledger, fee)
        # FeeBumpTransactionFrame::apply: nothing of the outer envelope is checked again
        # (the queue did, and the fee is paid); the fee source's one-time signer of the
        # outer hash is spent, then the inner transaction applies as usual.
        self.entries = self.entries.fork()
        _remove_signer(
            self.entries, frame.fee_source, StrKey.encode_pre_auth_tx(frame.fee_bump.hash)
        )
        inner, entries, changes = self._apply_tx(frame, ledger, fee)
        code = TX.txFEE_BUMP_INNER_SUCCESS if is_successful(inner) else TX.txFEE_BUMP_INNER_FAILED
        result = frame_result(frame, fee, code, inner.result.results, inner.result.code)
        return result, entries, changes

    def _apply_tx(
        self, frame: TxFrame, ledger: LedgerContext, fee: int
    ) -> tuple[x.TransactionResult, Entries, list[OpChange]]:
        entries = self.entries.fork()
        view = _applying_view(ledger)
        checker = SignatureChecker(frame.hash, frame.signatures)
        verdict = common_valid(frame, entries, view, checker, applying=True)
        if verdict.stage >= Stage.INVALID_UPDATE_SEQ:
            account = entries.accounts[frame.source]
            entries.accounts[frame.source] = replace(
                account,
                seq_num=frame.seq_num,
                seq_ledger=ledger.sequence,
                seq_time=ledger.close_time,
            )
        op_results = placeholder_results(frame)
        signatures_ok = verdict.ok
        if verdict.ok:
            for index, op in enumerate(frame.operations):
                problem = check_op_signature(frame, op, entries, checker, applying=True)
                if problem is not None:
                    op_results[index] = problem
                    signatures_ok = False
        # Pre-authorised transaction signers are one-time: spent even if the tx fails.
        self._remove_one_time_signers(frame, entries)
        if not verdict.ok:
            return tx_result(fee, verdict.code), entries, []
        if not signatures_ok:
            return tx_result(fee, TX.txFAILED, op_results), entries, []
        if not checker.all_used():
            return tx_result(fee, TX.txBAD_AUTH_EXTRA), entries, []

        changes: list[OpChange] = []
        success, op_results, after = self._apply_operations(
            frame, ledger, entries, op_results, changes
        )
        if success:
            return tx_result(fee, TX.txSUCCESS, op_results), after, changes
        return tx_result(fee, TX.txFAILED, op_results), entries, []

    @staticmethod
    def _apply_operations(
        frame: TxFrame,
        ledger: LedgerContext,
        entries: Entries,
        op_results: list[x.OperationResult],
        changes: list[OpChange],
    ) -> tuple[bool, list[x.OperationResult], Entries]:
        """Apply every operation on a fork; the fork is only meaningful if all succeed.
        Each successful operation's entries before and after go to `changes`."""
        working = entries.fork()
        success = True
        for index, op in enumerate(frame.operations):
            source = frame.op_source(op)
            attempt = working.fork()
            handler = handler_for(op)
            assert handler is not None  # check_valid refused unsupported operations
            if source not in attempt.accounts:
                result = x.OperationResult(x.OperationResultCode.opNO_ACCOUNT)
            else:
                result = handler.check_valid(op.body, source) or handler.apply(
                    OpContext(attempt, ledger, frame.source, frame.seq_num, index, source), op.body
                )
            op_results[index] = result
            # Later operations still run (and report codes) after a failure, but
            # nothing they do is kept: the transaction is all-or-nothing.
            if is_success(result):
                changes.append(OpChange(op, source, working, attempt, result))
                working = attempt
            else:
                success = False
        return success, op_results, working

    @staticmethod
    def _remove_one_time_signers(frame: TxFrame, entries: Entries) -> None:
        key = StrKey.encode_pre_auth_tx(frame.hash)
        for account_id in {frame.source, *(frame.op_source(op) for op in frame.operations)}:
            _remove_signer(entries, account_id, key)

    def _stamp_modified(self, before: Entries, sequence: int) -> None:
        """Set last_modified_ledger on every entry this transaction touched."""
        e = self.entries
        for key, account in e.accounts.items():
            if before.accounts.get(key) is not account:
                e.accounts[key] = replace(account, last_modified_ledger=sequence)
        for tkey, line in e.trustlines.items():
            if before.trustlines.get(tkey) is not line:
                e.trustlines[tkey] = replace(line, last_modified_ledger=sequence)
        for dkey, data in e.data.items():
            if before.data.get(dkey) is not data:
                e.data[dkey] = replace(data, last_modified_ledger=sequence)
        for bkey, balance in e.claimable_balances.items():
            if before.claimable_balances.get(bkey) is not balance:
                e.claimable_balances[bkey] = replace(balance, last_modified_ledger=sequence)

    def _tx_record(
        self,
        frame: TxFrame,
        *,
        result: x.TransactionResult,
        sequence: int,
        order: int,
        close_time: int,
        participants: set[str],
    ) -> TxRecord:
        successful = is_successful(result)
        meta = _minimal_meta(len(frame.operations) if successful else 0)
        return TxRecord(
            hash=frame.id_hex,
            ledger=sequence,
            application_order=order,
            closed_at=close_time,
            envelope_xdr=frame.envelope_b64,
            result_xdr=result.to_xdr(),
            result_meta_xdr=meta.to_xdr(),
            fee_meta_xdr=x.LedgerEntryChanges([]).to_xdr(),
            successful=successful,
            source_account=frame.source,
            source_account_sequence=frame.seq_num,
            fee_account=frame.fee_source,
            fee_charged=result.fee_charged.int64,
            max_fee=frame.full_fee_stroops,
            operation_count=len(frame.operations),
            participants=tuple(sorted(participants)),
            inner_hash=frame.hash_hex if frame.fee_bump is not None else "",
        )

    def _make_record(
        self,
        sequence: int,
        close_time: int,
        prev_hash: bytes,
        txs: list[TxFrame],
        results: list[x.TransactionResult],
    ) -> LedgerRecord:
        tx_set_hash = hashlib.sha256(prev_hash + b"".join(t.hash for t in txs)).digest()
        result_hash = hashlib.sha256(b"".join(r.to_xdr_bytes() for r in results)).digest()
        header = x.LedgerHeader(
            ledger_version=x.Uint32(PROTOCOL_VERSION),
            previous_ledger_hash=x.Hash(prev_hash),
            scp_value=x.StellarValue(
                tx_set_hash=x.Hash(tx_set_hash),
                close_time=x.TimePoint(x.Uint64(close_time)),
                upgrades=[],
                ext=x.StellarValueExt(x.StellarValueType.STELLAR_VALUE_BASIC),
            ),
            tx_set_result_hash=x.Hash(result_hash),
            # There is no bucket list here; a zero hash says so rather than faking one.
            bucket_list_hash=x.Hash(bytes(32)),
            ledger_seq=x.Uint32(sequence),
            total_coins=x.Int64(TOTAL_COINS),
            fee_pool=x.Int64(self.fee_pool),
            inflation_seq=x.Uint32(0),
            id_pool=x.Uint64(0),
            base_fee=x.Uint32(self.base_fee),
            base_reserve=x.Uint32(self.base_reserve),
            max_tx_set_size=x.Uint32(self.header_max_tx_set_size),
            skip_list=[x.Hash(bytes(32))] * 4,
            ext=x.LedgerHeaderExt(0),
        )
        header_bytes = header.to_xdr_bytes()
        successful = sum(1 for r in results if is_successful(r))
        applied_ops = sum(
            len(t.operations) for t, r in zip(txs, results, strict=True) if is_successful(r)
        )
        return LedgerRecord(
            sequence=sequence,
            hash=hashlib.sha256(header_bytes).hexdigest(),
            prev_hash=prev_hash.hex(),
            closed_at=close_time,
            successful_transaction_count=successful,
            failed_transaction_count=len(results) - successful,
            operation_count=applied_ops,
            tx_set_operation_count=sum(len(t.operations) for t in txs),
            total_coins=TOTAL_COINS,
            fee_pool=self.fee_pool,
            base_fee=self.base_fee,
            base_reserve=self.base_reserve,
            max_tx_set_size=self.header_max_tx_set_size,
            protocol_version=PROTOCOL_VERSION,
            header_xdr=header.to_xdr(),
        )


def _applying_view(ledger: LedgerContext) -> ValidationView:
    """What the rules read while `ledger` closes: its own sequence and close time."""
    return ValidationView(
        ledger.close_time, ledger.sequence, ledger.sequence, ledger.base_fee, ledger.base_reserve
    )


def _remove_signer(entries: Entries, account_id: str, key: str) -> None:
    """Remove signer `key` from the account, if both exist (a spent one-time signer)."""
    account = entries.accounts.get(account_id)
    if account is None:
        return
    kept = tuple(s for s in account.signers if s.key != key)
    if len(kept) != len(account.signers):
        entries.accounts[account_id] = replace(
            account, signers=kept, num_subentries=account.num_subentries - 1
        )


def _replace_by_fee_minimum(frame: TxFrame, queued: TxFrame) -> int | None:
    """TransactionQueue::canReplaceByFee: a fee bump replaces the queued transaction of
    the same sequence only at ten times its bid per operation; else the fee needed."""
    needed_n = queued.full_fee_stroops * REPLACE_BY_FEE_MULTIPLIER * frame.op_count
    if frame.full_fee_stroops * queued.op_count >= needed_n:
        return None
    return -(-needed_n // queued.op_count)
