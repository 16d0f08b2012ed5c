"""Stellar fees priced from Horizon's fee statistics, under the local network's surge
pricing: a ledger of this module's node holds four operations.

A transaction bidding the base fee waits behind higher bids ledger after ledger and
expires; signed again at the same fee it fares no better. Priced from the statistics
it gets in, and still pays only the ledger's clearing price.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from stellar_sdk import Asset as SdkAsset
from stellar_sdk import TransactionBuilder, TransactionEnvelope

from adapters.chain import Applied, Pending
from adapters.localnet.stellar import StellarNode
from adapters.resilience import ChainGuard
from adapters.stellar import StellarChain
from adapters.stellar.fees import bid_per_op
from adapters.stellar.horizon import FeeStats
from tests.adapters.conftest import STELLAR_CLOSE_INTERVAL_S, STELLAR_SUBMISSION_TIMEOUT_S
from tests.adapters.stellar.test_stellar_adapter import (
    POLICY,
    STROOP,
    StellarHarness,
    halted,
    local_harness,
    new_leg,
)

LEDGER_OPS = 4
COMPETING_BID = 300


@pytest.fixture(scope="module")
def stellar_network() -> Iterator[StellarNode]:
    """This module's node: four operations a ledger, so a few transactions surge."""
    node = StellarNode(
        close_interval_s=STELLAR_CLOSE_INTERVAL_S,
        submission_timeout_s=STELLAR_SUBMISSION_TIMEOUT_S,
        max_tx_set_size=LEDGER_OPS,
    )
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def local(stellar_node: StellarNode) -> Iterator[StellarHarness]:
    h = local_harness(stellar_node, credit=False)
    yield h
    h.close()


def chain_with(
    h: StellarHarness,
    *,
    fee_per_op_stroops: int | None = None,
    max_fee_per_op_stroops: int = 10_000,
) -> StellarChain:
    assert h.node is not None
    return StellarChain(
        h.node.base_url,
        h.passphrase,
        agent=h.agent,
        signer=h.signer,
        guard=ChainGuard("stellar", POLICY),
        head_fresh_s=0.0,
        fee_per_op_stroops=fee_per_op_stroops,
        max_fee_per_op_stroops=max_fee_per_op_stroops,
    )


def compete(h: StellarHarness, account: str) -> None:
    """Queue a one-operation payment bidding COMPETING_BID per operation."""
    builder = TransactionBuilder(
        h.horizon.load_account(account), h.passphrase, base_fee=COMPETING_BID
    ).add_time_bounds(0, h.ledger_now_s() + 300)
    builder.append_payment_op(h.agent, SdkAsset.native(), "1")
    envelope = builder.build()
    envelope.sign(h.keys[account])
    assert h.horizon.submit_transaction_async(envelope)["tx_status"] == "PENDING"


def bid_of(blob: str, passphrase: str) -> int:
    transaction = TransactionEnvelope.from_xdr(blob, passphrase).transaction
    return transaction.fee // len(transaction.operations)


def test_a_transaction_priced_from_fee_stats_gets_in_where_a_base_fee_one_is_left_out(
    local: StellarHarness,
) -> None:
    h = local
    competitors = [h.new_account() for _ in range(10)]
    base_fee_chain = chain_with(h, fee_per_op_stroops=100)  # every fee the base fee
    capped_chain = chain_with(h, max_fee_per_op_stroops=250)
    ours, theirs, other = new_leg(h), new_leg(h), new_leg(h)
    try:
        with halted(h) as node:
            for _ in range(5):  # the statistics' five ledgers: nothing but the surge
                node.close_ledger()
            for account in competitors[:5]:
                compete(h, account)
            node.close_ledger()  # four in at the competing bid, one left waiting
            stats = h.chain._horizon.fee_stats()
            assert stats.fee_charged["p90"] == COMPETING_BID
            assert stats.ledger_capacity_usage == 1

            priced = h.chain.prepare_lock(ours, h.terms(3600))
            at_base = base_fee_chain.prepare_lock(theirs, h.terms(3600))
            assert bid_of(priced.blob, h.passphrase) == 2 * COMPETING_BID
            assert bid_of(at_base.blob, h.passphrase) == 100
            capped = capped_chain.prepare_lock(other, h.terms(3600))
            assert bid_of(capped.blob, h.passphrase) == 250, "the cap binds"

            for account in competitors[5:]:  # with the one left waiting: six bids
                compete(h, account)
            assert isinstance(h.chain.submit(priced), Pending)
            assert isinstance(base_fee_chain.submit(at_base), Pending)
            ledger = node.close_ledger()

            got_in = h.chain.status(priced)
            left_out = base_fee_chain.status(at_base)
        assert isinstance(got_in, Applied) and got_in.ledger_index == ledger, got_in
        assert isinstance(left_out, Pending), left_out
        # it bid twice the competing fee and was charged the ledger's clearing price
        assert h.fee_paid(priced.tx_hash) == COMPETING_BID * STROOP
    finally:
        base_fee_chain.close()
        capped_chain.close()


def stats(p90: int, base: int = 100) -> FeeStats:
    return FeeStats(
        last_ledger=10,
        last_ledger_base_fee_stroops=base,
        ledger_capacity_usage=Decimal("0.5"),
        fee_charged={"p90": p90},
        max_fee={"p90": p90},
    )


@pytest.mark.parametrize(
    ("p90", "cap", "bid"),
    [
        (100, 10_000, 200),  # no surge: twice the base fee, charged the base fee
        (300, 10_000, 600),  # a surge: twice what most recent ledgers charged
        (8_000, 10_000, 10_000),  # capped
        (50, 10_000, 100),  # never below the base fee
    ],
)
def test_the_bid_follows_recent_charged_fees_within_the_cap(p90: int, cap: int, bid: int) -> None:
    assert bid_per_op(stats(p90), base_fee_stroops=100, max_fee_per_op_stroops=cap) == bid


def test_a_cap_below_the_base_fee_is_refused(local: StellarHarness) -> None:
    with pytest.raises(ValueError, match="base fee"):
        bid_per_op(stats(100), base_fee_stroops=100, max_fee_per_op_stroops=99)
    with pytest.raises(ValueError, match="base fee"):
        chain_with(local, max_fee_per_op_stroops=99)


def test_fee_statistics_are_read_once_per_ledger(
    local: StellarHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pricing several transactions against one ledger asks Horizon once; a newer
    ledger is priced from statistics read again."""
    h = local
    reads: list[int] = []
    read = h.chain._horizon.fee_stats

    def counted() -> FeeStats:
        answer = read()
        reads.append(answer.last_ledger)
        return answer

    legs = [new_leg(h) for _ in range(4)]  # accounts are made while ledgers close
    monkeypatch.setattr(h.chain._horizon, "fee_stats", counted)
    with halted(h) as node:
        node.close_ledger()
        for leg in legs[:3]:
            h.chain.prepare_lock(leg, h.terms(3600))
        assert len(reads) == 1, reads
        node.close_ledger()
        h.chain.prepare_lock(legs[3], h.terms(3600))
    assert len(reads) == 2 and reads[1] > reads[0], reads
