"""The operations this node applies, keyed by XDR operation type.

Every handler offers the same three steps stellar-core's OperationFrame has:
`threshold` (which signing weight the source must reach), `check_valid` (stateless
checks run before a ledger: a failure there refuses the transaction without a fee),
and `apply` (checks against ledger state, then the change, on a forked entry set).
Operation types not listed here answer op_not_supported.
"""

from __future__ import annotations

from collections.abc import Callable
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


_OT = x.OperationType
_ZERO_LAST = x.SimplePaymentResult(
    x.AccountID(x.PublicKey(x.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, x.Uint256(bytes(32)))),
    x.Asset(x.AssetType.ASSET_TYPE_NATIVE),
    x.Int64(0),
)
_ZERO_BALANCE_ID = x.ClaimableBalanceID(
    x.ClaimableBalanceIDType.CLAIMABLE_BALANCE_ID_TYPE_V0, v0=x.Hash(bytes(32))
)
#: Each supported operation's result body with code 0; success arms that carry a
#: body get a zero one.
_PLACEHOLDER_BODIES: dict[x.OperationType, Callable[[], object]] = {
    _OT.CREATE_ACCOUNT: lambda: x.CreateAccountResult(x.CreateAccountResultCode(0)),
    _OT.PAYMENT: lambda: x.PaymentResult(x.PaymentResultCode(0)),
    _OT.SET_OPTIONS: lambda: x.SetOptionsResult(x.SetOptionsResultCode(0)),
    _OT.CHANGE_TRUST: lambda: x.ChangeTrustResult(x.ChangeTrustResultCode(0)),
    _OT.ACCOUNT_MERGE: lambda: x.AccountMergeResult(x.AccountMergeResultCode(0), x.Int64(0)),
    _OT.MANAGE_DATA: lambda: x.ManageDataResult(x.ManageDataResultCode(0)),
    _OT.CREATE_CLAIMABLE_BALANCE: lambda: x.CreateClaimableBalanceResult(
        x.CreateClaimableBalanceResultCode(0), _ZERO_BALANCE_ID
    ),
    _OT.CLAIM_CLAIMABLE_BALANCE: lambda: x.ClaimClaimableBalanceResult(
        x.ClaimClaimableBalanceResultCode(0)
    ),
    _OT.PATH_PAYMENT_STRICT_RECEIVE: lambda: x.PathPaymentStrictReceiveResult(
        x.PathPaymentStrictReceiveResultCode(0),
        success=x.PathPaymentStrictReceiveResultSuccess([], _ZERO_LAST),
    ),
    _OT.PATH_PAYMENT_STRICT_SEND: lambda: x.PathPaymentStrictSendResult(
        x.PathPaymentStrictSendResultCode(0),
        success=x.PathPaymentStrictSendResultSuccess([], _ZERO_LAST),
    ),
    _OT.SET_TRUST_LINE_FLAGS: lambda: x.SetTrustLineFlagsResult(x.SetTrustLineFlagsResultCode(0)),
    _OT.ALLOW_TRUST: lambda: x.AllowTrustResult(x.AllowTrustResultCode(0)),
    _OT.CLAWBACK: lambda: x.ClawbackResult(x.ClawbackResultCode(0)),
    _OT.CLAWBACK_CLAIMABLE_BALANCE: lambda: x.ClawbackClaimableBalanceResult(
        x.ClawbackClaimableBalanceResultCode(0)
    ),
}


def placeholder_result(op_type: x.OperationType) -> x.OperationResult:
    """The zero-coded result an operation holds before it is checked (validation's
    placeholders). Raises ValueError for a type without a handler."""
    body = _PLACEHOLDER_BODIES.get(op_type)
    if body is None:
        raise ValueError(f"no handler for {op_type!r}")
    return inner_result(op_type, body())
