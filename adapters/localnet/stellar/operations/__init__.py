"""The operations this node applies, keyed by XDR operation type.

Every handler offers the same three steps stellar-core's OperationFrame has:
`threshold` (which signing weight the source must reach), `check_valid` (stateless
checks run before a ledger: a failure there refuses the transaction without a fee),
and `apply` (checks against ledger state, then the change, on a forked entry set).
Operation types not listed here answer op_not_supported.
"""

from __future__ import annotations

from typing import Protocol

from stellar_sdk import xdr as x

from adapters.localnet.stellar.operations.accounts import (
    AccountMerge,
    CreateAccount,
    ManageData,
    SetOptions,
)
from adapters.localnet.stellar.operations.base import (
    LedgerContext,
    OpContext,
    ThresholdLevel,
    inner_result,
    is_success,
    outer_result,
)
from adapters.localnet.stellar.operations.claimable_balances import (
    ClaimClaimableBalanceOp,
    CreateClaimableBalanceOp,
)
from adapters.localnet.stellar.operations.clawback import Clawback, ClawbackClaimableBalance
from adapters.localnet.stellar.operations.path_payments import (
    PathPaymentStrictReceive,
    PathPaymentStrictSend,
)
from adapters.localnet.stellar.operations.payments import ChangeTrust, Payment
from adapters.localnet.stellar.operations.trust_flags import AllowTrust, SetTrustLineFlags

__all__ = [
    "HANDLERS",
    "LedgerContext",
    "OpContext",
    "OperationHandler",
    "ThresholdLevel",
    "is_success",
    "not_supported",
    "placeholder_result",
]


class OperationHandler(Protocol):
    op_type: x.OperationType

    def threshold(self, body: x.OperationBody) -> ThresholdLevel: ...

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None: ...

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult: ...


HANDLERS: dict[x.OperationType, OperationHandler] = {
    handler.op_type: handler
    for handler in (
        CreateAccount(),
        Payment(),
        SetOptions(),
        ChangeTrust(),
        AccountMerge(),
        ManageData(),
        CreateClaimableBalanceOp(),
        ClaimClaimableBalanceOp(),
        PathPaymentStrictReceive(),
        PathPaymentStrictSend(),
        SetTrustLineFlags(),
        AllowTrust(),
        Clawback(),
        ClawbackClaimableBalance(),
    )
}


def not_supported() -> x.OperationResult:
    return outer_result(x.OperationResultCode.opNOT_SUPPORTED)


def placeholder_result(op_type: x.OperationType) -> x.OperationResult:
    """The zero-coded result an operation of the later-added types holds before it is
    checked (validation's placeholders). Path payments' success arm needs a body."""
    OT = x.OperationType
    zero_last = x.SimplePaymentResult(
        x.AccountID(x.PublicKey(x.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, x.Uint256(bytes(32)))),
        x.Asset(x.AssetType.ASSET_TYPE_NATIVE),
        x.Int64(0),
    )
    inner: object
    if op_type == OT.PATH_PAYMENT_STRICT_RECEIVE:
        inner = x.PathPaymentStrictReceiveResult(
            x.PathPaymentStrictReceiveResultCode(0),
            success=x.PathPaymentStrictReceiveResultSuccess([], zero_last),
        )
    elif op_type == OT.PATH_PAYMENT_STRICT_SEND:
        inner = x.PathPaymentStrictSendResult(
            x.PathPaymentStrictSendResultCode(0),
            success=x.PathPaymentStrictSendResultSuccess([], zero_last),
        )
    elif op_type == OT.SET_TRUST_LINE_FLAGS:
        inner = x.SetTrustLineFlagsResult(x.SetTrustLineFlagsResultCode(0))
    elif op_type == OT.ALLOW_TRUST:
        inner = x.AllowTrustResult(x.AllowTrustResultCode(0))
    elif op_type == OT.CLAWBACK:
        inner = x.ClawbackResult(x.ClawbackResultCode(0))
    elif op_type == OT.CLAWBACK_CLAIMABLE_BALANCE:
        inner = x.ClawbackClaimableBalanceResult(x.ClawbackClaimableBalanceResultCode(0))
    else:
        raise ValueError(f"no handler for {op_type!r}")
    return inner_result(op_type, inner)
