"""Stellar transaction results: what each code means for reliable submission.

``verdict()`` is the one exhaustive classification of stellar-core's transaction
result codes; mypy fails if a code added to stellar-sdk's XDR is left out. Operation
codes only name and explain a failure: stellar-sdk's per-operation result enums are
IntEnums whose values collide across operation types (PAYMENT_UNDERFUNDED and
CLAIM_CLAIMABLE_BALANCE_CANNOT_CLAIM are both -2), so they are always read together
with the operation type.

Names follow Horizon's ``extras.result_codes`` spelling (``tx_bad_seq``,
``op_does_not_exist``), so logs and audit entries read like Horizon's answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import assert_never

from stellar_sdk import xdr as x

T = x.TransactionResultCode
OP = x.OperationResultCode


class Verdict(Enum):
    """What a transaction result code says about the envelope that got it."""

    #: the transaction succeeded (only ever read from a ledger)
    SUCCESS = "success"
    #: operations failed: in a ledger (fee and sequence spent), or refused before one by
    #: the operations' own validity checks; deterministic either way, so final
    FAILED = "failed"
    #: refused before a ledger, and this envelope can never apply (its sequence is
    #: used, its signatures do not authorise it, it is malformed or too late)
    REFUSED = "refused"
    #: refused before a ledger for now; the same envelope could still apply if it is
    #: sent again before it expires (fees fall, the fee source is funded, its minimum
    #: time comes), or the node did not say (internal error): not final
    NOT_YET = "not_yet"


def verdict(code: x.TransactionResultCode) -> Verdict:
    """Classify every Stellar transaction result code."""
    match code:
        case T.txSUCCESS | T.txFEE_BUMP_INNER_SUCCESS:
            return Verdict.SUCCESS
        case T.txFAILED | T.txFEE_BUMP_INNER_FAILED:
            return Verdict.FAILED
        case (
            T.txTOO_LATE
            | T.txBAD_SEQ
            | T.txBAD_AUTH
            | T.txBAD_AUTH_EXTRA
            | T.txMISSING_OPERATION
            | T.txNO_ACCOUNT
            | T.txNOT_SUPPORTED
            | T.txMALFORMED
            | T.txSOROBAN_INVALID
            | T.txBAD_SPONSORSHIP
        ):
            return Verdict.REFUSED
        case (
            T.txTOO_EARLY
            | T.txINSUFFICIENT_FEE
            | T.txINSUFFICIENT_BALANCE
            | T.txBAD_MIN_SEQ_AGE_OR_GAP
            # a frozen ledger key (CAP-77) may be unfrozen before the envelope expires
            | T.txFROZEN_KEY_ACCESSED
            | T.txINTERNAL_ERROR
        ):
            return Verdict.NOT_YET
        case _:
            assert_never(code)


_TX_NAMES: dict[x.TransactionResultCode, str] = {
    # Horizon's spellings where they differ from the XDR member name
    T.txNO_ACCOUNT: "tx_no_source_account",
    T.txBAD_MIN_SEQ_AGE_OR_GAP: "tx_bad_minseq_age_or_gap",
}
_OUTER_OP_NAMES: dict[x.OperationResultCode, str] = {
    OP.opINNER: "op_inner",
    OP.opBAD_AUTH: "op_bad_auth",
    OP.opNO_ACCOUNT: "op_no_source_account",
    OP.opNOT_SUPPORTED: "op_not_supported",
    OP.opTOO_MANY_SUBENTRIES: "op_too_many_subentries",
    OP.opEXCEEDED_WORK_LIMIT: "op_exceeded_work_limit",
    OP.opTOO_MANY_SPONSORING: "op_too_many_sponsoring",
}
_OpType = x.OperationType
# The operations this adapter builds: the OperationResultTr field holding the inner
# result and the prefix of its code names (CLAIM_CLAIMABLE_BALANCE_DOES_NOT_EXIST).
_INNER: dict[x.OperationType, tuple[str, str]] = {
    _OpType.CREATE_CLAIMABLE_BALANCE: (
        "create_claimable_balance_result",
        "CREATE_CLAIMABLE_BALANCE_",
    ),
    _OpType.CLAIM_CLAIMABLE_BALANCE: ("claim_claimable_balance_result", "CLAIM_CLAIMABLE_BALANCE_"),
    _OpType.PAYMENT: ("payment_result", "PAYMENT_"),
}
# What a failed operation means for a DVP leg, keyed by (operation type, code name).
_EXPLANATIONS: dict[tuple[x.OperationType, str], str] = {
    (_OpType.CREATE_CLAIMABLE_BALANCE, "op_underfunded"): (
        "the sender does not hold the amount (or the native reserve for the lock)"
    ),
    (_OpType.CREATE_CLAIMABLE_BALANCE, "op_low_reserve"): (
        "the sender cannot fund the reserve of the claimable balance"
    ),
    (_OpType.CREATE_CLAIMABLE_BALANCE, "op_no_trust"): "the sender has no trustline for the asset",
    (_OpType.CREATE_CLAIMABLE_BALANCE, "op_not_authorized"): (
        "the issuer has not authorised the sender's trustline"
    ),
    (_OpType.CLAIM_CLAIMABLE_BALANCE, "op_does_not_exist"): (
        "the lock's claimable balance no longer exists: it was already claimed, by an "
        "earlier commit or unwind or by the sender after T_cancel"
    ),
    (_OpType.CLAIM_CLAIMABLE_BALANCE, "op_cannot_claim"): (
        "the agent is not a claimant whose predicate holds at this ledger's close time"
    ),
    (_OpType.CLAIM_CLAIMABLE_BALANCE, "op_no_trust"): "the agent has no trustline for the asset",
    (_OpType.CLAIM_CLAIMABLE_BALANCE, "op_line_full"): "the agent's trustline limit is too low",
    (_OpType.CLAIM_CLAIMABLE_BALANCE, "op_not_authorized"): (
        "the issuer has not authorised the agent's trustline"
    ),
    (_OpType.PAYMENT, "op_src_no_trust"): "the agent has no trustline for the asset",
    (_OpType.PAYMENT, "op_src_not_authorized"): (
        "the issuer has not authorised the agent's trustline"
    ),
    (_OpType.PAYMENT, "op_underfunded"): "the agent does not hold the amount to pay out",
    (_OpType.PAYMENT, "op_no_destination"): "the payee account does not exist",
    (_OpType.PAYMENT, "op_no_trust"): "the payee has no trustline for the asset",
    (_OpType.PAYMENT, "op_line_full"): "the payee's trustline limit is too low",
    (_OpType.PAYMENT, "op_not_authorized"): "the payee's trustline is not authorised",
}


@dataclass(frozen=True)
class ResultSummary:
    """A TransactionResult read for people and for the outcome's ``code``."""

    code: x.TransactionResultCode
    tx_name: str
    op_names: tuple[str, ...]
    explanation: str

    @property
    def verdict(self) -> Verdict:
        return verdict(self.code)

    @property
    def text(self) -> str:
        """``tx_failed: op_does_not_exist, op_success`` (Horizon's names)."""
        return f"{self.tx_name}: {', '.join(self.op_names)}" if self.op_names else self.tx_name


def summarize(result_xdr: str) -> ResultSummary:
    """Read a base64 TransactionResult (Horizon's ``result_xdr``)."""
    result = x.TransactionResult.from_xdr(result_xdr).result
    code: x.TransactionResultCode = result.code
    op_results = result.results
    if result.inner_result_pair is not None:  # a fee bump: the inner transaction decides
        code = result.inner_result_pair.result.result.code
        op_results = result.inner_result_pair.result.result.results
    named = [_op_name(op) for op in op_results or []]
    explanation = "; ".join(
        _EXPLANATIONS[(op_type, name)]
        for op_type, name in named
        if op_type is not None and (op_type, name) in _EXPLANATIONS
    )
    return ResultSummary(
        code=code,
        tx_name=tx_code_name(code),
        op_names=tuple(name for _, name in named),
        explanation=explanation,
    )


def tx_code_name(code: x.TransactionResultCode) -> str:
    named = _TX_NAMES.get(code)
    if named is not None:
        return named
    return "tx_" + code.name.removeprefix("tx").lower()


def _op_name(result: x.OperationResult) -> tuple[x.OperationType | None, str]:
    if result.code != OP.opINNER:
        return None, _OUTER_OP_NAMES[result.code]
    tr = result.tr
    assert tr is not None, "an opINNER result carries the operation's own result"
    field, prefix = _INNER.get(tr.type, ("", ""))
    inner = getattr(tr, field, None) if field else None
    if inner is None:  # an operation this adapter never builds
        return tr.type, f"op_{tr.type.name.lower()}_result"
    return tr.type, "op_" + inner.code.name.removeprefix(prefix).lower()
