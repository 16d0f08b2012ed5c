"""Helpers shared by the local Stellar network tests: what a Horizon client does."""

from __future__ import annotations

from decimal import Decimal

import pytest
from stellar_sdk import Asset, Keypair, Server, TransactionBuilder
from stellar_sdk.exceptions import BadRequestError
from stellar_sdk.transaction_envelope import TransactionEnvelope

from adapters.localnet.stellar import StellarNode


def build(
    server: Server,
    node: StellarNode,
    source: Keypair,
    *,
    fee: int = 100,
    timeout_s: int = 300,
) -> TransactionBuilder:
    """A builder on `source`'s current sequence. Its upper time bound is taken from the
    node clock, which tests move forward, not from this machine's clock."""
    account = server.load_account(source.public_key)
    return TransactionBuilder(account, node.network_passphrase, base_fee=fee).add_time_bounds(
        0, node.clock.now() + timeout_s
    )


def sign_all(envelope: TransactionEnvelope, *keypairs: Keypair) -> TransactionEnvelope:
    for keypair in keypairs:
        envelope.sign(keypair)
    return envelope


def failure_codes(server: Server, envelope: TransactionEnvelope) -> dict[str, object]:
    """Submit an envelope that must fail; return Horizon's extras.result_codes."""
    with pytest.raises(BadRequestError) as caught:
        server.submit_transaction(envelope)
    error = caught.value
    assert error.type == "https://stellar.org/horizon-errors/transaction_failed", error.message
    assert error.extras is not None
    codes = error.extras["result_codes"]
    assert isinstance(codes, dict)
    return codes


def native_balance(server: Server, account_id: str) -> Decimal:
    doc = server.accounts().account_id(account_id).call()
    return next(Decimal(b["balance"]) for b in doc["balances"] if b["asset_type"] == "native")


def credit_balance(server: Server, account_id: str, asset: Asset) -> Decimal | None:
    doc = server.accounts().account_id(account_id).call()
    for b in doc["balances"]:
        if b.get("asset_code") == asset.code and b.get("asset_issuer") == asset.issuer:
            return Decimal(b["balance"])
    return None


def sequence(server: Server, account_id: str) -> int:
    return int(server.accounts().account_id(account_id).call()["sequence"])
