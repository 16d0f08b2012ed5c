"""Fee-bump transactions (FeeBumpTransactionEnvelope), as stellar-core and Horizon treat them.

Checked against stellar-core src/transactions/FeeBumpTransactionFrame.cpp (outer fee
at least (inner operations + 1) x base fee, a bid per operation not below the inner
one's, the fee source's signature and balance, then the inner transaction's own
checks, its fee not charged), src/herder/TransactionQueue.cpp (canReplaceByFee: ten
times the queued bid) and Horizon's resourceadapter/transaction.go (fee_account,
fee_bump_transaction, inner_transaction, the inner hash served too).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from stellar_sdk import Asset, Keypair, Server, TransactionBuilder
from stellar_sdk import xdr as x
from stellar_sdk.exceptions import BaseHorizonError, NotFoundError
from stellar_sdk.fee_bump_transaction_envelope import FeeBumpTransactionEnvelope
from stellar_sdk.transaction_envelope import TransactionEnvelope

from adapters.localnet.stellar import StellarNode
from adapters.localnet.stellar.transaction import fee_bump_hash
from adapters.localnet.stellar.xdrutil import network_id
from tests.adapters.localnet.stellar.helpers import (
    build,
    failure_codes,
    native_balance,
    sequence,
    sign_all,
)

Fund = Callable[[], Keypair]
T = x.TransactionResultCode
STROOP = Decimal("0.0000001")


def pay(
    server: Server, node: StellarNode, source: Keypair, dest: str, *, fee: int = 100
) -> TransactionEnvelope:
    return sign_all(
        build(server, node, source, fee=fee).append_payment_op(dest, Asset.native(), "5").build(),
        source,
    )


def bump(
    node: StellarNode, inner: TransactionEnvelope, fee_source: Keypair, base_fee: int = 200
) -> FeeBumpTransactionEnvelope:
    envelope = TransactionBuilder.build_fee_bump_transaction(
        fee_source.public_key, base_fee, inner, node.network_passphrase
    )
    envelope.sign(fee_source)
    return envelope


def raw_bump(
    node: StellarNode, inner: TransactionEnvelope, fee_source: Keypair, fee_stroops: int
) -> str:
    """A fee bump with any outer fee (stellar-sdk refuses to build one that is too low)."""
    tx = x.FeeBumpTransaction(
        fee_source=Keypair.from_public_key(fee_source.public_key).xdr_muxed_account(),
        fee=x.Int64(fee_stroops),
        inner_tx=x.FeeBumpTransactionInnerTx(
            x.EnvelopeType.ENVELOPE_TYPE_TX, v1=inner.to_xdr_object().v1
        ),
        ext=x.FeeBumpTransactionExt(0),
    )
    outer_hash = fee_bump_hash(network_id(node.network_passphrase), tx)
    signature = fee_source.sign_decorated(outer_hash).to_xdr_object()
    envelope = x.TransactionEnvelope(
        x.EnvelopeType.ENVELOPE_TYPE_TX_FEE_BUMP,
        fee_bump=x.FeeBumpTransactionEnvelope(tx, [signature]),
    )
    return envelope.to_xdr()


def submit_async(node: StellarNode, envelope_xdr: str) -> tuple[int, dict[str, Any]]:
    reply = requests.post(
        f"{node.base_url}/transactions_async", data={"tx": envelope_xdr}, timeout=5
    )
    return reply.status_code, reply.json()


def result_of(body: dict[str, Any]) -> x.TransactionResult:
    return x.TransactionResult.from_xdr(body["error_result_xdr"])


def test_the_fee_source_pays_and_the_inner_transaction_applies(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob, sponsor = fund(), fund(), fund()
    alice_before = native_balance(server, alice.public_key)
    sponsor_before = native_balance(server, sponsor.public_key)
    seq_before = sequence(server, alice.public_key)
    inner = pay(server, node, alice, bob.public_key)
    envelope = bump(node, inner, sponsor)

    answer = server.submit_transaction(envelope)

    assert answer["hash"] == envelope.hash_hex()
    # (1 operation + 1) x base fee 100, from the fee source only.
    assert native_balance(server, sponsor.public_key) == sponsor_before - 200 * STROOP
    assert native_balance(server, alice.public_key) == alice_before - 5
    assert sequence(server, alice.public_key) == seq_before + 1
    result = x.TransactionResult.from_xdr(answer["result_xdr"])
    assert result.result.code == T.txFEE_BUMP_INNER_SUCCESS
    assert result.fee_charged.int64 == 200
    pair = result.result.inner_result_pair
    assert pair is not None and pair.transaction_hash.hash.hex() == inner.hash_hex()
    assert pair.result.result.code == T.txSUCCESS


def test_horizon_shows_both_hashes_and_the_fee_account(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob, sponsor = fund(), fund(), fund()
    inner = pay(server, node, alice, bob.public_key, fee=150)
    envelope = bump(node, inner, sponsor, base_fee=300)
    server.submit_transaction(envelope)

    outer_doc = server.transactions().transaction(envelope.hash_hex()).call()
    assert outer_doc["hash"] == outer_doc["id"] == envelope.hash_hex()
    assert outer_doc["fee_account"] == sponsor.public_key
    assert outer_doc["source_account"] == alice.public_key
    assert outer_doc["max_fee"] == "600"
    assert outer_doc["fee_charged"] == "200"
    assert outer_doc["fee_bump_transaction"]["hash"] == envelope.hash_hex()
    assert outer_doc["inner_transaction"]["hash"] == inner.hash_hex()
    assert outer_doc["inner_transaction"]["max_fee"] == "150"
    assert outer_doc["signatures"] == outer_doc["fee_bump_transaction"]["signatures"]

    inner_doc = server.transactions().transaction(inner.hash_hex()).call()
    assert inner_doc["hash"] == inner_doc["id"] == inner.hash_hex()
    assert inner_doc["signatures"] == outer_doc["inner_transaction"]["signatures"]
    assert inner_doc["paging_token"] == outer_doc["paging_token"]
    listed = server.transactions().for_account(sponsor.public_key).order(desc=True).call()
    assert listed["_embedded"]["records"][0]["hash"] == envelope.hash_hex()


def test_a_failing_inner_transaction_is_in_the_ledger_and_the_fee_is_spent(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, sponsor = fund(), fund()
    sponsor_before = native_balance(server, sponsor.public_key)
    seq_before = sequence(server, alice.public_key)
    inner = pay(server, node, alice, Keypair.random().public_key)  # no such destination
    envelope = bump(node, inner, sponsor)

    codes = failure_codes(server, envelope)  # type: ignore[arg-type]

    assert codes == {
        "transaction": "tx_fee_bump_inner_failed",
        "inner_transaction": "tx_failed",
        "operations": ["op_no_destination"],
    }
    assert native_balance(server, sponsor.public_key) == sponsor_before - 200 * STROOP
    assert sequence(server, alice.public_key) == seq_before + 1  # consumed
    doc = server.transactions().transaction(envelope.hash_hex()).call()
    assert doc["successful"] is False


def test_an_invalid_inner_transaction_is_refused_without_a_fee(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob, sponsor = fund(), fund(), fund()
    inner = pay(server, node, alice, bob.public_key)
    inner.signatures.clear()
    inner.sign(Keypair.random())  # not alice's key
    envelope = bump(node, inner, sponsor)
    sponsor_before = native_balance(server, sponsor.public_key)

    codes = failure_codes(server, envelope)  # type: ignore[arg-type]

    assert codes == {"transaction": "tx_fee_bump_inner_failed", "inner_transaction": "tx_bad_auth"}
    assert native_balance(server, sponsor.public_key) == sponsor_before
    with pytest.raises(NotFoundError):
        server.transactions().transaction(envelope.hash_hex()).call()


@pytest.mark.parametrize(
    ("inner_fee", "outer_fee", "needed"),
    [
        (100, 199, None),  # 199 < (1 + 1) x 100: below the minimum fee
        (1000, 1400, 2000),  # 700 per op < the inner's 1000 per op: 2 x 1000 needed
    ],
)
def test_too_low_an_outer_fee_is_insufficient(
    server: Server,
    node: StellarNode,
    fund: Fund,
    inner_fee: int,
    outer_fee: int,
    needed: int | None,
) -> None:
    alice, bob, sponsor = fund(), fund(), fund()
    inner = pay(server, node, alice, bob.public_key, fee=inner_fee)
    seq_before = sequence(server, alice.public_key)

    status, body = submit_async(node, raw_bump(node, inner, sponsor, outer_fee))

    assert status == 400 and body["tx_status"] == "ERROR"
    result = result_of(body)
    assert result.result.code == T.txINSUFFICIENT_FEE
    assert result.fee_charged.int64 == (200 if needed is None else needed)
    assert sequence(server, alice.public_key) == seq_before
    assert node.pending_count == 0


def test_a_bad_outer_signature_is_bad_auth(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob, sponsor = fund(), fund(), fund()
    inner = pay(server, node, alice, bob.public_key)
    envelope = TransactionBuilder.build_fee_bump_transaction(
        sponsor.public_key, 200, inner, node.network_passphrase
    )
    envelope.sign(alice)  # the fee source did not sign
    assert failure_codes(server, envelope) == {"transaction": "tx_bad_auth"}  # type: ignore[arg-type]


def test_an_extra_outer_signature_is_bad_auth_extra(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob, sponsor = fund(), fund(), fund()
    inner = pay(server, node, alice, bob.public_key)
    envelope = bump(node, inner, sponsor)
    envelope.sign(bob)
    assert failure_codes(server, envelope) == {"transaction": "tx_bad_auth_extra"}  # type: ignore[arg-type]


def test_an_unknown_fee_source_is_no_account(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob = fund(), fund()
    inner = pay(server, node, alice, bob.public_key)
    envelope = bump(node, inner, Keypair.random())
    assert failure_codes(server, envelope) == {"transaction": "tx_no_source_account"}  # type: ignore[arg-type]


def test_a_fee_bump_replaces_a_queued_transaction_only_at_ten_times_its_bid(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob, sponsor = fund(), fund(), fund()
    node.faults.halt_ledgers()
    inner = pay(server, node, alice, bob.public_key, fee=100)
    assert submit_async(node, inner.to_xdr())[0] == 201

    low = raw_bump(node, inner, sponsor, 1999)  # for 2 ops: < 10 x 100 x 2
    status, body = submit_async(node, low)
    assert status == 400
    result = result_of(body)
    assert (result.result.code, result.fee_charged.int64) == (T.txINSUFFICIENT_FEE, 2000)

    high = bump(node, inner, sponsor, base_fee=1000)
    assert submit_async(node, high.to_xdr()) == (
        201,
        {"tx_status": "PENDING", "hash": high.hash_hex()},
    )
    assert node.pending_count == 1
    node.close_ledger()
    doc = server.transactions().transaction(high.hash_hex()).call()
    assert doc["fee_account"] == sponsor.public_key
    # The replaced envelope is the inner one: found under its hash, as the fee bump.
    assert server.transactions().transaction(inner.hash_hex()).call()["id"] == inner.hash_hex()


def test_a_malformed_fee_bump_envelope_is_transaction_malformed(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob, sponsor = fund(), fund(), fund()
    envelope = bump(node, pay(server, node, alice, bob.public_key), sponsor)
    truncated = envelope.to_xdr()[:-12]
    reply = requests.post(f"{node.base_url}/transactions", data={"tx": truncated}, timeout=5)
    assert reply.status_code == 400
    assert reply.json()["type"] == "https://stellar.org/horizon-errors/transaction_malformed"
    assert node.pending_count == 0


def test_the_sync_route_answers_a_refused_fee_bump_with_horizon_codes(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob, sponsor = fund(), fund(), fund()
    raw = raw_bump(node, pay(server, node, alice, bob.public_key), sponsor, 150)
    envelope = FeeBumpTransactionEnvelope.from_xdr(raw, node.network_passphrase)
    with pytest.raises(BaseHorizonError) as caught:
        server.submit_transaction(envelope)
    body = json.loads(caught.value.message)
    assert body["extras"]["result_codes"] == {"transaction": "tx_insufficient_fee"}
    assert body["extras"]["envelope_xdr"] == raw


def test_a_restart_keeps_a_fee_bump_findable_by_both_hashes(tmp_path: Path) -> None:
    alice, bob, sponsor = Keypair.random(), Keypair.random(), Keypair.random()
    first = StellarNode(close_interval_s=0.02, data_dir=tmp_path)
    with first, Server(first.base_url) as server:
        for keypair in (alice, bob, sponsor):
            funded = requests.get(
                f"{first.base_url}/friendbot", {"addr": keypair.public_key}, timeout=10
            )
            assert funded.status_code == 200
        inner = pay(server, first, alice, bob.public_key)
        envelope = bump(first, inner, sponsor)
        server.submit_transaction(envelope)

    second = StellarNode(close_interval_s=0, data_dir=tmp_path)
    with second, Server(second.base_url) as server:
        by_inner = server.transactions().transaction(inner.hash_hex()).call()
        assert by_inner["fee_bump_transaction"]["hash"] == envelope.hash_hex()
        assert by_inner["fee_account"] == sponsor.public_key


def test_the_outer_envelope_is_not_checked_again_when_the_ledger_applies_it(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    """FeeBumpTransactionFrame::apply checks nothing of the outer envelope: the fee
    source raising its thresholds earlier in the same ledger does not undo the fee bump
    that the queue accepted."""
    alice, bob, sponsor = fund(), fund(), fund()
    bob_before = native_balance(server, bob.public_key)
    seq_before = sequence(server, alice.public_key)
    node.faults.halt_ledgers()
    raise_thresholds = sign_all(
        build(server, node, sponsor)
        .append_set_options_op(low_threshold=2, med_threshold=2, high_threshold=2)
        .build(),
        sponsor,
    )
    assert submit_async(node, raise_thresholds.to_xdr())[0] == 201
    envelope = bump(node, pay(server, node, alice, bob.public_key), sponsor)
    assert submit_async(node, envelope.to_xdr())[0] == 201

    node.close_ledger()

    doc = server.transactions().transaction(envelope.hash_hex()).call()
    result = x.TransactionResult.from_xdr(doc["result_xdr"])
    assert result.result.code == T.txFEE_BUMP_INNER_SUCCESS
    assert doc["successful"] is True
    assert native_balance(server, bob.public_key) == bob_before + 5
    assert sequence(server, alice.public_key) == seq_before + 1


def test_a_pre_authorised_fee_source_signer_is_spent_by_the_fee_bump(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    """removeOneTimeSignerKeyFromFeeSource: the fee source's pre-authorised signer of
    the outer hash authorises the fee bump once, and is removed when it applies."""
    alice, bob, sponsor = fund(), fund(), fund()
    inner = pay(server, node, alice, bob.public_key)
    envelope = TransactionBuilder.build_fee_bump_transaction(
        sponsor.public_key, 200, inner, node.network_passphrase
    )  # no outer signature: the pre-authorised signer stands for it
    server.submit_transaction(
        sign_all(
            build(server, node, sponsor)
            .append_pre_auth_tx_signer(envelope.hash(), weight=1)
            .build(),
            sponsor,
        )
    )
    account = server.accounts().account_id(sponsor.public_key).call()
    assert len(account["signers"]) == 2 and account["subentry_count"] == 1

    answer = server.submit_transaction(envelope)

    assert x.TransactionResult.from_xdr(answer["result_xdr"]).result.code == (
        T.txFEE_BUMP_INNER_SUCCESS
    )
    account = server.accounts().account_id(sponsor.public_key).call()
    assert [s["key"] for s in account["signers"]] == [sponsor.public_key]
    assert account["subentry_count"] == 0


def test_an_unused_outer_signature_is_refused_before_the_inner_transaction_is_checked(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    """FeeBumpTransactionFrame::checkValid refuses unused outer signatures
    (tx_bad_auth_extra) before it checks the inner transaction."""
    alice, bob, sponsor = fund(), fund(), fund()
    inner = pay(server, node, alice, bob.public_key)
    inner.signatures.clear()  # the inner transaction is now tx_bad_auth
    envelope = bump(node, inner, sponsor)
    envelope.sign(bob)
    assert failure_codes(server, envelope) == {"transaction": "tx_bad_auth_extra"}  # type: ignore[arg-type]
