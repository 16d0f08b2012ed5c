"""Clawback and ClawbackClaimableBalance: an issuer taking its asset back (CAP-35;
stellar-core ClawbackOpFrame and ClawbackClaimableBalanceOpFrame).

Clawback works only on trust lines that carry TRUSTLINE_CLAWBACK_ENABLED_FLAG, which a
line gets at creation when its issuer has AUTH_CLAWBACK_ENABLED; it ignores the line's
authorisation, so an issuer can claw back from a frozen line. A claimable balance is
clawback-enabled when its creator's line was. Both are MEDIUM threshold operations
(OperationFrame's default), unlike the trust flag operations.
"""

from __future__ import annotations

from stellar_sdk import xdr as x

from adapters.localnet.stellar.operations.base import (
    OpContext,
    ThresholdLevel,
    add_trust_balance,
    inner_result,
)
from adapters.localnet.stellar.operations.claimable_balances import remove_claimable_balance
from adapters.localnet.stellar.state import (
    CLAIMABLE_BALANCE_CLAWBACK_ENABLED_FLAG,
    TRUSTLINE_CLAWBACK_ENABLED_FLAG,
)
from adapters.localnet.stellar.xdrutil import asset_from_xdr, muxed_to_account_id

_CB = x.ClawbackResultCode
_CCB = x.ClawbackClaimableBalanceResultCode


class Clawback:
    op_type = x.OperationType.CLAWBACK

    @staticmethod
    def _result(code: x.ClawbackResultCode) -> x.OperationResult:
        return inner_result(x.OperationType.CLAWBACK, x.ClawbackResult(code))

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        return ThresholdLevel.MEDIUM

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        """ClawbackOpFrame::doCheckValid: every failure is MALFORMED."""
        op = body.clawback_op
        assert op is not None
        malformed = self._result(_CB.CLAWBACK_MALFORMED)
        # Core compares the muxed account with the plain source, so only an unmuxed
        # `from` can equal it; a muxed self then finds no trust line (NO_TRUST).
        plain_from = op.from_.type == x.CryptoKeyType.KEY_TYPE_ED25519
        if plain_from and muxed_to_account_id(op.from_) == source:
            return malformed
        if op.amount.int64 < 1:
            return malformed
        try:
            asset = asset_from_xdr(op.asset)
        except ValueError:
            return malformed
        if asset is None or asset.issuer != source:
            return malformed
        return None

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        op = body.clawback_op
        assert op is not None
        asset = asset_from_xdr(op.asset)
        assert asset is not None
        key = (muxed_to_account_id(op.from_), asset)
        line = ctx.entries.trustlines.get(key)
        if line is None:
            return self._result(_CB.CLAWBACK_NO_TRUST)
        if not line.flags & TRUSTLINE_CLAWBACK_ENABLED_FLAG:
            return self._result(_CB.CLAWBACK_NOT_CLAWBACK_ENABLED)
        # addBalanceSkipAuthorization: the line's authorisation does not matter.
        clawed = add_trust_balance(line, -op.amount.int64)
        if clawed is None:
            return self._result(_CB.CLAWBACK_UNDERFUNDED)
        ctx.entries.trustlines[key] = clawed
        return self._result(_CB.CLAWBACK_SUCCESS)


class ClawbackClaimableBalance:
    op_type = x.OperationType.CLAWBACK_CLAIMABLE_BALANCE

    @staticmethod
    def _result(code: x.ClawbackClaimableBalanceResultCode) -> x.OperationResult:
        return inner_result(
            x.OperationType.CLAWBACK_CLAIMABLE_BALANCE, x.ClawbackClaimableBalanceResult(code)
        )

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        return ThresholdLevel.MEDIUM

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        return None  # ClawbackClaimableBalanceOpFrame::doCheckValid accepts everything

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        op = body.clawback_claimable_balance_op
        assert op is not None
        balance_id = op.balance_id.to_xdr_bytes().hex()
        balance = ctx.entries.claimable_balances.get(balance_id)
        if balance is None:
            return self._result(_CCB.CLAWBACK_CLAIMABLE_BALANCE_DOES_NOT_EXIST)
        if balance.asset is None or balance.asset.issuer != ctx.source:
            return self._result(_CCB.CLAWBACK_CLAIMABLE_BALANCE_NOT_ISSUER)
        if not balance.flags & CLAIMABLE_BALANCE_CLAWBACK_ENABLED_FLAG:
            return self._result(_CCB.CLAWBACK_CLAIMABLE_BALANCE_NOT_CLAWBACK_ENABLED)
        remove_claimable_balance(ctx.entries, balance_id)
        return self._result(_CCB.CLAWBACK_CLAIMABLE_BALANCE_SUCCESS)
