"""Payment and ChangeTrust.

stellar-core implements Payment as a path payment with an empty path (the transfer is
shared with path_payments.py), so its checks run in that order: the destination exists,
the destination can receive, then the source can pay. The issuer of a credit asset
needs no trust line on either side: paying it burns the asset, and it pays by issuing.
"""

from __future__ import annotations

from dataclasses import replace

from stellar_sdk import xdr as x

from adapters.localnet.stellar.operations.base import (
    OpContext,
    ThresholdLevel,
    can_add_subentries,
    inner_result,
    outer_result,
)
from adapters.localnet.stellar.operations.path_payments import Problem, Transfer, strict_receive
from adapters.localnet.stellar.state import (
    AUTH_CLAWBACK_ENABLED_FLAG,
    AUTH_REQUIRED_FLAG,
    TRUSTLINE_AUTHORIZED_FLAG,
    TRUSTLINE_CLAWBACK_ENABLED_FLAG,
    TrustLine,
)
from adapters.localnet.stellar.xdrutil import asset_from_xdr, muxed_to_account_id

_PAY = x.PaymentResultCode
_CT = x.ChangeTrustResultCode
# Payment is a strict-receive path payment with an empty path and send max = amount,
# so over-send-max and too-few-offers cannot happen.
_PAYMENT_CODES: dict[Problem, x.PaymentResultCode] = {
    Problem.NO_DESTINATION: _PAY.PAYMENT_NO_DESTINATION,
    Problem.NO_TRUST: _PAY.PAYMENT_NO_TRUST,
    Problem.NOT_AUTHORIZED: _PAY.PAYMENT_NOT_AUTHORIZED,
    Problem.LINE_FULL: _PAY.PAYMENT_LINE_FULL,
    Problem.SRC_NO_TRUST: _PAY.PAYMENT_SRC_NO_TRUST,
    Problem.SRC_NOT_AUTHORIZED: _PAY.PAYMENT_SRC_NOT_AUTHORIZED,
    Problem.UNDERFUNDED: _PAY.PAYMENT_UNDERFUNDED,
}


class Payment:
    op_type = x.OperationType.PAYMENT

    @staticmethod
    def _result(code: x.PaymentResultCode) -> x.OperationResult:
        return inner_result(x.OperationType.PAYMENT, x.PaymentResult(code))

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        return ThresholdLevel.MEDIUM

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        op = body.payment_op
        assert op is not None
        if op.amount.int64 <= 0:
            return self._result(_PAY.PAYMENT_MALFORMED)
        try:
            asset_from_xdr(op.asset)
        except ValueError:
            return self._result(_PAY.PAYMENT_MALFORMED)
        return None

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        op = body.payment_op
        assert op is not None
        asset = asset_from_xdr(op.asset)
        amount = op.amount.int64
        destination = muxed_to_account_id(op.destination)
        if asset is None and destination == ctx.source:
            return self._result(_PAY.PAYMENT_SUCCESS)  # a no-op, as in stellar-core

        transfer = Transfer(
            send_asset=asset,
            destination=destination,
            dest_asset=asset,
            path=(),
            amount=amount,
            bound=amount,
        )
        problem = strict_receive(ctx, transfer)
        if problem is not None:
            return self._result(_PAYMENT_CODES[problem])
        return self._result(_PAY.PAYMENT_SUCCESS)


class ChangeTrust:
    op_type = x.OperationType.CHANGE_TRUST

    @staticmethod
    def _result(code: x.ChangeTrustResultCode) -> x.OperationResult:
        return inner_result(x.OperationType.CHANGE_TRUST, x.ChangeTrustResult(code))

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        return ThresholdLevel.MEDIUM

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        op = body.change_trust_op
        assert op is not None
        if op.line.type == x.AssetType.ASSET_TYPE_POOL_SHARE:
            # Liquidity pools are outside this node's scope; say so rather than misbehave.
            return outer_result(x.OperationResultCode.opNOT_SUPPORTED)
        if op.limit.int64 < 0:
            return self._result(_CT.CHANGE_TRUST_MALFORMED)
        try:
            asset = asset_from_xdr(op.line)
        except ValueError:
            return self._result(_CT.CHANGE_TRUST_MALFORMED)
        if asset is None or asset.issuer == source:
            return self._result(_CT.CHANGE_TRUST_MALFORMED)
        return None

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        op = body.change_trust_op
        assert op is not None
        asset = asset_from_xdr(op.line)
        assert asset is not None
        limit = op.limit.int64
        key = (ctx.source, asset)
        account = ctx.source_account()
        line = ctx.entries.trustlines.get(key)
        if line is not None:
            if limit < line.balance:
                return self._result(_CT.CHANGE_TRUST_INVALID_LIMIT)
            if limit == 0:
                del ctx.entries.trustlines[key]
                ctx.entries.accounts[ctx.source] = replace(
                    account, num_subentries=account.num_subentries - 1
                )
                return self._result(_CT.CHANGE_TRUST_SUCCESS)
            if asset.issuer not in ctx.entries.accounts:
                return self._result(_CT.CHANGE_TRUST_NO_ISSUER)
            ctx.entries.trustlines[key] = replace(line, limit=limit)
            return self._result(_CT.CHANGE_TRUST_SUCCESS)

        if limit == 0:
            return self._result(_CT.CHANGE_TRUST_INVALID_LIMIT)
        issuer = ctx.entries.accounts.get(asset.issuer)
        if issuer is None:
            return self._result(_CT.CHANGE_TRUST_NO_ISSUER)
        flags = 0 if issuer.flags & AUTH_REQUIRED_FLAG else TRUSTLINE_AUTHORIZED_FLAG
        if issuer.flags & AUTH_CLAWBACK_ENABLED_FLAG:
            flags |= TRUSTLINE_CLAWBACK_ENABLED_FLAG
        problem = can_add_subentries(account, 1, ctx.ledger.base_reserve)
        if problem == "too_many_subentries":
            return outer_result(x.OperationResultCode.opTOO_MANY_SUBENTRIES)
        if problem == "low_reserve":
            return self._result(_CT.CHANGE_TRUST_LOW_RESERVE)
        ctx.entries.trustlines[key] = TrustLine(ctx.source, asset, 0, limit, flags)
        ctx.entries.accounts[ctx.source] = replace(
            account, num_subentries=account.num_subentries + 1
        )
        return self._result(_CT.CHANGE_TRUST_SUCCESS)
