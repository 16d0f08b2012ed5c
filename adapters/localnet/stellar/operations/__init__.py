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
    is_success,
    outer_result,
)
from adapters.localnet.stellar.operations.claimable_balances import (
    ClaimClaimableBalanceOp,
    CreateClaimableBalanceOp,
)
from adapters.localnet.stellar.operations.payments import ChangeTrust, Payment

__all__ = [
    "HANDLERS",
    "LedgerContext",
    "OpContext",
    "OperationHandler",
    "ThresholdLevel",
    "is_success",
    "not_supported",
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
    )
}


def not_supported() -> x.OperationResult:
    return outer_result(x.OperationResultCode.opNOT_SUPPORTED)
