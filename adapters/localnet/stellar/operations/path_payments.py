"""PathPaymentStrictReceive and PathPaymentStrictSend, and the transfer they share with
Payment (stellar-core applies a Payment as a strict-receive path payment with an empty
path; PathPaymentOpFrameBase holds the shared balance updates).

This node has no order book, so a path payment can only move one asset: every step of
the path where the asset changes needs offers, and with none to cross stellar-core's
convert answers TOO_FEW_OFFERS. A path that repeats the same asset crosses nothing and
succeeds, as in core (equal neighbouring assets are skipped).

The order of checks decides the result code when several things are wrong, so it is
core's: strict receive credits the destination before it debits the source; strict
send debits the source first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from itertools import pairwise

from stellar_sdk import xdr as x

from adapters.localnet.stellar.operations.base import (
    OpContext,
    ThresholdLevel,
    add_native,
    available_balance,
    credit_asset,
    inner_result,
)
from adapters.localnet.stellar.xdrutil import (
    Asset,
    account_id_xdr,
    asset_from_xdr,
    asset_to_xdr,
    muxed_to_account_id,
)


class Problem(Enum):
    """Why a transfer failed; each operation maps these onto its own result codes."""

    NO_DESTINATION = "no_destination"
    NO_TRUST = "no_trust"
    NOT_AUTHORIZED = "not_authorized"
    LINE_FULL = "line_full"
    SRC_NO_TRUST = "src_no_trust"
    SRC_NOT_AUTHORIZED = "src_not_authorized"
    UNDERFUNDED = "underfunded"
    TOO_FEW_OFFERS = "too_few_offers"
    CONSTRAINT = "constraint"  # over send max (strict receive) / under dest min (strict send)


@dataclass(frozen=True)
class Transfer:
    """A path payment reduced to plain values (amounts in stroops)."""

    send_asset: Asset
    destination: str
    dest_asset: Asset
    path: tuple[Asset, ...]
    amount: int  # dest_amount (strict receive) or send_amount (strict send)
    bound: int  # send_max (strict receive) or dest_min (strict send)

    def crosses_offers(self) -> bool:
        """True if some step changes asset, which needs the order book."""
        hops = (self.send_asset, *self.path, self.dest_asset)
        return any(a != b for a, b in pairwise(hops))

    def bypasses_destination_check(self) -> bool:
        """shouldBypassIssuerCheck: paying an asset straight back to its issuer never
        looks the destination up, so an issuer can always be repaid."""
        return (
            self.dest_asset is not None
            and not self.path
            and self.send_asset == self.dest_asset
            and self.dest_asset.issuer == self.destination
        )


def _credit_destination(ctx: OpContext, transfer: Transfer, amount: int) -> Problem | None:
    """updateDestBalance."""
    if transfer.dest_asset is None:
        receiver = ctx.entries.accounts[transfer.destination]
        credited = add_native(receiver, amount, ctx.ledger.base_reserve)
        if credited is None:
            return Problem.LINE_FULL
        ctx.entries.accounts[transfer.destination] = credited
        return None
    problem = credit_asset(ctx.entries, transfer.destination, transfer.dest_asset, amount)
    return {
        None: None,
        "no_trust": Problem.NO_TRUST,
        "not_authorized": Problem.NOT_AUTHORIZED,
        "limit": Problem.LINE_FULL,
    }[problem]


def _debit_source(ctx: OpContext, transfer: Transfer, amount: int) -> Problem | None:
    """updateSourceBalance: a trust line only authorised to maintain liabilities cannot
    send, exactly as one with no authorisation at all."""
    if transfer.send_asset is None:
        source = ctx.source_account()
        if amount > available_balance(source, ctx.ledger.base_reserve):
            return Problem.UNDERFUNDED
        debited = add_native(source, -amount, ctx.ledger.base_reserve)
        assert debited is not None
        ctx.entries.accounts[ctx.source] = debited
        return None
    problem = credit_asset(ctx.entries, ctx.source, transfer.send_asset, -amount)
    return {
        None: None,
        "no_trust": Problem.SRC_NO_TRUST,
        "not_authorized": Problem.SRC_NOT_AUTHORIZED,
        "limit": Problem.UNDERFUNDED,
    }[problem]


def _destination_missing(ctx: OpContext, transfer: Transfer) -> bool:
    return (
        not transfer.bypasses_destination_check()
        and transfer.destination not in ctx.entries.accounts
    )


def strict_receive(ctx: OpContext, transfer: Transfer) -> Problem | None:
    """PathPaymentStrictReceiveOpFrame::doApply without offers: the destination gets
    exactly `amount`, the source pays the same (nothing converts)."""
    if _destination_missing(ctx, transfer):
        return Problem.NO_DESTINATION
    problem = _credit_destination(ctx, transfer, transfer.amount)
    if problem is not None:
        return problem
    if transfer.crosses_offers():
        return Problem.TOO_FEW_OFFERS
    if transfer.amount > transfer.bound:
        return Problem.CONSTRAINT
    return _debit_source(ctx, transfer, transfer.amount)


def strict_send(ctx: OpContext, transfer: Transfer) -> Problem | None:
    """PathPaymentStrictSendOpFrame::doApply without offers: the source pays exactly
    `amount`, which reaches the destination unconverted."""
    if _destination_missing(ctx, transfer):
        return Problem.NO_DESTINATION
    problem = _debit_source(ctx, transfer, transfer.amount)
    if problem is not None:
        return problem
    if transfer.crosses_offers():
        return Problem.TOO_FEW_OFFERS
    if transfer.amount < transfer.bound:
        return Problem.CONSTRAINT
    return _credit_destination(ctx, transfer, transfer.amount)


def _assets_valid(*assets: x.Asset) -> bool:
    """isAssetValid for every asset of the operation."""
    try:
        for asset in assets:
            asset_from_xdr(asset)
    except ValueError:
        return False
    return True


def _last_payment(transfer: Transfer) -> x.SimplePaymentResult:
    """The success result's `last`: what reached the destination (no offers crossed)."""
    return x.SimplePaymentResult(
        account_id_xdr(transfer.destination),
        asset_to_xdr(transfer.dest_asset),
        x.Int64(transfer.amount),
    )


_PPR = x.PathPaymentStrictReceiveResultCode
_RECEIVE_CODES: dict[Problem, x.PathPaymentStrictReceiveResultCode] = {
    Problem.NO_DESTINATION: _PPR.PATH_PAYMENT_STRICT_RECEIVE_NO_DESTINATION,
    Problem.NO_TRUST: _PPR.PATH_PAYMENT_STRICT_RECEIVE_NO_TRUST,
    Problem.NOT_AUTHORIZED: _PPR.PATH_PAYMENT_STRICT_RECEIVE_NOT_AUTHORIZED,
    Problem.LINE_FULL: _PPR.PATH_PAYMENT_STRICT_RECEIVE_LINE_FULL,
    Problem.SRC_NO_TRUST: _PPR.PATH_PAYMENT_STRICT_RECEIVE_SRC_NO_TRUST,
    Problem.SRC_NOT_AUTHORIZED: _PPR.PATH_PAYMENT_STRICT_RECEIVE_SRC_NOT_AUTHORIZED,
    Problem.UNDERFUNDED: _PPR.PATH_PAYMENT_STRICT_RECEIVE_UNDERFUNDED,
    Problem.TOO_FEW_OFFERS: _PPR.PATH_PAYMENT_STRICT_RECEIVE_TOO_FEW_OFFERS,
    Problem.CONSTRAINT: _PPR.PATH_PAYMENT_STRICT_RECEIVE_OVER_SENDMAX,
}


class PathPaymentStrictReceive:
    op_type = x.OperationType.PATH_PAYMENT_STRICT_RECEIVE

    @staticmethod
    def _result(
        code: x.PathPaymentStrictReceiveResultCode, transfer: Transfer | None = None
    ) -> x.OperationResult:
        success = None
        if transfer is not None:
            last = _last_payment(transfer)
            success = x.PathPaymentStrictReceiveResultSuccess([], last)
        return inner_result(
            x.OperationType.PATH_PAYMENT_STRICT_RECEIVE,
            x.PathPaymentStrictReceiveResult(code, success=success),
        )

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        return ThresholdLevel.MEDIUM

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        op = body.path_payment_strict_receive_op
        assert op is not None
        if op.dest_amount.int64 <= 0 or op.send_max.int64 <= 0:
            return self._result(_PPR.PATH_PAYMENT_STRICT_RECEIVE_MALFORMED)
        if not _assets_valid(op.send_asset, op.dest_asset, *op.path):
            return self._result(_PPR.PATH_PAYMENT_STRICT_RECEIVE_MALFORMED)
        return None

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        op = body.path_payment_strict_receive_op
        assert op is not None
        transfer = Transfer(
            send_asset=asset_from_xdr(op.send_asset),
            destination=muxed_to_account_id(op.destination),
            dest_asset=asset_from_xdr(op.dest_asset),
            path=tuple(asset_from_xdr(a) for a in op.path),
            amount=op.dest_amount.int64,
            bound=op.send_max.int64,
        )
        problem = strict_receive(ctx, transfer)
        if problem is not None:
            return self._result(_RECEIVE_CODES[problem])
        return self._result(_PPR.PATH_PAYMENT_STRICT_RECEIVE_SUCCESS, transfer)


_PPS = x.PathPaymentStrictSendResultCode
_SEND_CODES: dict[Problem, x.PathPaymentStrictSendResultCode] = {
    Problem.NO_DESTINATION: _PPS.PATH_PAYMENT_STRICT_SEND_NO_DESTINATION,
    Problem.NO_TRUST: _PPS.PATH_PAYMENT_STRICT_SEND_NO_TRUST,
    Problem.NOT_AUTHORIZED: _PPS.PATH_PAYMENT_STRICT_SEND_NOT_AUTHORIZED,
    Problem.LINE_FULL: _PPS.PATH_PAYMENT_STRICT_SEND_LINE_FULL,
    Problem.SRC_NO_TRUST: _PPS.PATH_PAYMENT_STRICT_SEND_SRC_NO_TRUST,
    Problem.SRC_NOT_AUTHORIZED: _PPS.PATH_PAYMENT_STRICT_SEND_SRC_NOT_AUTHORIZED,
    Problem.UNDERFUNDED: _PPS.PATH_PAYMENT_STRICT_SEND_UNDERFUNDED,
    Problem.TOO_FEW_OFFERS: _PPS.PATH_PAYMENT_STRICT_SEND_TOO_FEW_OFFERS,
    Problem.CONSTRAINT: _PPS.PATH_PAYMENT_STRICT_SEND_UNDER_DESTMIN,
}


class PathPaymentStrictSend:
    op_type = x.OperationType.PATH_PAYMENT_STRICT_SEND

    @staticmethod
    def _result(
        code: x.PathPaymentStrictSendResultCode, transfer: Transfer | None = None
    ) -> x.OperationResult:
        success = None
        if transfer is not None:
            last = _last_payment(transfer)
            success = x.PathPaymentStrictSendResultSuccess([], last)
        return inner_result(
            x.OperationType.PATH_PAYMENT_STRICT_SEND,
            x.PathPaymentStrictSendResult(code, success=success),
        )

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        return ThresholdLevel.MEDIUM

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        op = body.path_payment_strict_send_op
        assert op is not None
        if op.send_amount.int64 <= 0 or op.dest_min.int64 <= 0:
            return self._result(_PPS.PATH_PAYMENT_STRICT_SEND_MALFORMED)
        if not _assets_valid(op.send_asset, op.dest_asset, *op.path):
            return self._result(_PPS.PATH_PAYMENT_STRICT_SEND_MALFORMED)
        return None

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        op = body.path_payment_strict_send_op
        assert op is not None
        transfer = Transfer(
            send_asset=asset_from_xdr(op.send_asset),
            destination=muxed_to_account_id(op.destination),
            dest_asset=asset_from_xdr(op.dest_asset),
            path=tuple(asset_from_xdr(a) for a in op.path),
            amount=op.send_amount.int64,
            bound=op.dest_min.int64,
        )
        problem = strict_send(ctx, transfer)
        if problem is not None:
            return self._result(_SEND_CODES[problem])
        return self._result(_PPS.PATH_PAYMENT_STRICT_SEND_SUCCESS, transfer)
