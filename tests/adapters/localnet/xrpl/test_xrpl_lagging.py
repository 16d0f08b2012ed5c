"""A lagging server behind the same URL: a stale read right after a fresh one.

A lagging rippled answers from its own newest validated ledger: ``tx`` (Tx.cpp) does not
know later transactions and, for a range past its ledgers, answers ``searched_all``
false (TransactionMaster::fetch with a range the server does not hold); account_info,
account_objects, ledger and server_info (ServerInfo.cpp, validated_ledger and
complete_ledgers) show its older state.
"""

from __future__ import annotations

from typing import Any

import pytest
from xrpl.models.requests import AccountInfo, ServerInfo, Tx
from xrpl.models.transactions import Payment
from xrpl.transaction import submit

from adapters.localnet.xrpl import XrplNode
from adapters.localnet.xrpl.hashing import account_index

GENESIS = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"


def _validated_payment(ledger) -> tuple[Any, str]:
    alice = ledger.fund()
    done = ledger.submit(
        Payment(account=alice.classic_address, destination=GENESIS, amount="4321"), alice
    )
    assert done.final_result == "tesSUCCESS"
    return alice, done.tx_hash


def test_a_client_reads_fresh_then_stale_then_fresh(ledger) -> None:
    _, tx_hash = _validated_payment(ledger)
    newest = ledger.node.chain.last_closed.header.sequence
    ledger.node.faults.lagging_server(ledgers_behind=2, share=0.5)
    fresh = ledger.request(Tx(transaction=tx_hash))
    stale = ledger.raw("tx", transaction=tx_hash)
    again = ledger.request(Tx(transaction=tx_hash))
    assert fresh["validated"] is True and again["validated"] is True
    assert stale["error"] == "txnNotFound"
    info = [ledger.request(ServerInfo())["info"]["validated_ledger"]["seq"] for _ in range(2)]
    assert sorted(info) == [newest - 2, newest]
    status = ledger.raw("localnet_faults", action="status")["faults"]["lagging_server"]
    assert status["ledgers_behind"] == 2 and status["stale_reads"] == 2


def test_the_lagging_server_never_claims_to_have_searched_ledgers_it_lacks(ledger) -> None:
    _, tx_hash = _validated_payment(ledger)
    newest = ledger.node.chain.last_closed.header.sequence
    ledger.node.faults.lagging_server(ledgers_behind=1, share=1)
    miss = ledger.raw("tx", transaction=tx_hash, min_ledger=2, max_ledger=newest)
    assert miss["error"] == "txnNotFound"
    assert miss["searched_all"] is False
    # Within the ledgers it has, a miss is a real miss.
    older = ledger.raw("tx", transaction=tx_hash, min_ledger=2, max_ledger=newest - 1)
    assert older["searched_all"] is True
    assert ledger.raw("server_info")["info"]["complete_ledgers"].endswith(f"-{newest - 1}")


def test_account_state_is_the_older_ledgers(ledger) -> None:
    alice, _ = _validated_payment(ledger)
    fresh_balance = ledger.balance(alice.classic_address)
    ledger.node.faults.lagging_server(ledgers_behind=1, share=1)
    for index in ("validated", "current"):
        stale = ledger.request(AccountInfo(account=alice.classic_address, ledger_index=index))
        assert int(stale["account_data"]["Balance"]) == fresh_balance + 4321 + 10
    newest = ledger.node.chain.last_closed.header.sequence
    # Its open ledger is the one after its newest validated: the fresh one's newest.
    assert ledger.raw("ledger", ledger_index=newest)["ledger"]["closed"] is False
    assert ledger.raw("ledger", ledger_index=newest + 1)["error"] == "lgrNotFound"
    assert ledger.raw("ledger_current")["ledger_current_index"] == newest
    ledger.node.faults.clear()
    assert ledger.balance(alice.classic_address) == fresh_balance


def test_submits_reach_the_fresh_server(ledger) -> None:
    alice, _ = _validated_payment(ledger)
    ledger.node.faults.lagging_server(ledgers_behind=1, share=1)
    # A client that takes its Sequence from the lagging server signs a spent one.
    stale_sequence = ledger.next_sequence(alice.classic_address)
    fresh_sequence = ledger.node.chain.open_state.read(account_index(alice.classic_address))[
        "Sequence"
    ]
    assert stale_sequence == fresh_sequence - 1

    def payment(sequence: int) -> Payment:
        return Payment(
            account=alice.classic_address,
            destination=GENESIS,
            amount="1",
            fee="10",
            sequence=sequence,
            last_ledger_sequence=ledger.node.chain.open_sequence + 5,
        )

    stale = ledger.sign(payment(stale_sequence), alice)
    assert submit(stale, ledger.client).result["engine_result"] == "tefPAST_SEQ"
    fresh = ledger.sign(payment(fresh_sequence), alice)
    assert submit(fresh, ledger.client).result["engine_result"] == "tesSUCCESS"


def test_the_fault_over_json_rpc(ledger) -> None:
    set_ = ledger.raw("localnet_faults", action="lagging_server", ledgers_behind=3, share="1/3")
    assert set_["faults"]["lagging_server"] == {
        "ledgers_behind": 3,
        "share": "1/3",
        "stale_reads": 0,
    }
    cleared = ledger.raw("localnet_faults", action="clear")
    assert cleared["faults"]["lagging_server"] is None


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"ledgers_behind": 0},
        {"ledgers_behind": 201},
        {"ledgers_behind": "2"},
        {"ledgers_behind": True},
        {"ledgers_behind": 2, "share": 0},
        {"ledgers_behind": 2, "share": 1.5},
        {"ledgers_behind": 2, "share": "half"},
        {"ledgers_behind": 2, "share": [1]},
    ],
)
def test_bad_lagging_server_parameters(ledger, params: dict[str, Any]) -> None:
    result = ledger.raw("localnet_faults", action="lagging_server", **params)
    assert result["error"] == "invalidParams", result
    assert ledger.raw("localnet_faults", action="status")["faults"]["lagging_server"] is None


def test_after_a_restart_the_lag_is_bounded_by_the_states_kept(tmp_path) -> None:
    with XrplNode(data_dir=tmp_path) as first:
        for _ in range(3):
            first.close_ledger()
    with XrplNode(data_dir=tmp_path) as restarted:
        restarted.faults.lagging_server(ledgers_behind=2, share=1)
        newest = restarted.chain.last_closed.header.sequence
        answer = restarted.rpc.handle("server_info", {})
        # Older states are gone after a restart (README): it answers, from the newest.
        assert answer["status"] == "success"
        assert answer["info"]["validated_ledger"]["seq"] == newest
