"""Ledger core: genesis, closing, hash chaining, close times, transaction hashes."""

from __future__ import annotations

import hashlib
import itertools

from xrpl.account import get_balance
from xrpl.ledger import get_latest_open_ledger_sequence, get_latest_validated_ledger_sequence
from xrpl.models.requests import Ledger, LedgerClosed, LedgerCurrent, Tx
from xrpl.models.transactions import Payment

from adapters.localnet.xrpl import XrplNode

GENESIS = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"


def test_fresh_node_is_like_a_fresh_standalone_rippled(ledger) -> None:
    assert get_latest_validated_ledger_sequence(ledger.client) == 2
    assert get_latest_open_ledger_sequence(ledger.client) == 3
    assert get_balance(GENESIS, ledger.client) == 100_000_000_000 * 1_000_000
    header = ledger.request(Ledger(ledger_index="validated"))["ledger"]
    assert header["total_coins"] == str(100_000_000_000 * 1_000_000)


def _header_hash(h: dict) -> str:
    data = (
        b"LWR\x00"
        + int(h["ledger_index"]).to_bytes(4, "big")
        + int(h["total_coins"]).to_bytes(8, "big")
        + bytes.fromhex(h["parent_hash"])
        + bytes.fromhex(h["transaction_hash"])
        + bytes.fromhex(h["account_hash"])
        + int(h["parent_close_time"]).to_bytes(4, "big")
        + int(h["close_time"]).to_bytes(4, "big")
        + int(h["close_time_resolution"]).to_bytes(1, "big")
        + int(h["close_flags"]).to_bytes(1, "big")
    )
    return hashlib.sha512(data).digest()[:32].hex().upper()


def test_each_closed_ledger_chains_to_its_parent_by_a_real_hash(ledger) -> None:
    alice = ledger.fund()
    ledger.submit(Payment(account=alice.classic_address, destination=GENESIS, amount="1000"), alice)
    ledger.close()
    last = get_latest_validated_ledger_sequence(ledger.client)
    headers = [ledger.request(Ledger(ledger_index=i))["ledger"] for i in range(2, last + 1)]
    for parent, child in itertools.pairwise(headers):
        assert child["parent_hash"] == parent["ledger_hash"]
        assert child["parent_close_time"] == parent["close_time"]
        assert child["close_time"] > parent["close_time"]
    for header in headers:
        assert header["ledger_hash"] == _header_hash(header)
    with_txs = [h for h in headers if h["transaction_hash"] != "0" * 64]
    assert with_txs, "ledgers holding transactions commit to them"
    # Burned fees leave the total supply.
    assert int(headers[-1]["total_coins"]) < int(headers[0]["total_coins"])


def test_ledger_accept_closes_and_validates_and_time_follows_the_node_clock(ledger) -> None:
    before = ledger.request(LedgerClosed())["ledger_index"]
    ledger.close()
    assert ledger.request(LedgerClosed())["ledger_index"] == before + 1
    assert ledger.request(LedgerCurrent())["ledger_current_index"] == before + 2
    first = ledger.validated_close_time()
    ledger.node.advance_time(3_600)
    ledger.close()
    # Close times are rounded to the 10 s resolution.
    assert abs(ledger.validated_close_time() - (first + 3_600)) <= 10


def test_transaction_hash_equals_xrpl_py_hash_and_tx_finds_it_validated(ledger) -> None:
    alice = ledger.fund()
    signed = ledger.sign(
        Payment(account=alice.classic_address, destination=GENESIS, amount="2500"), alice
    )
    done = ledger.submit_signed(signed, close=False)
    assert done.engine_result == "tesSUCCESS"
    pending = ledger.request(Tx(transaction=signed.get_hash()))
    assert pending["validated"] is False
    ledger.close()
    found = ledger.request(Tx(transaction=signed.get_hash()))
    assert found["hash"] == signed.get_hash()
    assert found["validated"] is True
    assert found["meta"]["TransactionResult"] == "tesSUCCESS"
    assert found["meta"]["delivered_amount"] == "2500"
    assert found["tx_json"]["DeliverMax"] == "2500"  # v2 names a Payment's Amount so
    assert "Amount" not in found["tx_json"]
    header = ledger.request(
        Ledger(ledger_index=found["ledger_index"], transactions=True, expand=True)
    )["ledger"]
    assert header["ledger_hash"] == found["ledger_hash"]
    assert [t["hash"] for t in header["transactions"]] == [signed.get_hash()]
    by_ctid = ledger.raw("tx", ctid=found["ctid"], api_version=2)
    assert by_ctid["hash"] == signed.get_hash()


def test_current_ledger_reads_see_open_ledger_changes_validated_do_not(ledger) -> None:
    alice = ledger.fund()
    start = ledger.balance(alice.classic_address)
    ledger.submit(
        Payment(account=alice.classic_address, destination=GENESIS, amount="1000000"),
        alice,
        close=False,
    )
    assert int(ledger.account(alice.classic_address, "current")["Balance"]) == start - 1_000_010
    assert ledger.balance(alice.classic_address) == start


def test_node_rejects_unknown_ledger_and_reports_it_like_rippled(ledger) -> None:
    result = ledger.raw("ledger", ledger_index=10_000)
    assert result["status"] == "error"
    assert result["error"] == "lgrNotFound"


def test_context_manager_stops_serving() -> None:
    import httpx
    import pytest

    with XrplNode() as node:
        url = node.url
        assert httpx.post(url, json={"method": "ping", "params": [{}]}).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, json={"method": "ping", "params": [{}]}, timeout=2)
