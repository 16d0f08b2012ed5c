"""Horizon's operation resources (`/operations`, `/payments` and their scoped forms).

Each operation of a transaction in a ledger is a record with Horizon's common fields
(id = paging token = TOID of ledger, transaction order and 1-based operation index;
`transaction_successful`, `source_account`, `type`, `type_i`, `created_at`,
`transaction_hash`) and the fields of its type, named as Horizon's
protocols/horizon/operations names them. `TYPE_FIELDS` maps an operation type to the
function giving those fields; other types take theirs from
`operations.horizon_details`, or show the common fields only.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stellar_sdk import xdr as x

from adapters.localnet.stellar.amounts import format_stroops
from adapters.localnet.stellar.horizon_format import predicate_json, timestamp
from adapters.localnet.stellar.operations import horizon_details
from adapters.localnet.stellar.state import TxRecord, toid
from adapters.localnet.stellar.xdrutil import (
    account_id_str,
    asset_canonical,
    asset_fields,
    asset_from_xdr,
    muxed_to_account_id,
    signer_key_str,
)

Json = dict[str, Any]
OT = x.OperationType

#: Horizon's `type` for each operation type: the XDR name in lower case (its `type_i`
#: is the XDR number).
TYPE_NAMES: dict[x.OperationType, str] = {op_type: op_type.name.lower() for op_type in OT}

#: Operations Horizon lists under /payments.
PAYMENT_TYPES = frozenset(
    {
        OT.CREATE_ACCOUNT,
        OT.PAYMENT,
        OT.PATH_PAYMENT_STRICT_RECEIVE,
        OT.PATH_PAYMENT_STRICT_SEND,
        OT.ACCOUNT_MERGE,
    }
)

#: Account flag names as Horizon spells them in set_flags_s / clear_flags_s.
FLAG_NAMES = {
    1: "auth_required",
    2: "auth_revocable",
    4: "auth_immutable",
    8: "auth_clawback_enabled",
}


@dataclass(frozen=True)
class OpRow:
    """One operation of a transaction in the ledger."""

    tx: TxRecord
    index: int  # 0-based position in the transaction
    op: x.Operation
    source: str

    @property
    def id(self) -> int:
        return toid(self.tx.ledger, self.tx.application_order, self.index + 1)

    @property
    def type(self) -> x.OperationType:
        return self.op.body.type


def operation_rows(tx: TxRecord) -> list[OpRow]:
    """The operations of `tx` (a fee bump's inner transaction's), in order."""
    envelope = x.TransactionEnvelope.from_xdr(tx.envelope_xdr)
    if envelope.fee_bump is not None:
        inner = envelope.fee_bump.tx.inner_tx.v1
        assert inner is not None
        operations = inner.tx.operations
    elif envelope.v1 is not None:
        operations = envelope.v1.tx.operations
    else:
        assert envelope.v0 is not None
        operations = envelope.v0.tx.operations
    rows = []
    for index, op in enumerate(operations):
        source = (
            tx.source_account
            if op.source_account is None
            else muxed_to_account_id(op.source_account)
        )
        rows.append(OpRow(tx, index, op, source))
    return rows


def participants(row: OpRow) -> set[str]:
    """The accounts an operation concerns (Horizon's operation participants)."""
    body = row.op.body
    found = {row.source}
    if body.create_account_op is not None:
        found.add(account_id_str(body.create_account_op.destination))
    for paying in (body.payment_op, body.path_payment_strict_receive_op):
        if paying is not None:
            found.add(muxed_to_account_id(paying.destination))
    if body.path_payment_strict_send_op is not None:
        found.add(muxed_to_account_id(body.path_payment_strict_send_op.destination))
    if body.destination is not None:  # account merge
        found.add(muxed_to_account_id(body.destination))
    for trust in (body.allow_trust_op, body.set_trust_line_flags_op):
        if trust is not None:
            found.add(account_id_str(trust.trustor))
    if body.clawback_op is not None:
        found.add(muxed_to_account_id(body.clawback_op.from_))
    if body.create_claimable_balance_op is not None:
        for claimant in body.create_claimable_balance_op.claimants:
            assert claimant.v0 is not None
            found.add(account_id_str(claimant.v0.destination))
    return found


def render(base_url: str, row: OpRow) -> Json:
    op_id = str(row.id)
    doc: Json = {
        "_links": {
            "self": {"href": f"{base_url}/operations/{op_id}"},
            "transaction": {"href": f"{base_url}/transactions/{row.tx.hash}"},
            "effects": {"href": f"{base_url}/operations/{op_id}/effects"},
            "succeeds": {"href": f"{base_url}/effects?order=desc&cursor={op_id}"},
            "precedes": {"href": f"{base_url}/effects?order=asc&cursor={op_id}"},
        },
        "id": op_id,
        "paging_token": op_id,
        "transaction_successful": row.tx.successful,
        "source_account": row.source,
        "type": TYPE_NAMES[row.type],
        "type_i": int(row.type),
        "created_at": timestamp(row.tx.closed_at),
        "transaction_hash": row.tx.hash,
    }
    fields = TYPE_FIELDS.get(row.type)
    if fields is not None:
        doc.update(fields(row))
    else:  # the issuer-control and path payment operations describe themselves
        details = horizon_details.operation_details(row.op.body, row.source, row.tx.successful)
        doc.update(details or {})
    return doc


def _create_account(row: OpRow) -> Json:
    op = row.op.body.create_account_op
    assert op is not None
    return {
        "starting_balance": format_stroops(op.starting_balance.int64),
        "funder": row.source,
        "account": account_id_str(op.destination),
    }


def _payment(row: OpRow) -> Json:
    op = row.op.body.payment_op
    assert op is not None
    return {
        **asset_fields(asset_from_xdr(op.asset)),
        "from": row.source,
        "to": muxed_to_account_id(op.destination),
        "amount": format_stroops(op.amount.int64),
    }


def _set_options(row: OpRow) -> Json:
    op = row.op.body.set_options_op
    assert op is not None
    doc: Json = {}
    if op.home_domain is not None:
        doc["home_domain"] = op.home_domain.string32.decode("utf-8", errors="replace")
    if op.inflation_dest is not None:
        doc["inflation_dest"] = account_id_str(op.inflation_dest)
    if op.master_weight is not None:
        doc["master_key_weight"] = op.master_weight.uint32
    if op.signer is not None:
        doc["signer_key"] = signer_key_str(op.signer.key)
        doc["signer_weight"] = op.signer.weight.uint32
    for name, value in (("set_flags", op.set_flags), ("clear_flags", op.clear_flags)):
        if value is not None:
            bits = [bit for bit in FLAG_NAMES if value.uint32 & bit]
            doc[name] = bits
            doc[f"{name}_s"] = [FLAG_NAMES[bit] for bit in bits]
    for name, threshold in (
        ("low_threshold", op.low_threshold),
        ("med_threshold", op.med_threshold),
        ("high_threshold", op.high_threshold),
    ):
        if threshold is not None:
            doc[name] = threshold.uint32
    return doc


def _change_trust(row: OpRow) -> Json:
    op = row.op.body.change_trust_op
    assert op is not None
    asset = asset_from_xdr(op.line)
    doc = {**asset_fields(asset), "limit": format_stroops(op.limit.int64), "trustor": row.source}
    if asset is not None:
        doc["trustee"] = asset.issuer
    return doc


def _account_merge(row: OpRow) -> Json:
    destination = row.op.body.destination
    assert destination is not None
    return {"account": row.source, "into": muxed_to_account_id(destination)}


def _manage_data(row: OpRow) -> Json:
    op = row.op.body.manage_data_op
    assert op is not None
    value = "" if op.data_value is None else base64.b64encode(op.data_value.data_value).decode()
    return {"name": op.data_name.string64.decode("utf-8", errors="replace"), "value": value}


def _create_claimable_balance(row: OpRow) -> Json:
    op = row.op.body.create_claimable_balance_op
    assert op is not None
    claimants = []
    for claimant in op.claimants:
        assert claimant.v0 is not None
        claimants.append(
            {
                "destination": account_id_str(claimant.v0.destination),
                "predicate": predicate_json(claimant.v0.predicate),
            }
        )
    return {
        "asset": asset_canonical(asset_from_xdr(op.asset)),
        "amount": format_stroops(op.amount.int64),
        "claimants": claimants,
    }


def _claim_claimable_balance(row: OpRow) -> Json:
    op = row.op.body.claim_claimable_balance_op
    assert op is not None
    return {"balance_id": op.balance_id.to_xdr_bytes().hex(), "claimant": row.source}


TYPE_FIELDS: dict[x.OperationType, Callable[[OpRow], Json]] = {
    OT.CREATE_ACCOUNT: _create_account,
    OT.PAYMENT: _payment,
    OT.SET_OPTIONS: _set_options,
    OT.CHANGE_TRUST: _change_trust,
    OT.ACCOUNT_MERGE: _account_merge,
    OT.MANAGE_DATA: _manage_data,
    OT.CREATE_CLAIMABLE_BALANCE: _create_claimable_balance,
    OT.CLAIM_CLAIMABLE_BALANCE: _claim_claimable_balance,
}
