"""Helpers for the issuer-control tests: an issuer with flags, holders with trust lines,
and operations stellar-sdk would refuse to build (out-of-range values)."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from typing import Any

import requests
from stellar_sdk import (
    Asset,
    AuthorizationFlag,
    Keypair,
    Server,
    TransactionBuilder,
    TrustLineEntryFlag,
    TrustLineFlags,
)
from stellar_sdk import xdr as x

from adapters.localnet.stellar import StellarNode
from adapters.localnet.stellar.xdrutil import network_id
from tests.adapters.localnet.stellar.helpers import build, sequence, sign_all

Fund = Callable[[], Keypair]

REQUIRED = AuthorizationFlag.AUTHORIZATION_REQUIRED
REVOCABLE = AuthorizationFlag.AUTHORIZATION_REVOCABLE
IMMUTABLE = AuthorizationFlag.AUTHORIZATION_IMMUTABLE
CLAWBACK = AuthorizationFlag.AUTHORIZATION_CLAWBACK_ENABLED
AUTHORIZED = TrustLineFlags.AUTHORIZED_FLAG
MAINTAIN = TrustLineFlags.AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG
LINE_CLAWBACK = TrustLineFlags.TRUSTLINE_CLAWBACK_ENABLED_FLAG


def submit(server: Server, node: StellarNode, source: Keypair, add: Any) -> dict[str, Any]:
    """Build a one-transaction `add(builder)` from `source`, sign, submit; must succeed."""
    envelope = sign_all(add(build(server, node, source)).build(), source)
    response = server.submit_transaction(envelope)
    assert response["successful"] is True
    return response


def set_issuer_flags(server: Server, node: StellarNode, issuer: Keypair, flags: int) -> None:
    submit(server, node, issuer, lambda b: b.append_set_options_op(set_flags=flags))


def trust(
    server: Server, node: StellarNode, holder: Keypair, asset: Asset, limit: str = "1000"
) -> None:
    submit(server, node, holder, lambda b: b.append_change_trust_op(asset, limit=limit))


def pay(
    server: Server, node: StellarNode, payer: Keypair, to: str, asset: Asset, amount: str
) -> None:
    submit(server, node, payer, lambda b: b.append_payment_op(to, asset, amount))


def authorize(
    server: Server, node: StellarNode, issuer: Keypair, holder: str, asset: Asset
) -> None:
    submit(
        server,
        node,
        issuer,
        lambda b: b.append_set_trust_line_flags_op(holder, asset, set_flags=AUTHORIZED),
    )


def allow_trust(
    builder: TransactionBuilder, trustor: str, code: str, authorize: TrustLineEntryFlag | bool
) -> TransactionBuilder:
    """AllowTrust is deprecated in stellar-sdk (SetTrustLineFlags replaces it) but still a
    valid operation that wallets send; silence only that warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return builder.append_allow_trust_op(trustor, code, authorize)


def line_of(server: Server, account_id: str, asset: Asset) -> dict[str, Any] | None:
    """The account's balance entry for `asset` as Horizon shows it (None: no line)."""
    doc = server.accounts().account_id(account_id).call()
    for b in doc["balances"]:
        if b.get("asset_code") == asset.code and b.get("asset_issuer") == asset.issuer:
            return dict(b)
    return None


def raw_op_codes(
    server: Server, node: StellarNode, source: Keypair, body: x.OperationBody
) -> dict[str, Any]:
    """Submit a signed one-operation transaction whose operation body was built by hand,
    for values stellar-sdk refuses to build or parse (the node must refuse them itself);
    return Horizon's extras.result_codes. Posted as a client would post any envelope."""
    template = build(server, node, source).append_manage_data_op("k", b"v").build()
    raw = template.to_xdr_object()
    assert raw.v1 is not None
    raw.v1.tx.operations[0].body = body
    payload = x.TransactionSignaturePayload(
        x.Hash(network_id(node.network_passphrase)),
        x.TransactionSignaturePayloadTaggedTransaction(
            x.EnvelopeType.ENVELOPE_TYPE_TX, tx=raw.v1.tx
        ),
    )
    signature = source.sign_decorated(hashlib.sha256(payload.to_xdr_bytes()).digest())
    raw.v1.signatures = [signature.to_xdr_object()]
    response = requests.post(f"{node.base_url}/transactions", data={"tx": raw.to_xdr()}, timeout=10)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["type"] == "https://stellar.org/horizon-errors/transaction_failed"
    codes = problem["extras"]["result_codes"]
    assert isinstance(codes, dict)
    return codes


def unchanged_sequence(server: Server, account_id: str, before: int) -> bool:
    """A refused-before-a-ledger transaction consumes neither sequence nor fee."""
    return sequence(server, account_id) == before
