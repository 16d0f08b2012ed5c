"""Transaction-level rules: hashes, sequence numbers, fees, time bounds, signatures.

Each refusal is checked twice: the result code, and that nothing changed on the
ledger (no fee taken, no sequence number consumed); each in-ledger failure is checked
to have taken the fee and consumed the sequence number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from decimal import Decimal

from stellar_sdk import Asset, Keypair, Network, Server, TransactionBuilder
from stellar_sdk import xdr as x

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import (
    build,
    failure_codes,
    native_balance,
    sequence,
    sign_all,
)

Fund = Callable[[], Keypair]


def test_root_resource_and_genesis_account(server: Server, node: StellarNode) -> None:
    root = server.root().call()
    assert root["network_passphrase"] == "Standalone Network ; February 2017"
    assert root["history_latest_ledger"] == root["core_latest_ledger"] == node.latest_ledger
    # stellar-core's standalone root: seed = SHA-256(passphrase), holding all 100 billion XLM.
    expected_root = Keypair.from_raw_ed25519_seed(
        hashlib.sha256(b"Standalone Network ; February 2017").digest()
    )
    assert node.root_keypair.public_key == expected_root.public_key
    assert native_balance(server, expected_root.public_key) == Decimal("100000000000")


def test_hash_matches_sdk_and_new_account_sequence(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice = fund()
    bob = Keypair.random()
    envelope = sign_all(
        build(server, node, alice).append_create_account_op(bob.public_key, "10").build(), alice
    )
    response = server.submit_transaction(envelope)
    assert response["hash"] == envelope.hash_hex()
    assert response["successful"] is True
    # A new account starts at (ledger of creation) << 32, as in stellar-core.
    assert sequence(server, bob.public_key) == response["ledger"] << 32
    fetched = server.transactions().transaction(envelope.hash_hex()).call()
    assert fetched["ledger"] == response["ledger"]
    assert fetched["envelope_xdr"] == envelope.to_xdr()
    result = x.TransactionResult.from_xdr(fetched["result_xdr"])
    assert result.result.code == x.TransactionResultCode.txSUCCESS
    x.TransactionMeta.from_xdr(fetched["result_meta_xdr"])  # decodes


def test_fee_is_base_fee_per_operation(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob = fund(), fund()
    before = native_balance(server, alice.public_key)
    envelope = sign_all(
        build(server, node, alice, fee=1000)  # bids 1000 per op, pays the base fee
        .append_payment_op(bob.public_key, Asset.native(), "1")
        .append_payment_op(bob.public_key, Asset.native(), "2")
        .build(),
        alice,
    )
    response = server.submit_transaction(envelope)
    assert response["fee_charged"] == "200"
    assert response["max_fee"] == "2000"
    assert native_balance(server, alice.public_key) == before - Decimal("3") - Decimal("0.00002")


def test_insufficient_fee_is_refused_without_charge(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    before_balance, before_seq = (
        native_balance(server, alice.public_key),
        sequence(server, alice.public_key),
    )
    builder = build(server, node, alice, fee=50)
    envelope = sign_all(
        builder.append_payment_op(bob.public_key, Asset.native(), "1").build(), alice
    )
    assert failure_codes(server, envelope) == {"transaction": "tx_insufficient_fee"}
    assert native_balance(server, alice.public_key) == before_balance
    assert sequence(server, alice.public_key) == before_seq


def test_bad_sequence_is_refused_without_charge(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    account = server.load_account(alice.public_key)
    on_ledger = account.sequence
    account.increment_sequence_number()  # skip one: the next valid is current + 1
    envelope = (
        TransactionBuilder(account, node.network_passphrase, base_fee=100)
        .append_payment_op(bob.public_key, Asset.native(), "1")
        .set_timeout(300)
        .build()
    )
    envelope.sign(alice)
    before = native_balance(server, alice.public_key)
    assert failure_codes(server, envelope) == {"transaction": "tx_bad_seq"}
    assert native_balance(server, alice.public_key) == before
    assert sequence(server, alice.public_key) == on_ledger


def test_wrong_signer_and_wrong_network_are_bad_auth(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    mallory = Keypair.random()
    envelope = sign_all(
        build(server, node, alice).append_payment_op(bob.public_key, Asset.native(), "1").build(),
        mallory,
    )
    assert failure_codes(server, envelope) == {"transaction": "tx_bad_auth"}

    account = server.load_account(alice.public_key)
    testnet = (
        TransactionBuilder(account, Network.TESTNET_NETWORK_PASSPHRASE, base_fee=100)
        .append_payment_op(bob.public_key, Asset.native(), "1")
        .set_timeout(300)
        .build()
    )
    testnet.sign(alice)  # a valid signature, but over another network's hash
    assert failure_codes(server, testnet) == {"transaction": "tx_bad_auth"}
    assert sequence(server, alice.public_key) == account.sequence - 1  # nothing consumed


def test_unused_extra_signature_is_bad_auth_extra(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    envelope = sign_all(
        build(server, node, alice).append_payment_op(bob.public_key, Asset.native(), "1").build(),
        alice,
        Keypair.random(),
    )
    assert failure_codes(server, envelope) == {"transaction": "tx_bad_auth_extra"}


def test_time_bounds_follow_the_node_clock(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob = fund(), fund()
    now = node.clock.now()
    account = server.load_account(alice.public_key)

    def payment(min_time: int, max_time: int) -> TransactionBuilder:
        return (
            TransactionBuilder(account, node.network_passphrase, base_fee=100)
            .append_payment_op(bob.public_key, Asset.native(), "1")
            .add_time_bounds(min_time, max_time)
        )

    early = sign_all(payment(now + 3600, 0).build(), alice)
    account.sequence -= 1  # the builder incremented it; these envelopes compete for one sequence
    assert failure_codes(server, early) == {"transaction": "tx_too_early"}

    late = sign_all(payment(0, now + 100).build(), alice)
    account.sequence -= 1
    node.advance_time(200)
    node.close_ledger()
    assert failure_codes(server, late) == {"transaction": "tx_too_late"}

    node.advance_time(3600)  # now the "early" one's min_time has passed
    node.close_ledger()
    assert server.submit_transaction(early)["successful"] is True


def test_failed_transaction_charges_fee_and_consumes_sequence(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    before_seq = sequence(server, alice.public_key)
    before = native_balance(server, alice.public_key)
    envelope = sign_all(
        build(server, node, alice)
        .append_payment_op(bob.public_key, Asset.native(), "1")
        .append_payment_op(bob.public_key, Asset.native(), "1000000")  # more than alice has
        .build(),
        alice,
    )
    codes = failure_codes(server, envelope)
    assert codes == {"transaction": "tx_failed", "operations": ["op_success", "op_underfunded"]}
    # All or nothing: the first payment did not happen, but the fee and sequence are spent.
    assert native_balance(server, alice.public_key) == before - Decimal("0.0000200")
    assert sequence(server, alice.public_key) == before_seq + 1
    fetched = server.transactions().transaction(envelope.hash_hex()).call()
    assert fetched["successful"] is False
    assert fetched["fee_charged"] == "200"


def test_resubmitting_an_applied_envelope_returns_the_same_result(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    envelope = sign_all(
        build(server, node, alice).append_payment_op(bob.public_key, Asset.native(), "5").build(),
        alice,
    )
    first = server.submit_transaction(envelope)
    before = native_balance(server, bob.public_key)
    again = server.submit_transaction(envelope)
    assert again["hash"] == first["hash"] and again["ledger"] == first["ledger"]
    assert native_balance(server, bob.public_key) == before  # applied once only


def test_medium_threshold_needs_enough_signer_weight(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    cosigner = Keypair.random()
    setup = sign_all(
        build(server, node, alice)
        .append_ed25519_public_key_signer(cosigner.public_key, weight=1)
        .append_set_options_op(low_threshold=1, med_threshold=2, high_threshold=2)
        .build(),
        alice,
    )
    server.submit_transaction(setup)
    doc = server.accounts().account_id(alice.public_key).call()
    assert doc["thresholds"] == {"low_threshold": 1, "med_threshold": 2, "high_threshold": 2}
    assert {s["key"]: s["weight"] for s in doc["signers"]} == {
        cosigner.public_key: 1,
        alice.public_key: 1,
    }
    assert doc["subentry_count"] == 1

    one_sig = sign_all(
        build(server, node, alice).append_payment_op(bob.public_key, Asset.native(), "1").build(),
        alice,
    )
    # Low threshold (the transaction) is met, medium (the payment) is not: refused.
    assert failure_codes(server, one_sig) == {
        "transaction": "tx_failed",
        "operations": ["op_bad_auth"],
    }

    two_sigs = sign_all(
        build(server, node, alice).append_payment_op(bob.public_key, Asset.native(), "1").build(),
        alice,
        cosigner,
    )
    assert server.submit_transaction(two_sigs)["successful"] is True


def test_master_weight_zero_locks_out_the_master_key(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    agent = Keypair.random()
    server.submit_transaction(
        sign_all(
            build(server, node, alice)
            .append_ed25519_public_key_signer(agent.public_key, weight=1)
            .append_set_options_op(master_weight=0)
            .build(),
            alice,
        )
    )
    by_master = sign_all(
        build(server, node, alice).append_payment_op(bob.public_key, Asset.native(), "1").build(),
        alice,
    )
    assert failure_codes(server, by_master) == {"transaction": "tx_bad_auth"}
    by_agent = sign_all(
        build(server, node, alice).append_payment_op(bob.public_key, Asset.native(), "1").build(),
        agent,
    )
    assert server.submit_transaction(by_agent)["successful"] is True


def test_hash_x_signer_is_satisfied_by_the_preimage(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    preimage = b"settlement secret 0123456789abcd"
    server.submit_transaction(
        sign_all(
            build(server, node, alice)
            .append_hashx_signer(hashlib.sha256(preimage).digest(), weight=1)
            .build(),
            alice,
        )
    )
    wrong = (
        build(server, node, alice).append_payment_op(bob.public_key, Asset.native(), "1").build()
    )
    wrong.sign_hashx(b"not the preimage")
    assert failure_codes(server, wrong) == {"transaction": "tx_bad_auth"}
    right = (
        build(server, node, alice).append_payment_op(bob.public_key, Asset.native(), "1").build()
    )
    right.sign_hashx(preimage)
    assert server.submit_transaction(right)["successful"] is True


def test_pre_authorised_transaction_needs_no_signature_and_is_one_time(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    account = server.load_account(alice.public_key)
    account.increment_sequence_number()  # the pre-authorised tx comes after the set-options tx
    preauth = (
        TransactionBuilder(account, node.network_passphrase, base_fee=100)
        .append_payment_op(bob.public_key, Asset.native(), "7")
        .add_time_bounds(0, 0)
        .build()
    )
    server.submit_transaction(
        sign_all(
            build(server, node, alice).append_pre_auth_tx_signer(preauth.hash(), weight=1).build(),
            alice,
        )
    )
    assert server.accounts().account_id(alice.public_key).call()["subentry_count"] == 1
    before = native_balance(server, bob.public_key)
    assert server.submit_transaction(preauth)["successful"] is True  # no signatures at all
    assert native_balance(server, bob.public_key) == before + 7
    doc = server.accounts().account_id(alice.public_key).call()
    assert doc["subentry_count"] == 0  # the pre-auth signer was spent
    assert [s["key"] for s in doc["signers"]] == [alice.public_key]
