"""Horizon's effects: what each operation of a successful transaction did, per account.

Horizon derives them when it ingests a ledger (services/horizon ingest/processors
effects_processor.go), from the operation, its result and the ledger-entry changes it
made. This node derives them the same way when it applies the operation, from the
entries before and after it, and keeps them with the transaction. Failed
transactions have none. An effect's id is "<operation id, 19 digits>-<order from 1,
10 digits>", which is also its paging token.

`OP_EFFECTS` maps an operation type to the function giving its effects; other types
take theirs from `operations.horizon_details`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stellar_sdk import xdr as x

from adapters.localnet.stellar.amounts import format_stroops
from adapters.localnet.stellar.horizon_format import predicate_json
from adapters.localnet.stellar.operations import horizon_details
from adapters.localnet.stellar.state import Account, Entries
from adapters.localnet.stellar.xdrutil import (
    account_id_str,
    asset_canonical,
    asset_fields,
    asset_from_xdr,
    muxed_to_account_id,
)

Json = dict[str, Any]
OT = x.OperationType

#: Horizon's effect type numbers (db2/history EffectType) by name.
EFFECT_TYPES: dict[str, int] = {
    "account_created": 0,
    "account_removed": 1,
    "account_credited": 2,
    "account_debited": 3,
    "account_thresholds_updated": 4,
    "account_home_domain_updated": 5,
    "account_flags_updated": 6,
    "account_inflation_destination_updated": 7,
    "signer_created": 10,
    "signer_removed": 11,
    "signer_updated": 12,
    "trustline_created": 20,
    "trustline_removed": 21,
    "trustline_updated": 22,
    "data_created": 40,
    "data_removed": 41,
    "data_updated": 42,
    "claimable_balance_created": 50,
    "claimable_balance_claimant_created": 51,
    "claimable_balance_claimed": 52,
    "claimable_balance_sponsorship_created": 69,
    "claimable_balance_sponsorship_removed": 71,
}

ACCOUNT_FLAG_DETAILS = {
    1: "auth_required_flag",
    2: "auth_revocable_flag",
    4: "auth_immutable_flag",
    8: "auth_clawback_enabled_flag",
}


@dataclass(frozen=True)
class Effect:
    account: str
    type: str
    details: Json


@dataclass(frozen=True)
class OpChange:
    """One applied operation: what it was, who ran it, the entries around it."""

    op: x.Operation
    source: str
    before: Entries
    after: Entries
    result: x.OperationResult


def op_effects(change: OpChange) -> list[Effect]:
    derive = OP_EFFECTS.get(change.op.body.type)
    if derive is not None:
        return derive(change)
    # The issuer-control and path payment operations give their own effects.
    found = horizon_details.operation_effects(change.op.body, change.source, True)
    return [Effect(e.account, e.type, e.details) for e in found]


def effect_id(op_id: int, order: int) -> str:
    return f"{op_id:019d}-{order:010d}"


def render(base_url: str, op_id: int, order: int, created_at: str, effect: Effect) -> Json:
    token = effect_id(op_id, order)
    return {
        "_links": {
            "operation": {"href": f"{base_url}/operations/{op_id}"},
            "succeeds": {"href": f"{base_url}/effects?order=desc&cursor={token}"},
            "precedes": {"href": f"{base_url}/effects?order=asc&cursor={token}"},
        },
        "id": token,
        "paging_token": token,
        "account": effect.account,
        "type": effect.type,
        "type_i": EFFECT_TYPES.get(effect.type, horizon_details.EFFECT_TYPE_IDS.get(effect.type)),
        "created_at": created_at,
        **effect.details,
    }


def _create_account(c: OpChange) -> list[Effect]:
    op = c.op.body.create_account_op
    assert op is not None
    created = account_id_str(op.destination)
    amount = format_stroops(op.starting_balance.int64)
    return [
        Effect(created, "account_created", {"starting_balance": amount}),
        Effect(c.source, "account_debited", {"asset_type": "native", "amount": amount}),
        Effect(created, "signer_created", {"public_key": created, "weight": 1}),
    ]


def _payment(c: OpChange) -> list[Effect]:
    op = c.op.body.payment_op
    assert op is not None
    details = {
        "amount": format_stroops(op.amount.int64),
        **asset_fields(asset_from_xdr(op.asset)),
    }
    return [
        Effect(muxed_to_account_id(op.destination), "account_credited", details),
        Effect(c.source, "account_debited", details),
    ]


def _account_merge(c: OpChange) -> list[Effect]:
    destination = c.op.body.destination
    assert destination is not None
    merged = c.before.accounts[c.source].balance
    details = {"amount": format_stroops(merged), "asset_type": "native"}
    return [
        Effect(c.source, "account_debited", details),
        Effect(muxed_to_account_id(destination), "account_credited", details),
        Effect(c.source, "account_removed", {}),
    ]


def _set_options(c: OpChange) -> list[Effect]:
    op = c.op.body.set_options_op
    assert op is not None
    found: list[Effect] = []
    if op.home_domain is not None:
        domain = op.home_domain.string32.decode("utf-8", errors="replace")
        found.append(Effect(c.source, "account_home_domain_updated", {"home_domain": domain}))
    thresholds = {
        name: value.uint32
        for name, value in (
            ("low_threshold", op.low_threshold),
            ("med_threshold", op.med_threshold),
            ("high_threshold", op.high_threshold),
        )
        if value is not None
    }
    if thresholds:
        found.append(Effect(c.source, "account_thresholds_updated", thresholds))
    flags: Json = {}
    for value, setting in ((op.set_flags, True), (op.clear_flags, False)):
        if value is not None:
            flags.update({n: setting for b, n in ACCOUNT_FLAG_DETAILS.items() if value.uint32 & b})
    if flags:
        found.append(Effect(c.source, "account_flags_updated", flags))
    if op.inflation_dest is not None:
        destination = account_id_str(op.inflation_dest)
        found.append(
            Effect(
                c.source,
                "account_inflation_destination_updated",
                {"inflation_destination": destination},
            )
        )
    return found + _signer_effects(c)


def _signer_summary(account: Account | None) -> dict[str, int]:
    """Every signer with its weight, the master key included when its weight is not 0."""
    if account is None:
        return {}
    summary = {s.key: s.weight for s in account.signers}
    if account.master_weight > 0:
        summary[account.account_id] = account.master_weight
    return summary


def _signer_effects(c: OpChange) -> list[Effect]:
    before = _signer_summary(c.before.accounts.get(c.source))
    after = _signer_summary(c.after.accounts.get(c.source))
    found: list[Effect] = []
    for key in sorted(before):
        if key not in after:
            found.append(Effect(c.source, "signer_removed", {"public_key": key}))
        elif after[key] != before[key]:
            found.append(
                Effect(c.source, "signer_updated", {"public_key": key, "weight": after[key]})
            )
    for key in sorted(after.keys() - before.keys()):
        found.append(Effect(c.source, "signer_created", {"public_key": key, "weight": after[key]}))
    return found


def _change_trust(c: OpChange) -> list[Effect]:
    op = c.op.body.change_trust_op
    assert op is not None
    asset = asset_from_xdr(op.line)
    if asset is None:
        return []
    key = (c.source, asset)
    had, has = key in c.before.trustlines, key in c.after.trustlines
    if not had and not has:
        return []  # an issuer trusting itself changes nothing
    kind = (
        "trustline_created" if not had else "trustline_removed" if not has else "trustline_updated"
    )
    details = {"limit": format_stroops(op.limit.int64), **asset_fields(asset)}
    return [Effect(c.source, kind, details)]


def _manage_data(c: OpChange) -> list[Effect]:
    import base64

    op = c.op.body.manage_data_op
    assert op is not None
    name = op.data_name.string64.decode("utf-8", errors="replace")
    key = (c.source, name)
    before, after = c.before.data.get(key), c.after.data.get(key)
    details: Json = {"name": name}
    if after is not None:
        details["value"] = base64.b64encode(after.value).decode()
    if before is None and after is None:
        return []
    kind = "data_created" if before is None else "data_removed" if after is None else "data_updated"
    return [Effect(c.source, kind, details)]


def _create_claimable_balance(c: OpChange) -> list[Effect]:
    op = c.op.body.create_claimable_balance_op
    result = c.result.tr.create_claimable_balance_result if c.result.tr else None
    assert op is not None
    assert result is not None
    assert result.balance_id is not None
    balance_id = result.balance_id.to_xdr_bytes().hex()
    balance = c.after.claimable_balances[balance_id]
    amount = format_stroops(balance.amount)
    canonical = asset_canonical(balance.asset)
    found = [
        Effect(
            c.source,
            "claimable_balance_created",
            {"balance_id": balance_id, "amount": amount, "asset": canonical},
        )
    ]
    for claimant in op.claimants:  # as submitted: relative times not yet made absolute
        assert claimant.v0 is not None
        found.append(
            Effect(
                account_id_str(claimant.v0.destination),
                "claimable_balance_claimant_created",
                {
                    "balance_id": balance_id,
                    "amount": amount,
                    "predicate": predicate_json(claimant.v0.predicate),
                    "asset": canonical,
                },
            )
        )
    found.append(
        Effect(c.source, "account_debited", {"amount": amount, **asset_fields(balance.asset)})
    )
    sponsor = {"balance_id": balance_id, "sponsor": balance.sponsor}
    found.append(Effect(balance.sponsor, "claimable_balance_sponsorship_created", sponsor))
    return found


def _claim_claimable_balance(c: OpChange) -> list[Effect]:
    op = c.op.body.claim_claimable_balance_op
    assert op is not None
    balance_id = op.balance_id.to_xdr_bytes().hex()
    balance = c.before.claimable_balances[balance_id]
    amount = format_stroops(balance.amount)
    claimed = {"amount": amount, "balance_id": balance_id, "asset": asset_canonical(balance.asset)}
    return [
        Effect(c.source, "claimable_balance_claimed", claimed),
        Effect(c.source, "account_credited", {"amount": amount, **asset_fields(balance.asset)}),
        Effect(
            balance.sponsor,
            "claimable_balance_sponsorship_removed",
            {"balance_id": balance_id, "former_sponsor": balance.sponsor},
        ),
    ]


OP_EFFECTS: dict[x.OperationType, Callable[[OpChange], list[Effect]]] = {
    OT.CREATE_ACCOUNT: _create_account,
    OT.PAYMENT: _payment,
    OT.ACCOUNT_MERGE: _account_merge,
    OT.SET_OPTIONS: _set_options,
    OT.CHANGE_TRUST: _change_trust,
    OT.MANAGE_DATA: _manage_data,
    OT.CREATE_CLAIMABLE_BALANCE: _create_claimable_balance,
    OT.CLAIM_CLAIMABLE_BALANCE: _claim_claimable_balance,
}
