"""Transaction-level rules: stellar-core's commonValid and checkValid, in their order.

The same checks run twice: when a transaction is submitted (against the last closed
ledger; a failure refuses it: no fee, no sequence number used) and again when a
ledger applies it (a failure then is recorded in the ledger and the fee is kept).
`Stage` records how far a transaction got, because that decides what applying an
invalid transaction still does: past the sequence check, the sequence is consumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from stellar_sdk import xdr as x

from adapters.localnet.stellar.operations import (
    HANDLERS,
    OperationHandler,
    ThresholdLevel,
    not_supported,
    placeholder_result,
)
from adapters.localnet.stellar.operations.base import available_balance
from adapters.localnet.stellar.signatures import SignatureChecker, account_signers
from adapters.localnet.stellar.state import Account, Entries, Signer
from adapters.localnet.stellar.transaction import TxFrame
from adapters.localnet.stellar.xdrutil import signer_key_str

MAX_OPS_PER_TX = 100
TX = x.TransactionResultCode


class Stage(IntEnum):
    """ValidationType in stellar-core's TransactionFrame."""

    INVALID = 0
    INVALID_UPDATE_SEQ = 1  # sequence is right: applying consumes it
    INVALID_POST_AUTH = 2
    MAYBE_VALID = 3


@dataclass(frozen=True)
class ValidationView:
    """What the rules read from the ledger header.

    Before a ledger: close_time is the last close time, bounds_ledger the next ledger,
    header_ledger the last one, and upper_offset how far the next close may be ahead.
    When applying, all three describe the ledger being closed and upper_offset is 0.
    """

    close_time: int
    bounds_ledger: int
    header_ledger: int
    base_fee: int
    base_reserve: int
    upper_offset: int = 0


@dataclass
class Verdict:
    stage: Stage
    code: x.TransactionResultCode
    op_results: list[x.OperationResult] | None = None
    # A fee bump whose inner transaction is refused: the inner transaction's own code
    # (the outer code is then tx_fee_bump_inner_failed).
    inner_code: x.TransactionResultCode | None = None
    # The fee a refusal reports when it is not the minimum fee: the fee that would
    # have been admitted (core setInsufficientFeeErrorWithFeeCharged).
    fee_needed: int | None = None

    @property
    def ok(self) -> bool:
        return self.code == TX.txSUCCESS


def min_fee(frame: TxFrame, base_fee: int) -> int:
    """The fee the fee source is charged at `base_fee` per operation (a fee bump's
    outer envelope counts as one more operation)."""
    return base_fee * max(1, frame.op_count)


def inner_min_fee(frame: TxFrame, base_fee: int) -> int:
    return base_fee * max(1, len(frame.operations))


def _needed_weight(account: Account, level: ThresholdLevel) -> int:
    return {
        ThresholdLevel.LOW: account.low_threshold,
        ThresholdLevel.MEDIUM: account.med_threshold,
        ThresholdLevel.HIGH: account.high_threshold,
    }[level]


def _is_bad_seq(frame: TxFrame, account_seq: int, header_ledger: int) -> bool:
    # A transaction may never use a ledger's starting sequence (ledger << 32).
    if frame.seq_num == header_ledger << 32:
        return True
    min_seq = frame.min_seq_num
    if min_seq is not None:
        return account_seq < min_seq or account_seq >= frame.seq_num
    return account_seq + 1 != frame.seq_num


def _extra_signers_ok(frame: TxFrame, checker: SignatureChecker) -> bool:
    for key in frame.extra_signers:
        try:
            signer = Signer(signer_key_str(key), 1)
        except ValueError:
            return False  # signed-payload signers are not modelled here
        if not checker.check([signer], 1):
            return False
    return True


def common_valid(
    frame: TxFrame,
    entries: Entries,
    view: ValidationView,
    checker: SignatureChecker,
    *,
    applying: bool,
) -> Verdict:
    ops = frame.operations
    if not ops:
        return Verdict(Stage.INVALID, TX.txMISSING_OPERATION)
    if len(ops) > MAX_OPS_PER_TX:
        return Verdict(Stage.INVALID, TX.txMALFORMED)
    tb, lb = frame.time_bounds, frame.ledger_bounds
    if (tb and tb.min_time > view.close_time) or (lb and lb.min_ledger > view.bounds_ledger):
        return Verdict(Stage.INVALID, TX.txTOO_EARLY)
    too_late_by_time = tb and tb.max_time and tb.max_time < view.close_time + view.upper_offset
    too_late_by_ledger = lb and lb.max_ledger and lb.max_ledger <= view.bounds_ledger
    if too_late_by_time or too_late_by_ledger:
        return Verdict(Stage.INVALID, TX.txTOO_LATE)
    # The inner transaction of a fee bump is not charged: its own fee is not checked
    # (core checkValid with chargeFee false); the outer fee is, in fee_bump_valid.
    charged = frame.fee_bump is None
    if charged and frame.fee < min_fee(frame, view.base_fee):
        return Verdict(Stage.INVALID, TX.txINSUFFICIENT_FEE)
    source = entries.accounts.get(frame.source)
    if source is None:
        return Verdict(Stage.INVALID, TX.txNO_ACCOUNT)
    if _is_bad_seq(frame, source.seq_num, view.header_ledger):
        return Verdict(Stage.INVALID, TX.txBAD_SEQ)

    min_age, min_gap = frame.min_seq_age, frame.min_seq_ledger_gap
    if (
        min_age > view.close_time
        or view.close_time - min_age < source.seq_time
        or min_gap > view.bounds_ledger
        or view.bounds_ledger - min_gap < source.seq_ledger
    ):
        return Verdict(Stage.INVALID_UPDATE_SEQ, TX.txBAD_MIN_SEQ_AGE_OR_GAP)
    if not checker.check(account_signers(source), source.low_threshold) or not _extra_signers_ok(
        frame, checker
    ):
        return Verdict(Stage.INVALID_UPDATE_SEQ, TX.txBAD_AUTH)
    # When applying, the fee was already taken in the fee phase.
    if charged and not applying and available_balance(source, view.base_reserve) < frame.fee:
        return Verdict(Stage.INVALID_POST_AUTH, TX.txINSUFFICIENT_BALANCE)
    return Verdict(Stage.MAYBE_VALID, TX.txSUCCESS)


def handler_for(op: x.Operation) -> OperationHandler | None:
    return HANDLERS.get(op.body.type)


def placeholder_results(frame: TxFrame) -> list[x.OperationResult]:
    """What an operation result holds before it is checked: opINNER with a zero code.
    Horizon shows these as op_success next to the operation that failed."""
    results = []
    for op in frame.operations:
        handler = handler_for(op)
        results.append(not_supported() if handler is None else placeholder_result(op.body.type))
    return results


def check_op_signature(
    frame: TxFrame,
    op: x.Operation,
    entries: Entries,
    checker: SignatureChecker,
    *,
    applying: bool,
) -> x.OperationResult | None:
    """OperationFrame::checkSignature: the op source must reach the op's threshold.
    Before a ledger, a missing *explicit* op source only needs its own key's signature
    (the transaction may create it); when applying, it must exist."""
    handler = handler_for(op)
    if handler is None:
        return not_supported()
    source_id = frame.op_source(op)
    account = entries.accounts.get(source_id)
    if account is not None:
        if not checker.check(
            account_signers(account), _needed_weight(account, handler.threshold(op.body))
        ):
            return x.OperationResult(x.OperationResultCode.opBAD_AUTH)
        return None
    if applying or op.source_account is None:
        return x.OperationResult(x.OperationResultCode.opNO_ACCOUNT)
    if not checker.check([Signer(source_id, 1)], 0):
        return x.OperationResult(x.OperationResultCode.opBAD_AUTH)
    return None


def fee_bump_valid(
    frame: TxFrame,
    entries: Entries,
    view: ValidationView,
    checker: SignatureChecker,
) -> Verdict:
    """The outer checks of a fee bump, in stellar-core's order
    (FeeBumpTransactionFrame::commonValidPreSeqNum, then commonValid)."""
    bump = frame.fee_bump
    assert bump is not None
    outer_min = min_fee(frame, view.base_fee)
    if bump.fee < outer_min:
        return Verdict(Stage.INVALID, TX.txINSUFFICIENT_FEE)
    # The bid per operation must not fall below the inner transaction's own bid.
    inner_min = inner_min_fee(frame, view.base_fee)
    if bump.fee * inner_min < frame.fee * outer_min:
        needed = -(-(frame.fee * outer_min) // inner_min)  # rounded up
        return Verdict(Stage.INVALID, TX.txINSUFFICIENT_FEE, fee_needed=needed)
    fee_source = entries.accounts.get(bump.fee_source)
    if fee_source is None:
        return Verdict(Stage.INVALID, TX.txNO_ACCOUNT)
    if not checker.check(account_signers(fee_source), fee_source.low_threshold):
        return Verdict(Stage.INVALID, TX.txBAD_AUTH)
    if available_balance(fee_source, view.base_reserve) < bump.fee:
        return Verdict(Stage.INVALID, TX.txINSUFFICIENT_BALANCE)
    return Verdict(Stage.MAYBE_VALID, TX.txSUCCESS)


def check_valid(frame: TxFrame, entries: Entries, view: ValidationView) -> Verdict:
    """The checks a transaction must pass to enter the queue (TransactionFrame::checkValid,
    or FeeBumpTransactionFrame::checkValid: outer checks, every outer signature used,
    then the inner transaction's)."""
    if frame.fee_bump is None:
        return _check_valid_tx(frame, entries, view)
    outer_checker = SignatureChecker(frame.fee_bump.hash, frame.fee_bump.signatures)
    outer = fee_bump_valid(frame, entries, view, outer_checker)
    if not outer.ok:
        return outer
    if not outer_checker.all_used():
        return Verdict(Stage.MAYBE_VALID, TX.txBAD_AUTH_EXTRA)
    inner = _check_valid_tx(frame, entries, view)
    if not inner.ok:
        return Verdict(inner.stage, TX.txFEE_BUMP_INNER_FAILED, inner.op_results, inner.code)
    return inner


def _check_valid_tx(frame: TxFrame, entries: Entries, view: ValidationView) -> Verdict:
    checker = SignatureChecker(frame.hash, frame.signatures)
    verdict = common_valid(frame, entries, view, checker, applying=False)
    if not verdict.ok:
        return verdict
    results = placeholder_results(frame)
    for index, op in enumerate(frame.operations):
        problem = check_op_signature(frame, op, entries, checker, applying=False)
        if problem is None:
            handler = handler_for(op)
            assert handler is not None
            problem = handler.check_valid(op.body, frame.op_source(op))
        if problem is not None:
            results[index] = problem
            return Verdict(Stage.MAYBE_VALID, TX.txFAILED, results)
    if not checker.all_used():
        return Verdict(Stage.MAYBE_VALID, TX.txBAD_AUTH_EXTRA)
    return verdict
