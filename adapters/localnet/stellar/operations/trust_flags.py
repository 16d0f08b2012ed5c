"""SetTrustLineFlags and AllowTrust: an issuer authorising, or taking back the
authorisation of, a holder's trust line (stellar-core TrustFlagsOpFrameBase and its two
subclasses, SetTrustLineFlagsOpFrame and AllowTrustOpFrame).

A trust line is in one of three authorisation states: AUTHORIZED (can send and
receive), AUTHORIZED_TO_MAINTAIN_LIABILITIES (can do neither, but keeps its offers) and
none. Both flags at once is an invalid state. Lowering authorisation needs the issuer's
AUTH_REVOCABLE flag.

Revoking full authorisation in core also removes the holder's offers and redeems its
liquidity pool shares in that asset. This node has neither offers nor pools, so a
revocation only rewrites the flags; claimable balances the holder may claim are not
touched (core does not touch them either).
"""

from __future__ import annotations

from dataclasses import replace

from stellar_sdk import xdr as x

from adapters.localnet.stellar.operations.base import (
    OpContext,
    ThresholdLevel,
    inner_result,
)
from adapters.localnet.stellar.state import (
    AUTH_REVOCABLE_FLAG,
    TRUSTLINE_AUTHORIZED_FLAG,
    TRUSTLINE_AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG,
    TRUSTLINE_CLAWBACK_ENABLED_FLAG,
    TrustLine,
)
from adapters.localnet.stellar.xdrutil import (
    AssetKey,
    account_id_str,
    account_id_xdr,
    asset_from_xdr,
)

TRUSTLINE_AUTH_FLAGS = TRUSTLINE_AUTHORIZED_FLAG | TRUSTLINE_AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG
# MASK_TRUSTLINE_FLAGS_V17: every trust line flag protocol 17 and later knows.
ALL_TRUSTLINE_FLAGS = TRUSTLINE_AUTH_FLAGS | TRUSTLINE_CLAWBACK_ENABLED_FLAG

_STLF = x.SetTrustLineFlagsResultCode
_AT = x.AllowTrustResultCode


def auth_state_is_valid(flags: int) -> bool:
    """trustLineFlagAuthIsValid: at most one of the two authorisation flags."""
    return flags & TRUSTLINE_AUTH_FLAGS != TRUSTLINE_AUTH_FLAGS


def _credit_asset_or_none(asset: x.Asset) -> AssetKey | None:
    """The credit asset of the operation; None if native or invalid (isAssetValid)."""
    try:
        return asset_from_xdr(asset)
    except ValueError:
        return None


def _write_flags(ctx: OpContext, line: TrustLine, flags: int) -> None:
    # The ledger stamps last_modified_ledger on every entry a transaction changed.
    ctx.entries.trustlines[(line.account_id, line.asset)] = replace(line, flags=flags)


class SetTrustLineFlags:
    op_type = x.OperationType.SET_TRUST_LINE_FLAGS

    @staticmethod
    def _result(code: x.SetTrustLineFlagsResultCode) -> x.OperationResult:
        return inner_result(x.OperationType.SET_TRUST_LINE_FLAGS, x.SetTrustLineFlagsResult(code))

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        return ThresholdLevel.LOW

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        """SetTrustLineFlagsOpFrame::doCheckValid: every failure is MALFORMED."""
        op = body.set_trust_line_flags_op
        assert op is not None
        malformed = self._result(_STLF.SET_TRUST_LINE_FLAGS_MALFORMED)
        asset = _credit_asset_or_none(op.asset)
        if asset is None or asset.issuer != source:
            return malformed
        if account_id_str(op.trustor) == source:
            return malformed
        set_flags, clear_flags = op.set_flags.uint32, op.clear_flags.uint32
        if set_flags & clear_flags:
            return malformed
        # Clawback can only be cleared: it is granted when the line is created.
        if (
            set_flags & ~ALL_TRUSTLINE_FLAGS
            or not auth_state_is_valid(set_flags)
            or set_flags & TRUSTLINE_CLAWBACK_ENABLED_FLAG
        ):
            return malformed
        if clear_flags & ~ALL_TRUSTLINE_FLAGS:
            return malformed
        return None

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        op = body.set_trust_line_flags_op
        assert op is not None
        asset = asset_from_xdr(op.asset)
        assert asset is not None
        set_flags, clear_flags = op.set_flags.uint32, op.clear_flags.uint32
        # isAuthRevocationValid judges the requested change, not the line's state:
        # without AUTH_REVOCABLE, clearing any auth flag is refused unless the same
        # operation sets AUTHORIZED.
        revocable = bool(ctx.source_account().flags & AUTH_REVOCABLE_FLAG)
        clearing_auth = bool(clear_flags & TRUSTLINE_AUTH_FLAGS)
        setting_authorized = bool(set_flags & TRUSTLINE_AUTHORIZED_FLAG)
        if not revocable and clearing_auth and not setting_authorized:
            return self._result(_STLF.SET_TRUST_LINE_FLAGS_CANT_REVOKE)
        line = ctx.entries.trustlines.get((account_id_str(op.trustor), asset))
        if line is None:
            return self._result(_STLF.SET_TRUST_LINE_FLAGS_NO_TRUST_LINE)
        flags = (line.flags & ~clear_flags) | set_flags
        if not auth_state_is_valid(flags):
            return self._result(_STLF.SET_TRUST_LINE_FLAGS_INVALID_STATE)
        _write_flags(ctx, line, flags)
        return self._result(_STLF.SET_TRUST_LINE_FLAGS_SUCCESS)


def allow_trust_asset(code: x.AssetCode, issuer: str) -> AssetKey | None:
    """AllowTrust names only the asset code; the issuer is the operation's source."""
    if code.type == x.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4 and code.asset_code4 is not None:
        asset = x.Asset(code.type, alpha_num4=x.AlphaNum4(code.asset_code4, account_id_xdr(issuer)))
    elif code.type == x.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12 and code.asset_code12 is not None:
        asset = x.Asset(
            code.type, alpha_num12=x.AlphaNum12(code.asset_code12, account_id_xdr(issuer))
        )
    else:
        return None
    return _credit_asset_or_none(asset)


class AllowTrust:
    """The pre-protocol-17 way to set a line's authorisation; `authorize` replaces both
    auth flags at once (0, AUTHORIZED or AUTHORIZED_TO_MAINTAIN_LIABILITIES)."""

    op_type = x.OperationType.ALLOW_TRUST

    @staticmethod
    def _result(code: x.AllowTrustResultCode) -> x.OperationResult:
        return inner_result(x.OperationType.ALLOW_TRUST, x.AllowTrustResult(code))

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        return ThresholdLevel.LOW

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        """AllowTrustOpFrame::doCheckValid."""
        op = body.allow_trust_op
        assert op is not None
        if op.authorize.uint32 > TRUSTLINE_AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG:
            return self._result(_AT.ALLOW_TRUST_MALFORMED)
        if allow_trust_asset(op.asset, source) is None:
            return self._result(_AT.ALLOW_TRUST_MALFORMED)
        if account_id_str(op.trustor) == source:
            return self._result(_AT.ALLOW_TRUST_MALFORMED)
        return None

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        op = body.allow_trust_op
        assert op is not None
        asset = allow_trust_asset(op.asset, ctx.source)
        assert asset is not None
        authorize = op.authorize.uint32
        # Since protocol 16 the issuer need not be AUTH_REQUIRED (no TRUST_NOT_REQUIRED).
        revocable = bool(ctx.source_account().flags & AUTH_REVOCABLE_FLAG)
        if not revocable and authorize == 0:
            return self._result(_AT.ALLOW_TRUST_CANT_REVOKE)
        line = ctx.entries.trustlines.get((account_id_str(op.trustor), asset))
        if line is None:
            return self._result(_AT.ALLOW_TRUST_NO_TRUST_LINE)
        # Stepping down from AUTHORIZED to maintain-liabilities is a revocation too.
        if (
            not revocable
            and line.is_authorized
            and authorize & TRUSTLINE_AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG
        ):
            return self._result(_AT.ALLOW_TRUST_CANT_REVOKE)
        _write_flags(ctx, line, (line.flags & ~TRUSTLINE_AUTH_FLAGS) | authorize)
        return self._result(_AT.ALLOW_TRUST_SUCCESS)
