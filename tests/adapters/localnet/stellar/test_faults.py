"""Injected faults, as the engine's reliable-submission rule must survive them."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests
from stellar_sdk import Asset, Keypair, Server
from stellar_sdk.exceptions import BadResponseError, ConnectionError, NotFoundError

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import (
    build,
    failure_codes,
    native_balance,
    sequence,
    sign_all,
)

Fund = Callable[[], Keypair]


def payment(server: Server, node: StellarNode, source: Keypair, dest: Keypair, amount: str = "5"):  # type: ignore[no-untyped-def]
    return sign_all(
        build(server, node, source)
        .append_payment_op(dest.public_key, Asset.native(), amount)
        .build(),
        source,
    )


def test_dropped_response_after_apply(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob = fund(), fund()
    before = native_balance(server, bob.public_key)
    envelope = payment(server, node, alice, bob)
    node.faults.drop_responses(1)
    with pytest.raises(ConnectionError):
        server.submit_transaction(envelope)
    # The transaction is in a ledger although the client never heard so.
    found = server.transactions().transaction(envelope.hash_hex()).call()
    assert found["successful"] is True
    assert native_balance(server, bob.public_key) == before + 5
    # Resubmitting the same envelope is safe: same result, applied once.
    assert server.submit_transaction(envelope)["ledger"] == found["ledger"]
    assert native_balance(server, bob.public_key) == before + 5


def test_timeout_after_apply_answers_504_but_commits(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    envelope = payment(server, node, alice, bob)
    node.faults.timeout_responses(1)
    with pytest.raises(BadResponseError) as caught:
        server.submit_transaction(envelope)
    assert caught.value.status == 504
    assert caught.value.type == "https://stellar.org/horizon-errors/transaction_submission_timeout"
    assert caught.value.extras is not None and caught.value.extras["hash"] == envelope.hash_hex()
    assert server.transactions().transaction(envelope.hash_hex()).call()["successful"] is True


def test_rejected_submissions_are_not_applied(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    before_seq = sequence(server, alice.public_key)
    node.faults.reject_submissions(2, "tx_insufficient_fee")
    for _ in range(2):
        assert failure_codes(server, payment(server, node, alice, bob)) == {
            "transaction": "tx_insufficient_fee"
        }
    assert sequence(server, alice.public_key) == before_seq
    node.faults.reject_submissions(1, 503)
    with pytest.raises(BadResponseError) as caught:
        server.submit_transaction(payment(server, node, alice, bob))
    assert caught.value.status == 503
    assert server.submit_transaction(payment(server, node, alice, bob))["successful"] is True


def test_partition_refuses_everything_until_it_ends(server: Server, node: StellarNode) -> None:
    node.faults.partition(0.5)
    with pytest.raises(ConnectionError):
        server.root().call()
    time.sleep(0.6)
    assert server.root().call()["network_passphrase"] == node.network_passphrase


def test_halted_ledgers_time_out_submissions_then_apply(
    node: StellarNode, server: Server, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    node.submission_timeout_s = 0.3
    node.faults.halt_ledgers()
    envelope = payment(server, node, alice, bob)
    with pytest.raises(BadResponseError) as caught:
        server.submit_transaction(envelope)
    assert caught.value.status == 504
    with pytest.raises(requests.HTTPError):
        requests.get(
            f"{node.base_url}/transactions/{envelope.hash_hex()}", timeout=5
        ).raise_for_status()
    node.faults.resume_ledgers()
    node.submission_timeout_s = 5.0
    # Still queued: resubmitting waits for the ledger that includes it.
    assert server.submit_transaction(envelope)["successful"] is True


def test_second_transaction_of_an_account_waits_behind_the_first(
    node: StellarNode, server: Server, fund: Fund
) -> None:
    """stellar-core queues one transaction per account; Horizon answers the other 504."""
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()
    node.submission_timeout_s = 0.3
    first = payment(server, node, alice, bob)
    account = server.load_account(alice.public_key)
    account.increment_sequence_number()
    from stellar_sdk import TransactionBuilder

    second = (
        TransactionBuilder(account, node.network_passphrase, base_fee=100)
        .append_payment_op(bob.public_key, Asset.native(), "1")
        .add_time_bounds(0, 0)
        .build()
    )
    second.sign(alice)
    for envelope in (first, second):
        with pytest.raises(BadResponseError):
            server.submit_transaction(envelope)
    node.close_ledger()
    assert server.transactions().transaction(first.hash_hex()).call()["successful"] is True
    with pytest.raises(NotFoundError):  # never queued, so never in a ledger
        server.transactions().transaction(second.hash_hex()).call()


def test_admin_endpoint_configures_faults(node: StellarNode, server: Server, fund: Fund) -> None:
    alice, bob = fund(), fund()
    reply = requests.post(
        f"{node.base_url}/_admin/faults",
        json={"action": "reject_submissions", "count": 1, "code": "tx_bad_seq"},
        timeout=5,
    )
    assert reply.status_code == 200 and reply.json()["rejections"] == ["tx_bad_seq"]
    assert failure_codes(server, payment(server, node, alice, bob)) == {"transaction": "tx_bad_seq"}
    bad = requests.post(f"{node.base_url}/_admin/faults", json={"action": "explode"}, timeout=5)
    assert bad.status_code == 400
    requests.post(f"{node.base_url}/_admin/advance_time", json={"seconds": 3600}, timeout=5)
    closed = requests.post(f"{node.base_url}/_admin/close_ledger", timeout=5).json()["sequence"]
    ledger = server.ledgers().ledger(closed).call()
    assert ledger["closed_at"] >= time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3500)
    )


def test_delay_slows_requests(node: StellarNode, server: Server) -> None:
    node.faults.delay(0.3, count=1)
    started = time.monotonic()
    server.root().call()
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    server.root().call()
    assert time.monotonic() - started < 0.3
