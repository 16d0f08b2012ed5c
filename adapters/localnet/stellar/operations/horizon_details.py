"""How Horizon shows the issuer-control and path payment operations: the type-specific
fields of an operation resource and the effects the operation produces.

Horizon derives both from the transaction (its ingestion processors in stellar/go
services/horizon/internal/ingest/processors, operations and effects); the resource
shapes are in protocols/horizon/operations. This module gives only the part that
depends on the operation type; the common fields (id, paging_token, source_account,
created_at, transaction_hash, ...) and the effect ids belong to whoever renders the
endpoints. Amounts are 7-decimal strings, as everywhere in Horizon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stellar_sdk import MuxedAccount
from stellar_sdk import xdr as x

from adapters.localnet.stellar.amounts import format_stroops
from adapters.localnet.stellar.operations.trust_flags import allow_trust_asset
from adapters.localnet.stellar.state import (
    TRUSTLINE_AUTHORIZED_FLAG,
    TRUSTLINE_AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG,
    TRUSTLINE_CLAWBACK_ENABLED_FLAG,
)
from adapters.localnet.stellar.xdrutil import (
    Asset,
    account_id_str,
    asset_fields,
    asset_from_xdr,
    muxed_to_account_id,
)

Json = dict[str, Any]

# Horizon's effect type numbers (services/horizon/internal/db2/history EffectType).
EFFECT_TYPE_IDS: dict[str, int] = {
    "account_credited": 2,
    "account_debited": 3,
    "trustline_authorized": 23,
    "trustline_deauthorized": 24,
    "trustline_authorized_to_maintain_liabilities": 25,
    "trustline_flags_updated": 26,
    "claimable_balance_clawed_back": 80,
}

# Horizon's names for trust line flags in operation details ("liabilites" sic) and
# in the trustline_flags_updated effect.
_FLAG_NAMES = (
    (TRUSTLINE_AUTHORIZED_FLAG, "authorized", "authorized_flag"),
    (
        TRUSTLINE_AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG,
        "authorized_to_maintain_liabilites",
        "authorized_to_maintain_liabilites",
    ),
    (TRUSTLINE_CLAWBACK_ENABLED_FLAG, "clawback_enabled", "clawback_enabled_flag"),
)


@dataclass(frozen=True)
class Effect:
    account: str
    type: str
    details: Json

    @property
    def type_i(self) -> int:
        return EFFECT_TYPE_IDS[self.type]


def _flag_lists(flags: int, prefix: str) -> Json:
    """set_flags / set_flags_s (or clear_...), left out when empty (omitempty)."""
    present = [(bit, name) for bit, name, _ in _FLAG_NAMES if flags & bit]
    if not present:
        return {}
    return {
        f"{prefix}_flags": [bit for bit, _ in present],
        f"{prefix}_flags_s": [name for _, name in present],
    }


def _muxed_fields(muxed: x.MuxedAccount, name: str) -> Json:
    fields: Json = {name: muxed_to_account_id(muxed)}
    if muxed.type == x.CryptoKeyType.KEY_TYPE_MUXED_ED25519:
        account = MuxedAccount.from_xdr_object(muxed)
        fields[f"{name}_muxed"] = account.account_muxed
        fields[f"{name}_muxed_id"] = str(account.account_muxed_id)
    return fields


def _path_payment_details(op: Any, source: str, strict_send: bool, successful: bool) -> Json:
    """Both path payments. Without an order book, a successful one moved the same amount
    on both sides; a failed one shows Horizon's zero for the side it did not fix."""
    fixed = op.send_amount.int64 if strict_send else op.dest_amount.int64
    moved = format_stroops(fixed if successful else 0)
    details: Json = {"from": source, **_muxed_fields(op.destination, "to")}
    details.update(asset_fields(asset_from_xdr(op.dest_asset)))
    details["path"] = [asset_fields(asset_from_xdr(a)) for a in op.path]
    details.update(asset_fields(asset_from_xdr(op.send_asset), "source_"))
    if strict_send:
        details["amount"] = moved
        details["source_amount"] = format_stroops(fixed)
        details["destination_min"] = format_stroops(op.dest_min.int64)
    else:
        details["amount"] = format_stroops(fixed)
        details["source_amount"] = moved
        details["source_max"] = format_stroops(op.send_max.int64)
    return details


def operation_details(body: x.OperationBody, source: str, successful: bool) -> Json | None:
    """The type-specific fields of an operation resource; None for other types."""
    kind = body.type
    OT = x.OperationType
    if kind in (OT.PATH_PAYMENT_STRICT_RECEIVE, OT.PATH_PAYMENT_STRICT_SEND):
        strict_send = kind == OT.PATH_PAYMENT_STRICT_SEND
        op = (
            body.path_payment_strict_send_op if strict_send else body.path_payment_strict_receive_op
        )
        return _path_payment_details(op, source, strict_send, successful)
    if kind == OT.SET_TRUST_LINE_FLAGS:
        stlf = body.set_trust_line_flags_op
        assert stlf is not None
        return {
            **asset_fields(asset_from_xdr(stlf.asset)),
            "trustor": account_id_str(stlf.trustor),
            **_flag_lists(stlf.set_flags.uint32, "set"),
            **_flag_lists(stlf.clear_flags.uint32, "clear"),
        }
    if kind == OT.ALLOW_TRUST:
        at = body.allow_trust_op
        assert at is not None
        return {
            **asset_fields(allow_trust_asset(at.asset, source)),
            "trustee": source,
            "trustor": account_id_str(at.trustor),
            "authorize": bool(at.authorize.uint32 & TRUSTLINE_AUTHORIZED_FLAG),
            "authorize_to_maintain_liabilities": bool(
                at.authorize.uint32 & TRUSTLINE_AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG
            ),
        }
    if kind == OT.CLAWBACK:
        cb = body.clawback_op
        assert cb is not None
        return {
            **asset_fields(asset_from_xdr(cb.asset)),
            **_muxed_fields(cb.from_, "from"),
            "amount": format_stroops(cb.amount.int64),
        }
    if kind == OT.CLAWBACK_CLAIMABLE_BALANCE:
        ccb = body.clawback_claimable_balance_op
        assert ccb is not None
        return {"balance_id": ccb.balance_id.to_xdr_bytes().hex()}
    return None


def _trustline_flags_effect(
    issuer: str, trustor: str, asset: Asset, set_flags: int, clear_flags: int
) -> Effect:
    details: Json = {"trustor": trustor, **asset_fields(asset)}
    for flags, value in ((set_flags, True), (clear_flags, False)):
        for bit, _, effect_name in _FLAG_NAMES:
            if flags & bit:
                details[effect_name] = value
    return Effect(issuer, "trustline_flags_updated", details)


def _path_payment_effects(op: Any, source: str, strict_send: bool) -> list[Effect]:
    amount = format_stroops(op.send_amount.int64 if strict_send else op.dest_amount.int64)
    credited = {"amount": amount, **asset_fields(asset_from_xdr(op.dest_asset))}
    debited = {"amount": amount, **asset_fields(asset_from_xdr(op.send_asset))}
    destination = muxed_to_account_id(op.destination)
    return [
        Effect(destination, "account_credited", credited),
        Effect(source, "account_debited", debited),
    ]


def _allow_trust_effects(op: x.AllowTrustOp, source: str) -> list[Effect]:
    """The deprecated per-state effect, then trustline_flags_updated (Horizon emits both)."""
    asset = allow_trust_asset(op.asset, source)
    trustor = account_id_str(op.trustor)
    details: Json = {"trustor": trustor, **asset_fields(asset)}
    authorize = op.authorize.uint32
    both = TRUSTLINE_AUTHORIZED_FLAG | TRUSTLINE_AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG
    if authorize & TRUSTLINE_AUTHORIZED_FLAG:
        state, set_flags, clear_flags = "trustline_authorized", TRUSTLINE_AUTHORIZED_FLAG, 0
    elif authorize & TRUSTLINE_AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG:
        state = "trustline_authorized_to_maintain_liabilities"
        set_flags, clear_flags = TRUSTLINE_AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG, 0
    else:
        state, set_flags, clear_flags = "trustline_deauthorized", 0, both
    return [
        Effect(source, state, details),
        _trustline_flags_effect(source, trustor, asset, set_flags, clear_flags),
    ]


def _clawback_effects(op: x.ClawbackOp, source: str) -> list[Effect]:
    # Horizon records the clawed amount as credited to the issuer (where it is burned).
    details = {"amount": format_stroops(op.amount.int64), **asset_fields(asset_from_xdr(op.asset))}
    return [
        Effect(source, "account_credited", details),
        Effect(muxed_to_account_id(op.from_), "account_debited", details),
    ]


def _effects_of(body: x.OperationBody, source: str) -> list[Effect]:
    OT = x.OperationType
    kind = body.type
    if kind == OT.PATH_PAYMENT_STRICT_RECEIVE:
        return _path_payment_effects(body.path_payment_strict_receive_op, source, False)
    if kind == OT.PATH_PAYMENT_STRICT_SEND:
        return _path_payment_effects(body.path_payment_strict_send_op, source, True)
    if kind == OT.ALLOW_TRUST and body.allow_trust_op is not None:
        return _allow_trust_effects(body.allow_trust_op, source)
    if kind == OT.CLAWBACK and body.clawback_op is not None:
        return _clawback_effects(body.clawback_op, source)
    if kind == OT.SET_TRUST_LINE_FLAGS and body.set_trust_line_flags_op is not None:
        op = body.set_trust_line_flags_op
        trustor, asset = account_id_str(op.trustor), asset_from_xdr(op.asset)
        flags = (op.set_flags.uint32, op.clear_flags.uint32)
        return [_trustline_flags_effect(source, trustor, asset, *flags)]
    if kind == OT.CLAWBACK_CLAIMABLE_BALANCE and body.clawback_claimable_balance_op is not None:
        balance_id = body.clawback_claimable_balance_op.balance_id.to_xdr_bytes().hex()
        return [Effect(source, "claimable_balance_clawed_back", {"balance_id": balance_id})]
    return []


def operation_effects(body: x.OperationBody, source: str, successful: bool) -> list[Effect]:
    """The effects of one applied operation, in Horizon's order; a failed transaction
    has none."""
    return _effects_of(body, source) if successful else []
