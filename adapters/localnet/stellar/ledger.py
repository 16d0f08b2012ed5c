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
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import Enum

from stellar_sdk import StrKey
from stellar_sdk import xdr as x

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
MAX_TX_SET_SIZE = 100
GENESIS_LEDGER = 1
TX = x.TransactionResultCode


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


@dataclass
class ClosedLedger:
    record: LedgerRecord
    applied: list[TxRecord] = field(default_factory=list)
    # Queued transactions that the ledger refused, with the reason.
    dropped: dict[str, x.TransactionResult] = field(default_factory=dict)


def tx_result(
    fee_charged: int, code: x.TransactionResultCode, ops: list[x.OperationResult] | None = None
) -> x.TransactionResult:
    with_ops = code in (TX.txSUCCESS, TX.txFAILED)
    return x.TransactionResult(
        fee_charged=x.Int64(fee_charged),
        result=x.TransactionResultResult(code, results=(ops or []) if with_ops else None),
        ext=x.TransactionResultExt(0),
    )


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

    def __init__(self, passphrase: str, base_fee: int, base_reserve: int) -> None:
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
        self.ledgers.append(self._make_record(GENESIS_LEDGER, 0, bytes(32), [], []))

    # -- reading -------------------------------------------------------------

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
        """TransactionQueue::tryAdd: one transaction per source account at a time."""
        queued = self.queue.get(frame.source)
        if queued is not None:
            if queued.hash == frame.hash:
                return AddResult(AddStatus.DUPLICATE)
            if frame.seq_num < queued.seq_num:
                return AddResult(
                    AddStatus.ERROR, self._refusal(frame, Verdict(Stage.INVALID, TX.txBAD_SEQ))
                )
            return AddResult(AddStatus.TRY_AGAIN_LATER)
        verdict = check_valid(frame, self.entries, self.submission_view(upper_offset))
        if not verdict.ok:
            return AddResult(AddStatus.ERROR, self._refusal(frame, verdict))
        self.queue[frame.source] = frame
        return AddResult(AddStatus.PENDING)

    def _refusal(self, frame: TxFrame, verdict: Verdict) -> x.TransactionResult:
        # A refused transaction's result shows the fee it would have been charged.
        return tx_result(min_fee(frame, self.base_fee), verdict.code, verdict.op_results)

    # -- closing -----------------------------------------------------------------

    def close(self, close_time: int) -> ClosedLedger:
        """Close the next ledger at `close_time` (the caller keeps it increasing)."""
        sequence = self.last_closed.sequence + 1
        ledger = LedgerContext(sequence, close_time, self.base_fee, self.base_reserve)
        candidates = list(self.queue.values())
        self.queue.clear()

        dropped: dict[str, x.TransactionResult] = {}
        admitted: list[TxFrame] = []
        view = ValidationView(close_time, sequence, sequence, self.base_fee, self.base_reserve)
        for frame in candidates:
            verdict = check_valid(frame, self.entries, view)
            if verdict.ok:
                admitted.append(frame)
            else:
                dropped[frame.hash_hex] = self._refusal(frame, verdict)

        fees = {frame.hash_hex: self._charge_fee(frame) for frame in admitted}

        records: list[TxRecord] = []
        results: list[x.TransactionResult] = []
        for order, frame in enumerate(admitted, start=1):
            before = self.entries
            fee = fees[frame.hash_hex]
            result, self.entries = self._apply(frame, ledger, fee)
            self._stamp_modified(before, sequence)
            participants = self.entries.changed_accounts(before) | {frame.source}
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
        return ClosedLedger(record, records, dropped)

    def _charge_fee(self, frame: TxFrame) -> int:
        """Fee phase: base fee per operation, capped by the declared fee and the balance."""
        account = self.entries.accounts[frame.source]
        fee = min(frame.fee, min_fee(frame, self.base_fee), account.balance)
        self.entries = self.entries.fork()
        self.entries.accounts[frame.source] = replace(account, balance=account.balance - fee)
        self.fee_pool += fee
        return fee

    def _apply(
        self, frame: TxFrame, ledger: LedgerContext, fee: int
    ) -> tuple[x.TransactionResult, Entries]:
        entries = self.entries.fork()
        view = ValidationView(
            ledger.close_time,
            ledger.sequence,
            ledger.sequence,
            ledger.base_fee,
            ledger.base_reserve,
        )
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
            return tx_result(fee, verdict.code), entries
        if not signatures_ok:
            return tx_result(fee, TX.txFAILED, op_results), entries
        if not checker.all_used():
            return tx_result(fee, TX.txBAD_AUTH_EXTRA), entries

        success, op_results, after = self._apply_operations(frame, ledger, entries, op_results)
        if success:
            return tx_result(fee, TX.txSUCCESS, op_results), after
        return tx_result(fee, TX.txFAILED, op_results), entries

    @staticmethod
    def _apply_operations(
        frame: TxFrame,
        ledger: LedgerContext,
        entries: Entries,
        op_results: list[x.OperationResult],
    ) -> tuple[bool, list[x.OperationResult], Entries]:
        """Apply every operation on a fork; the fork is only meaningful if all succeed."""
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
                working = attempt
            else:
                success = False
        return success, op_results, working

    @staticmethod
    def _remove_one_time_signers(frame: TxFrame, entries: Entries) -> None:
        key = StrKey.encode_pre_auth_tx(frame.hash)
        for account_id in {frame.source, *(frame.op_source(op) for op in frame.operations)}:
            account = entries.accounts.get(account_id)
            if account is None:
                continue
            kept = tuple(s for s in account.signers if s.key != key)
            if len(kept) != len(account.signers):
                entries.accounts[account_id] = replace(
                    account, signers=kept, num_subentries=account.num_subentries - 1
                )

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
        successful = result.result.code == TX.txSUCCESS
        meta = _minimal_meta(len(frame.operations) if successful else 0)
        return TxRecord(
            hash=frame.hash_hex,
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
            fee_account=frame.source,
            fee_charged=result.fee_charged.int64,
            max_fee=frame.fee,
            operation_count=len(frame.operations),
            participants=tuple(sorted(participants)),
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
            max_tx_set_size=x.Uint32(MAX_TX_SET_SIZE),
            skip_list=[x.Hash(bytes(32))] * 4,
            ext=x.LedgerHeaderExt(0),
        )
        header_bytes = header.to_xdr_bytes()
        successful = sum(1 for r in results if r.result.code == TX.txSUCCESS)
        applied_ops = sum(
            len(t.operations)
            for t, r in zip(txs, results, strict=True)
            if r.result.code == TX.txSUCCESS
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
            max_tx_set_size=MAX_TX_SET_SIZE,
            protocol_version=PROTOCOL_VERSION,
            header_xdr=header.to_xdr(),
        )
