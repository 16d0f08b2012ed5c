"""CreateClaimableBalance and ClaimClaimableBalance, with claim predicates.

Two stellar-core rules matter most to a DVP lock:
- relative predicates ("claimable within N seconds") become absolute at creation,
  using the close time of the creating ledger;
- a predicate is evaluated against the close time of the ledger that applies the
  claim, and "before T" means close_time < T (strictly).
The balance's reserve (one base reserve per claimant) is carried by the creator as
a sponsorship (num_sponsoring), not as a subentry, and is released on claim.
"""

from __future__ import annotations

from dataclasses import replace

from stellar_sdk import xdr as x

from adapters.localnet.stellar.amounts import INT64_MAX
from adapters.localnet.stellar.operations.base import (
    UINT32_MAX,
    OpContext,
    ThresholdLevel,
    add_native,
    available_balance,
    credit_asset,
    inner_result,
    outer_result,
    trust_line_or_issuer,
)
from adapters.localnet.stellar.state import (
    AUTH_CLAWBACK_ENABLED_FLAG,
    CLAIMABLE_BALANCE_CLAWBACK_ENABLED_FLAG,
    TRUSTLINE_CLAWBACK_ENABLED_FLAG,
    ClaimableBalance,
    Claimant,
    Entries,
)
from adapters.localnet.stellar.xdrutil import (
    account_id_str,
    asset_from_xdr,
    claimable_balance_id_hex,
    claimable_balance_id_xdr,
)

P = x.ClaimPredicateType
_CCB = x.CreateClaimableBalanceResultCode
_CLB = x.ClaimClaimableBalanceResultCode
MAX_PREDICATE_DEPTH = 4


def predicate_is_valid(pred: x.ClaimPredicate, depth: int = 1) -> bool:
    """CreateClaimableBalanceOpFrame validatePredicate: depth <= 4, and/or take exactly
    two children, times are non-negative."""
    if depth > MAX_PREDICATE_DEPTH:
        return False
    kind = pred.type
    if kind == P.CLAIM_PREDICATE_UNCONDITIONAL:
        return True
    if kind in (P.CLAIM_PREDICATE_AND, P.CLAIM_PREDICATE_OR):
        children = pred.and_predicates if kind == P.CLAIM_PREDICATE_AND else pred.or_predicates
        return (
            children is not None
            and len(children) == 2
            and all(predicate_is_valid(c, depth + 1) for c in children)
        )
    if kind == P.CLAIM_PREDICATE_NOT:
        return pred.not_predicate is not None and predicate_is_valid(pred.not_predicate, depth + 1)
    if kind == P.CLAIM_PREDICATE_BEFORE_ABSOLUTE_TIME:
        return pred.abs_before is not None and pred.abs_before.int64 >= 0
    if kind == P.CLAIM_PREDICATE_BEFORE_RELATIVE_TIME:
        return pred.rel_before is not None and pred.rel_before.int64 >= 0
    return False


def make_absolute(pred: x.ClaimPredicate, close_time: int) -> x.ClaimPredicate:
    """Rewrite every relative time as close_time + relative (saturating at int64 max)."""
    kind = pred.type
    if kind == P.CLAIM_PREDICATE_BEFORE_RELATIVE_TIME:
        assert pred.rel_before is not None
        relative = pred.rel_before.int64
        absolute = INT64_MAX if close_time > INT64_MAX - relative else close_time + relative
        return x.ClaimPredicate(
            P.CLAIM_PREDICATE_BEFORE_ABSOLUTE_TIME, abs_before=x.Int64(absolute)
        )
    if kind == P.CLAIM_PREDICATE_AND:
        assert pred.and_predicates is not None
        return x.ClaimPredicate(
            kind, and_predicates=[make_absolute(c, close_time) for c in pred.and_predicates]
        )
    if kind == P.CLAIM_PREDICATE_OR:
        assert pred.or_predicates is not None
        return x.ClaimPredicate(
            kind, or_predicates=[make_absolute(c, close_time) for c in pred.or_predicates]
        )
    if kind == P.CLAIM_PREDICATE_NOT:
        assert pred.not_predicate is not None
        return x.ClaimPredicate(kind, not_predicate=make_absolute(pred.not_predicate, close_time))
    return pred


def predicate_holds(pred: x.ClaimPredicate, close_time: int) -> bool:
    kind = pred.type
    if kind == P.CLAIM_PREDICATE_UNCONDITIONAL:
        return True
    if kind == P.CLAIM_PREDICATE_AND:
        assert pred.and_predicates is not None
        return all(predicate_holds(c, close_time) for c in pred.and_predicates)
    if kind == P.CLAIM_PREDICATE_OR:
        assert pred.or_predicates is not None
        return any(predicate_holds(c, close_time) for c in pred.or_predicates)
    if kind == P.CLAIM_PREDICATE_NOT:
        assert pred.not_predicate is not None
        return not predicate_holds(pred.not_predicate, close_time)
    if kind == P.CLAIM_PREDICATE_BEFORE_ABSOLUTE_TIME:
        assert pred.abs_before is not None
        return pred.abs_before.int64 > close_time
    # Relative predicates never reach a stored balance (made absolute at creation).
    raise ValueError(f"unexpected predicate type {kind!r}")


class CreateClaimableBalanceOp:
    op_type = x.OperationType.CREATE_CLAIMABLE_BALANCE

    @staticmethod
    def _result(
        code: x.CreateClaimableBalanceResultCode, balance_id: str | None = None
    ) -> x.OperationResult:
        bid = None if balance_id is None else claimable_balance_id_xdr(balance_id)
        return inner_result(
            x.OperationType.CREATE_CLAIMABLE_BALANCE, x.CreateClaimableBalanceResult(code, bid)
        )

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        return ThresholdLevel.MEDIUM

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        op = body.create_claimable_balance_op
        assert op is not None
        try:
            asset_from_xdr(op.asset)
        except ValueError:
            return self._result(_CCB.CREATE_CLAIMABLE_BALANCE_MALFORMED)
        if op.amount.int64 <= 0 or not op.claimants:
            return self._result(_CCB.CREATE_CLAIMABLE_BALANCE_MALFORMED)
        destinations = [account_id_str(c.v0.destination) for c in op.claimants if c.v0]
        if len(set(destinations)) != len(op.claimants):
            return self._result(_CCB.CREATE_CLAIMABLE_BALANCE_MALFORMED)
        if not all(c.v0 is not None and predicate_is_valid(c.v0.predicate) for c in op.claimants):
            return self._result(_CCB.CREATE_CLAIMABLE_BALANCE_MALFORMED)
        return None

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        op = body.create_claimable_balance_op
        assert op is not None
        asset = asset_from_xdr(op.asset)
        amount = op.amount.int64
        reserve = ctx.ledger.base_reserve
        source = ctx.source_account()
        flags = 0
        if asset is None:
            if available_balance(source, reserve) < amount:
                return self._result(_CCB.CREATE_CLAIMABLE_BALANCE_UNDERFUNDED)
            debited = add_native(source, -amount, reserve)
            assert debited is not None
            source = debited
        else:
            line = trust_line_or_issuer(ctx.entries, ctx.source, asset)
            if line is None:
                return self._result(_CCB.CREATE_CLAIMABLE_BALANCE_NO_TRUST)
            if not line.is_authorized:
                return self._result(_CCB.CREATE_CLAIMABLE_BALANCE_NOT_AUTHORIZED)
            if credit_asset(ctx.entries, ctx.source, asset, -amount) is not None:
                return self._result(_CCB.CREATE_CLAIMABLE_BALANCE_UNDERFUNDED)
            clawback = (
                source.flags & AUTH_CLAWBACK_ENABLED_FLAG
                if ctx.source == asset.issuer
                else line.flags & TRUSTLINE_CLAWBACK_ENABLED_FLAG
            )
            if clawback:
                flags = CLAIMABLE_BALANCE_CLAWBACK_ENABLED_FLAG

        # The creator sponsors the entry: one base reserve per claimant, checked after
        # the amount has left its balance.
        multiplier = len(op.claimants)
        if source.num_sponsoring + multiplier > UINT32_MAX:
            return outer_result(x.OperationResultCode.opTOO_MANY_SPONSORING)
        if available_balance(source, reserve) < multiplier * reserve:
            return self._result(_CCB.CREATE_CLAIMABLE_BALANCE_LOW_RESERVE)
        ctx.entries.accounts[ctx.source] = replace(
            source, num_sponsoring=source.num_sponsoring + multiplier
        )

        # The id hashes the *transaction's* source and sequence, not the operation's.
        balance_id = claimable_balance_id_hex(ctx.tx_source, ctx.tx_seq, ctx.op_index)
        claimants = tuple(
            Claimant(
                account_id_str(c.v0.destination),
                make_absolute(c.v0.predicate, ctx.ledger.close_time).to_xdr(),
            )
            for c in op.claimants
            if c.v0 is not None
        )
        ctx.entries.claimable_balances[balance_id] = ClaimableBalance(
            balance_id=balance_id,
            asset=asset,
            amount=amount,
            claimants=claimants,
            sponsor=ctx.source,
            flags=flags,
        )
        return self._result(_CCB.CREATE_CLAIMABLE_BALANCE_SUCCESS, balance_id)


class ClaimClaimableBalanceOp:
    op_type = x.OperationType.CLAIM_CLAIMABLE_BALANCE

    @staticmethod
    def _result(code: x.ClaimClaimableBalanceResultCode) -> x.OperationResult:
        return inner_result(
            x.OperationType.CLAIM_CLAIMABLE_BALANCE, x.ClaimClaimableBalanceResult(code)
        )

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        return ThresholdLevel.LOW

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        return None

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        op = body.claim_claimable_balance_op
        assert op is not None
        balance_id = op.balance_id.to_xdr_bytes().hex()
        balance = ctx.entries.claimable_balances.get(balance_id)
        if balance is None:
            return self._result(_CLB.CLAIM_CLAIMABLE_BALANCE_DOES_NOT_EXIST)
        claimant = next((c for c in balance.claimants if c.destination == ctx.source), None)
        if claimant is None or not predicate_holds(
            x.ClaimPredicate.from_xdr(claimant.predicate_xdr), ctx.ledger.close_time
        ):
            return self._result(_CLB.CLAIM_CLAIMABLE_BALANCE_CANNOT_CLAIM)

        if balance.asset is None:
            credited = add_native(ctx.source_account(), balance.amount, ctx.ledger.base_reserve)
            if credited is None:
                return self._result(_CLB.CLAIM_CLAIMABLE_BALANCE_LINE_FULL)
            ctx.entries.accounts[ctx.source] = credited
        else:
            problem = credit_asset(ctx.entries, ctx.source, balance.asset, balance.amount)
            if problem is not None:
                return self._result(
                    {
                        "no_trust": _CLB.CLAIM_CLAIMABLE_BALANCE_NO_TRUST,
                        "not_authorized": _CLB.CLAIM_CLAIMABLE_BALANCE_NOT_AUTHORIZED,
                        "limit": _CLB.CLAIM_CLAIMABLE_BALANCE_LINE_FULL,
                    }[problem]
                )

        remove_claimable_balance(ctx.entries, balance_id)
        return self._result(_CLB.CLAIM_CLAIMABLE_BALANCE_SUCCESS)


def remove_claimable_balance(entries: Entries, balance_id: str) -> None:
    """Delete a claimable balance (claimed or clawed back): its sponsor gets back the
    reserve it carried, one per claimant."""
    balance = entries.claimable_balances.pop(balance_id)
    sponsor = entries.accounts[balance.sponsor]
    entries.accounts[balance.sponsor] = replace(
        sponsor, num_sponsoring=sponsor.num_sponsoring - len(balance.claimants)
    )
