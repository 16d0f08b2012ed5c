"""Fault injection: lost responses, delays, rejections, partitions, stalled closing."""

from __future__ import annotations

import time

import httpx
import pytest
from xrpl.clients import JsonRpcClient
from xrpl.models.requests import LedgerCurrent
from xrpl.models.transactions import Payment
from xrpl.transaction import submit

from adapters.localnet.xrpl import XrplNode

GENESIS = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"


def test_lost_submit_response_still_applies_once(ledger) -> None:
    alice = ledger.fund()
    signed = ledger.sign(
        Payment(account=alice.classic_address, destination=GENESIS, amount="7000"), alice
    )
    ledger.node.faults.drop_submit_responses(1)
    with pytest.raises(httpx.RemoteProtocolError):
        submit(signed, ledger.client)
    ledger.close()
    found = ledger.raw("tx", transaction=signed.get_hash(), api_version=2)
    assert found["validated"] is True
    assert found["meta"]["TransactionResult"] == "tesSUCCESS"
    assert submit(signed, ledger.client).result["engine_result"] == "tefPAST_SEQ"
    ledger.close()
    assert ledger.balance(alice.classic_address) == 1_000_000_000 - 7_010


def test_rejected_submit_reports_the_code_and_changes_nothing(ledger) -> None:
    alice = ledger.fund()
    seq = ledger.next_sequence(alice.classic_address)
    admin = ledger.raw("localnet_faults", action="reject_submits", count=1, code="telCAN_NOT_QUEUE")
    assert admin["faults"]["reject_submits"] == ["telCAN_NOT_QUEUE"]
    signed = ledger.sign(
        Payment(account=alice.classic_address, destination=GENESIS, amount="1000"), alice
    )
    result = submit(signed, ledger.client).result
    assert result["engine_result"] == "telCAN_NOT_QUEUE"
    assert result["engine_result_code"] == -392
    assert result["applied"] is False
    assert ledger.next_sequence(alice.classic_address) == seq
    # The fault was for one submit only: the same blob now applies.
    assert submit(signed, ledger.client).result["engine_result"] == "tesSUCCESS"


def test_delayed_responses_time_out_a_client(ledger) -> None:
    ledger.node.faults.delay_responses(0.5, count=1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(ledger.node.url, json={"method": "ping", "params": [{}]}, timeout=0.1)
    answer = httpx.post(ledger.node.url, json={"method": "ping", "params": [{}]}, timeout=2)
    assert answer.json()["result"]["status"] == "success"


def test_partition_refuses_connections_until_it_ends(ledger) -> None:
    result = ledger.raw("localnet_faults", action="partition", seconds=0.4)
    assert result["status"] == "success"
    time.sleep(0.1)
    with pytest.raises(httpx.ConnectError):
        httpx.post(ledger.node.url, json={"method": "ping", "params": [{}]}, timeout=1)
    time.sleep(0.5)
    client = JsonRpcClient(ledger.node.url)
    assert client.request(LedgerCurrent()).is_successful()


def test_heal_ends_a_partition_early(node) -> None:
    node.faults.partition(30)
    time.sleep(0.1)
    with pytest.raises(httpx.ConnectError):
        httpx.post(node.url, json={"method": "ping", "params": [{}]}, timeout=1)
    node.faults.heal()
    time.sleep(0.1)
    assert httpx.post(node.url, json={"method": "ping", "params": [{}]}).status_code == 200


def test_stalled_closing_stops_ledgers_until_resumed() -> None:
    with XrplNode(close_interval_s=0.05) as node:
        node.faults.stall_closing()
        time.sleep(0.1)
        stalled_at = node.chain.last_closed.header.sequence
        time.sleep(0.3)
        assert node.chain.last_closed.header.sequence == stalled_at
        answer = httpx.post(node.url, json={"method": "ledger_accept", "params": [{}]}).json()
        assert answer["result"]["error"] == "notSynced"
        node.faults.resume_closing()
        time.sleep(0.3)
        assert node.chain.last_closed.header.sequence > stalled_at


def test_unknown_fault_action_is_invalid_params(ledger) -> None:
    result = ledger.raw("localnet_faults", action="explode")
    assert result["error"] == "invalidParams"
    bad_code = ledger.raw("localnet_faults", action="reject_submits", code="tesNOPE")
    assert bad_code["error"] == "invalidParams"


def test_advance_time_over_rpc_moves_close_times(ledger) -> None:
    before = ledger.validated_close_time()
    ledger.raw("localnet_faults", action="advance_time", seconds=1_000)
    ledger.close()
    assert ledger.validated_close_time() >= before + 990
