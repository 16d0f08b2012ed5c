"""Surge pricing: a ledger holds max_tx_set_size operations, the best bids go first.

Checked against stellar-core src/herder/SurgePricingUtils.cpp (best fee per operation
first, skipping what no longer fits), TxSetUtils/TxSetFrame.cpp (when a transaction
did not fit, every included one pays the lowest included bid per operation),
TransactionQueue.cpp / TxQueueLimiter.cpp (a queue of two ledgers' operations, full:
evict lower bids or refuse tx_insufficient_fee with the fee needed; a transaction is
dropped after TRANSACTION_QUEUE_TIMEOUT_LEDGERS = 4 ledgers) and Horizon's fee_stats
action (ledger_capacity_usage, fee_charged / max_fee per operation).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from stellar_sdk import Asset, Keypair, Server, TransactionBuilder
from stellar_sdk import xdr as x
from stellar_sdk.exceptions import NotFoundError
from stellar_sdk.transaction_envelope import TransactionEnvelope

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import build, sign_all

Fund = Callable[[], Keypair]
T = x.TransactionResultCode
TX_SET_SIZE = 3


@pytest.fixture
def node() -> Iterator[StellarNode]:
    # Overrides conftest's node: three operations per ledger, a queue of six.
    stellar = StellarNode(close_interval_s=0.02, submission_timeout_s=5.0, max_tx_set_size=3)
    stellar.start()
    try:
        yield stellar
    finally:
        stellar.stop()


def pay(server: Server, node: StellarNode, source: Keypair, fee: int) -> TransactionEnvelope:
    return sign_all(
        build(server, node, source, fee=fee)
        .append_payment_op(node.root_keypair.public_key, Asset.native(), "1")
        .build(),
        source,
    )


def queue(node: StellarNode, envelope: TransactionEnvelope) -> tuple[int, dict[str, Any]]:
    reply = requests.post(
        f"{node.base_url}/transactions_async", data={"tx": envelope.to_xdr()}, timeout=5
    )
    return reply.status_code, reply.json()


def found(server: Server, envelope: TransactionEnvelope) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = server.transactions().transaction(envelope.hash_hex()).call()
    except NotFoundError:
        return None
    return doc


def test_the_highest_bids_go_first_and_pay_the_lowest_included_bid(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    payers = [fund() for _ in range(5)]
    node.faults.halt_ledgers()
    bids = (100, 500, 200, 400, 300)
    envelopes = [pay(server, node, k, fee) for k, fee in zip(payers, bids, strict=True)]
    for envelope in envelopes:
        assert queue(node, envelope)[0] == 201

    first = node.close_ledger()

    included = {fee: found(server, e) for fee, e in zip(bids, envelopes, strict=True)}
    assert included[100] is None and included[200] is None, "the lowest bids wait"
    for fee in (500, 400, 300):
        doc = included[fee]
        assert doc is not None and doc["ledger"] == first
        assert doc["fee_charged"] == "300", "surge pricing: the lowest included bid"
        assert doc["max_fee"] == str(fee)
    assert node.pending_count == 2
    stats = server.fee_stats().call()
    assert stats["ledger_capacity_usage"] == "1.00"
    assert stats["fee_charged"]["max"] == "300"
    assert stats["last_ledger_base_fee"] == "100"  # the header's base fee does not move

    second = node.close_ledger()
    for envelope in (envelopes[0], envelopes[2]):
        doc = found(server, envelope)
        assert doc is not None and doc["ledger"] == second
        assert doc["fee_charged"] == "100", "room for all: the network base fee"
    assert server.ledgers().ledger(first).call()["tx_set_operation_count"] == 3


def test_a_full_queue_refuses_a_bid_that_does_not_beat_the_cheapest(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    payers = [fund() for _ in range(7)]
    node.faults.halt_ledgers()
    queued = [pay(server, node, k, 100 + i) for i, k in enumerate(payers[:6])]
    for envelope in queued:
        assert queue(node, envelope)[0] == 201  # six operations: the queue is full

    status, body = queue(node, pay(server, node, payers[6], 100))
    assert (status, body["tx_status"]) == (400, "ERROR")
    result = x.TransactionResult.from_xdr(body["error_result_xdr"])
    assert result.result.code == T.txINSUFFICIENT_FEE
    assert result.fee_charged.int64 == 101, "one stroop per operation above the cheapest"
    assert node.pending_count == 6

    better = pay(server, node, payers[6], 150)
    assert queue(node, better) == (201, {"tx_status": "PENDING", "hash": better.hash_hex()})
    assert node.pending_count == 6, "the cheapest (100) was evicted"
    for _ in range(3):
        node.close_ledger()
    assert found(server, queued[0]) is None
    assert all(found(server, e) is not None for e in [*queued[1:], better])


def test_a_transaction_that_never_fits_is_dropped_after_four_ledgers(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    low, *high = [fund() for _ in range(13)]
    node.faults.halt_ledgers()
    cheap = pay(server, node, low, 100)
    assert queue(node, cheap)[0] == 201
    for round_ in range(4):
        for k in high[round_ * 3 : round_ * 3 + 3]:
            assert queue(node, pay(server, node, k, 1000))[0] == 201
        node.close_ledger()
    assert node.pending_count == 0, "dropped after waiting four ledgers"
    node.close_ledger()
    assert found(server, cheap) is None


def test_a_waiting_sync_submission_of_an_evicted_transaction_times_out(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    low, other, *payers = [fund() for _ in range(7)]
    node.faults.halt_ledgers()
    cheap = pay(server, node, low, 100)
    assert queue(node, cheap)[0] == 201
    for k in payers:
        assert queue(node, pay(server, node, k, 200))[0] == 201  # the queue is now full
    answers: list[requests.Response] = []

    def submit_and_wait() -> None:
        form = {"tx": cheap.to_xdr()}
        answers.append(requests.post(f"{node.base_url}/transactions", data=form, timeout=10))

    # POST /transactions of the queued cheap envelope waits for its ledger...
    waiter = threading.Thread(target=submit_and_wait)
    waiter.start()
    for _ in range(1000):  # until the submission is registered (a handshake, not a timer)
        if node.has_waiter(cheap.hash_hex()):
            break
        time.sleep(0.01)
    assert node.has_waiter(cheap.hash_hex())
    # ...until a better bid evicts it from the full queue: Horizon then answers 504.
    assert queue(node, pay(server, node, other, 300))[0] == 201
    waiter.join(timeout=10)
    assert answers and answers[0].status_code == 504
    assert answers[0].json()["extras"]["hash"] == cheap.hash_hex()


def test_max_tx_set_size_is_in_the_ledger_header(server: Server, node: StellarNode) -> None:
    latest = server.ledgers().order(desc=True).limit(1).call()["_embedded"]["records"][0]
    assert latest["max_tx_set_size"] == TX_SET_SIZE
    header = x.LedgerHeader.from_xdr(latest["header_xdr"])
    assert header.max_tx_set_size.uint32 == TX_SET_SIZE


def test_by_default_a_ledger_holds_testnets_100_operations() -> None:
    node = StellarNode(close_interval_s=0.02, submission_timeout_s=5.0)
    with node, Server(node.base_url) as horizon:
        payers = [Keypair.random() for _ in range(2)]
        for payer in payers:
            funded = requests.get(
                f"{node.base_url}/friendbot", {"addr": payer.public_key}, timeout=10
            )
            assert funded.status_code == 200
        node.faults.halt_ledgers()
        envelopes = []
        for payer, fee in zip(payers, (100, 200), strict=True):
            builder = build(horizon, node, payer, fee=fee)
            for _ in range(60):
                builder.append_payment_op(node.root_keypair.public_key, Asset.native(), "1")
            envelopes.append(sign_all(builder.build(), payer))
        for envelope in envelopes:
            assert queue(node, envelope)[0] == 201
        ledger = node.close_ledger()
        # 120 operations wait and 100 fit: the better bid goes in, the other waits
        included = found(horizon, envelopes[1])
        assert included is not None and included["ledger"] == ledger
        assert found(horizon, envelopes[0]) is None
        assert horizon.ledgers().ledger(ledger).call()["max_tx_set_size"] == 100


def test_without_a_limit_every_valid_transaction_goes_in() -> None:
    """Load generators that flood one ledger on purpose lift the limit (None): every
    valid queued transaction goes in at the base fee."""
    default = StellarNode(close_interval_s=0.02, submission_timeout_s=5.0, max_tx_set_size=None)
    with default, Server(default.base_url) as horizon:
        payers = [Keypair.random() for _ in range(2)]
        for payer in payers:
            funded = requests.get(
                f"{default.base_url}/friendbot", {"addr": payer.public_key}, timeout=10
            )
            assert funded.status_code == 200
        default.faults.halt_ledgers()
        envelopes = []
        for payer in payers:
            builder = build(horizon, default, payer, fee=100)
            for _ in range(60):
                builder.append_payment_op(default.root_keypair.public_key, Asset.native(), "1")
            envelopes.append(sign_all(builder.build(), payer))
        for envelope in envelopes:
            assert queue(default, envelope)[0] == 201
        ledger = default.close_ledger()
        for envelope in envelopes:
            doc = found(horizon, envelope)
            assert doc is not None and doc["ledger"] == ledger
            assert doc["fee_charged"] == "6000"
        assert horizon.ledgers().ledger(ledger).call()["max_tx_set_size"] == 100


def test_a_ledger_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_tx_set_size"):
        StellarNode(close_interval_s=0, max_tx_set_size=0)


def test_a_transaction_larger_than_a_ledger_waits_without_stopping_the_close() -> None:
    """The queue holds two ledgers of operations (TxQueueLimiter), so it takes a
    transaction larger than one ledger; no tx set can hold it, so it waits, does not
    stop a ledger from closing, and is dropped after four ledgers like any other."""
    node = StellarNode(close_interval_s=0.02, submission_timeout_s=5.0, max_tx_set_size=1)
    with node, Server(node.base_url) as horizon:
        payer = Keypair.random()
        funded = requests.get(f"{node.base_url}/friendbot", {"addr": payer.public_key}, timeout=10)
        assert funded.status_code == 200
        node.faults.halt_ledgers()
        builder = build(horizon, node, payer, fee=100)
        for _ in range(2):
            builder.append_payment_op(node.root_keypair.public_key, Asset.native(), "1")
        large = sign_all(builder.build(), payer)
        assert queue(node, large) == (201, {"tx_status": "PENDING", "hash": large.hash_hex()})

        closed = node.close_ledger()
        assert horizon.ledgers().ledger(closed).call()["tx_set_operation_count"] == 0
        assert node.pending_count == 1, "still queued: it waits as core's queue keeps it"
        for _ in range(3):
            node.close_ledger()
        assert node.pending_count == 0, "dropped after waiting four ledgers"
        assert found(horizon, large) is None


def test_a_transaction_larger_than_a_ledger_does_not_keep_smaller_ones_out(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    large_payer, small_payer = fund(), fund()
    node.faults.halt_ledgers()
    builder = build(server, node, large_payer, fee=1000)
    for _ in range(TX_SET_SIZE + 1):
        builder.append_payment_op(node.root_keypair.public_key, Asset.native(), "1")
    large = sign_all(builder.build(), large_payer)
    small = pay(server, node, small_payer, 100)
    assert queue(node, large)[0] == 201
    assert queue(node, small)[0] == 201

    ledger = node.close_ledger()
    doc = found(server, small)
    assert doc is not None and doc["ledger"] == ledger
    assert found(server, large) is None
    assert node.pending_count == 1


def test_a_transaction_larger_than_the_queue_is_try_again_later(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    payer = fund()
    builder = build(server, node, payer, fee=100)
    for _ in range(2 * TX_SET_SIZE + 1):
        builder.append_payment_op(node.root_keypair.public_key, Asset.native(), "1")
    status, body = queue(node, sign_all(builder.build(), payer))
    assert (status, body["tx_status"]) == (503, "TRY_AGAIN_LATER")
    assert node.pending_count == 0


def test_a_fee_bump_of_a_full_ledgers_worth_counts_one_operation_more() -> None:
    """A fee bump counts its inner operations + 1 (FeeBumpTransactionFrame::
    getNumOperations): wrapping 100 operations, it does not fit a 100-operation ledger,
    and the ledger still closes with what does fit."""
    node = StellarNode(close_interval_s=0.02, submission_timeout_s=5.0)
    with node, Server(node.base_url) as horizon:
        payer, sponsor, other = (Keypair.random() for _ in range(3))
        for keypair in (payer, sponsor, other):
            funded = requests.get(
                f"{node.base_url}/friendbot", {"addr": keypair.public_key}, timeout=10
            )
            assert funded.status_code == 200
        node.faults.halt_ledgers()
        builder = build(horizon, node, payer, fee=100)
        for _ in range(100):
            builder.append_payment_op(node.root_keypair.public_key, Asset.native(), "1")
        inner = sign_all(builder.build(), payer)
        bumped = TransactionBuilder.build_fee_bump_transaction(
            sponsor.public_key, 200, inner, node.network_passphrase
        )
        bumped.sign(sponsor)
        assert queue(node, bumped)[0] == 201  # type: ignore[arg-type]
        small = pay(horizon, node, other, 100)
        assert queue(node, small)[0] == 201

        ledger = node.close_ledger()
        doc = found(horizon, small)
        assert doc is not None and doc["ledger"] == ledger
        assert found(horizon, inner) is None
        assert node.pending_count == 1


def test_a_transaction_that_waited_leaves_no_age_behind_once_included(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    payers = [fund() for _ in range(TX_SET_SIZE + 1)]
    node.faults.halt_ledgers()
    envelopes = [pay(server, node, k, 200 + i) for i, k in enumerate(payers)]
    for envelope in envelopes:
        assert queue(node, envelope)[0] == 201
    node.close_ledger()
    with node.read() as ledger:
        assert ledger.queue_age == {envelopes[0].hash_hex(): 1}, "the lowest bid waited"

    node.close_ledger()

    assert found(server, envelopes[0]) is not None
    with node.read() as ledger:
        assert ledger.queue_age == {}, "an included transaction's age is forgotten"
