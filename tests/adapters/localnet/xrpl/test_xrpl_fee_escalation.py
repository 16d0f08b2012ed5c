"""Open-ledger fee escalation and the transaction queue.

Checked against rippled's TxQ (xrpld/app/misc/TxQ.cpp: ``FeeMetrics::scaleFeeLevel``,
``TxQ::apply``, ``TxQ::accept``, ``TxQ::doRPC``) and the ``fee`` handler
(xrpld/rpc/handlers/Fee1.cpp). With 2 transactions expected per ledger and the
minimum escalation multiplier 128000, a third transaction still enters at the
reference level; the fourth must pay 128000 * 3**2 / 2**2 = 288000, i.e. 11250 drops.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner
from xrpl.models.transactions import Payment, TicketCreate
from xrpl.transaction import autofill_and_sign, submit
from xrpl.wallet import Wallet

from adapters.localnet.xrpl import XrplNode
from adapters.localnet.xrpl.txq import STANDALONE_EXPECTED_SIZE
from settlement.cli.nodes import node_app
from tests.adapters.localnet.xrpl.conftest import Harness

GENESIS = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"
SURGE_FEE_DROPS = 11_250  # 288000 * 10 / 256


def _harness(**node_args: Any) -> Iterator[Harness]:
    with XrplNode(**node_args) as node:
        harness = Harness(node)
        yield harness
        harness.http.close()


@pytest.fixture
def small() -> Iterator[Harness]:
    yield from _harness(expected_ledger_size=2)


def _pay(ledger: Harness, wallet: Wallet, fee: int | None = None, **extra: Any) -> dict[str, Any]:
    tx = Payment(
        account=wallet.classic_address,
        destination=GENESIS,
        amount="1000",
        fee=str(fee) if fee is not None else None,
        **extra,
    )
    signed = ledger.sign(tx, wallet)
    result = submit(signed, ledger.client).result
    result["hash"] = signed.get_hash()
    return result


def _fill(ledger: Harness, count: int = 3) -> list[Wallet]:
    """Fund accounts, then put ``count`` reference-fee payments in the open ledger."""
    wallets = [ledger.fund() for _ in range(count + 3)]
    for wallet in wallets[:count]:
        assert _pay(ledger, wallet)["engine_result"] == "tesSUCCESS"
    return wallets[count:]


def test_fee_rises_past_the_expected_ledger_size(small) -> None:
    before = small.raw("fee")
    assert before["drops"]["open_ledger_fee"] == "10"
    assert before["expected_ledger_size"] == "2"
    _fill(small)
    fee = small.raw("fee")
    assert fee["current_ledger_size"] == "3"
    assert fee["levels"]["open_ledger_level"] == "288000"
    assert fee["drops"]["open_ledger_fee"] == str(SURGE_FEE_DROPS)
    assert fee["levels"]["median_level"] == "128000"
    assert fee["drops"]["minimum_fee"] == fee["drops"]["base_fee"] == "10"


def test_an_underpaying_transaction_is_queued_then_applied_in_a_later_ledger(small) -> None:
    spare = _fill(small)
    queued = _pay(small, spare[0])
    assert (queued["engine_result"], queued["engine_result_code"]) == ("terQUEUED", -89)
    assert queued["queued"] is True and queued["applied"] is False
    assert queued["open_ledger_cost"] == str(SURGE_FEE_DROPS)
    assert small.raw("fee")["current_queue_size"] == "1"
    # A queued transaction is in no ledger yet: tx does not know it.
    assert small.raw("tx", transaction=queued["hash"])["error"] == "txnNotFound"
    closed_in = small.node.chain.open_sequence
    small.close()
    # The next open ledger takes it first thing (TxQ::accept): applied, not yet validated.
    assert small.raw("tx", transaction=queued["hash"])["validated"] is False
    small.close()
    found = small.raw("tx", transaction=queued["hash"], api_version=2)
    assert found["validated"] is True and found["meta"]["TransactionResult"] == "tesSUCCESS"
    assert found["ledger_index"] == closed_in + 1
    assert small.raw("fee")["current_queue_size"] == "0"


def test_paying_the_open_ledger_fee_gets_in_at_once(small) -> None:
    spare = _fill(small)
    result = _pay(small, spare[0], fee=SURGE_FEE_DROPS)
    assert result["engine_result"] == "tesSUCCESS" and result["applied"] is True


def test_xrpl_py_autofill_pays_the_escalated_fee(small) -> None:
    spare = _fill(small)
    tx = Payment(account=spare[0].classic_address, destination=GENESIS, amount="1000")
    signed = autofill_and_sign(tx, small.client, spare[0])
    assert int(signed.fee) >= SURGE_FEE_DROPS
    assert submit(signed, small.client).result["engine_result"] == "tesSUCCESS"


def test_queue_applies_best_fee_first(small) -> None:
    spare = _fill(small)
    cheap = _pay(small, spare[0], fee=20)
    dear = _pay(small, spare[1], fee=500)
    assert cheap["engine_result"] == dear["engine_result"] == "terQUEUED"
    small.close()
    small.close()
    indexes = {
        name: small.raw("tx", transaction=r["hash"], api_version=2)["meta"]["TransactionIndex"]
        for name, r in (("cheap", cheap), ("dear", dear))
    }
    assert indexes["dear"] < indexes["cheap"]


def test_an_account_queues_consecutive_sequences(small) -> None:
    spare = _fill(small)
    wallet = spare[0]
    sequence = small.next_sequence(wallet.classic_address)
    first = _pay(small, wallet, sequence=sequence)
    second = _pay(small, wallet, sequence=sequence + 1)
    assert first["engine_result"] == second["engine_result"] == "terQUEUED"
    assert second["account_sequence_available"] == sequence + 2
    small.close()
    small.close()
    for result in (first, second):
        found = small.raw("tx", transaction=result["hash"], api_version=2)
        assert found["meta"]["TransactionResult"] == "tesSUCCESS"


def test_replacing_a_queued_transaction_needs_a_quarter_more(small) -> None:
    spare = _fill(small)
    wallet = spare[0]
    sequence = small.next_sequence(wallet.classic_address)
    assert _pay(small, wallet, fee=100, sequence=sequence)["engine_result"] == "terQUEUED"
    low = _pay(small, wallet, fee=110, sequence=sequence)
    assert low["engine_result"] == "telCAN_NOT_QUEUE_FEE" and low["queued"] is False
    assert _pay(small, wallet, fee=125, sequence=sequence)["engine_result"] == "terQUEUED"
    assert small.raw("fee")["current_queue_size"] == "1"


def _tickets(ledger: Harness, wallet: Wallet, count: int) -> list[int]:
    """Create ``count`` tickets for ``wallet`` in a ledger of their own; their sequences."""
    sequence = ledger.next_sequence(wallet.classic_address)
    done = ledger.submit(TicketCreate(account=wallet.classic_address, ticket_count=count), wallet)
    assert done.final_result == "tesSUCCESS"
    return [sequence + 1 + i for i in range(count)]


def test_a_queued_ticketed_transaction_applies_in_a_later_ledger(small) -> None:
    # TxQ keys entries by SeqProxy: a ticketed entry is tried once its ticket exists,
    # whatever the account's Sequence, and does not hold the account's next sequence
    # back behind it.
    owner = small.fund()
    (ticket,) = _tickets(small, owner, 1)
    _fill(small)
    queued = _pay(small, owner, sequence=0, ticket_sequence=ticket)
    assert queued["engine_result"] == "terQUEUED"
    small.close()
    assert small.raw("fee")["current_queue_size"] == "0"
    after = _pay(small, owner)
    assert after["engine_result"] == "tesSUCCESS" and after["queued"] is False
    small.close()
    for result in (queued, after):
        found = small.raw("tx", transaction=result["hash"], api_version=2)
        assert found["validated"] is True
        assert found["meta"]["TransactionResult"] == "tesSUCCESS"
    assert small.objects(owner.classic_address, "ticket") == []


def test_two_ticketed_transactions_of_one_account_both_queue_and_apply(small) -> None:
    owner = small.fund()
    tickets = _tickets(small, owner, 2)
    _fill(small)
    results = [_pay(small, owner, sequence=0, ticket_sequence=t) for t in tickets]
    assert [r["engine_result"] for r in results] == ["terQUEUED", "terQUEUED"]
    assert small.raw("fee")["current_queue_size"] == "2"
    small.close()
    small.close()
    for result in results:
        found = small.raw("tx", transaction=result["hash"], api_version=2)
        assert found["validated"] is True
        assert found["meta"]["TransactionResult"] == "tesSUCCESS"
    assert small.raw("fee")["current_queue_size"] == "0"


def test_a_transaction_expiring_too_soon_cannot_queue(small) -> None:
    spare = _fill(small)
    soon = small.node.chain.open_sequence + 1
    result = _pay(small, spare[0], last_ledger_sequence=soon)
    assert result["engine_result"] == "telCAN_NOT_QUEUE"
    assert small.raw("fee")["current_queue_size"] == "0"


def test_a_full_queue_takes_only_a_better_fee() -> None:
    for ledger in _harness(expected_ledger_size=2, max_queue_size=1):
        spare = _fill(ledger)
        assert _pay(ledger, spare[0], fee=20)["engine_result"] == "terQUEUED"
        assert ledger.raw("fee")["levels"]["minimum_level"] == str(20 * 256 // 10 + 1)
        full = _pay(ledger, spare[1], fee=20)
        assert full["engine_result"] == "telCAN_NOT_QUEUE_FULL"
        assert _pay(ledger, spare[2], fee=30)["engine_result"] == "terQUEUED"
        assert ledger.raw("fee")["current_queue_size"] == "1"


def test_below_the_reference_fee_is_refused_not_queued(small) -> None:
    spare = _fill(small)
    assert _pay(small, spare[0], fee=9)["engine_result"] == "telINSUF_FEE_P"
    assert small.raw("fee")["current_queue_size"] == "0"


def test_escalation_can_be_switched_off() -> None:
    for ledger in _harness(expected_ledger_size=2, fee_escalation=False):
        spare = _fill(ledger)
        assert _pay(ledger, spare[0])["engine_result"] == "tesSUCCESS"
        assert ledger.raw("fee")["drops"]["open_ledger_fee"] == "10"


def test_default_node_expects_a_standalone_ledger_size(ledger) -> None:
    fee = ledger.raw("fee")
    assert fee["expected_ledger_size"] == "1000"
    assert fee["max_queue_size"] == "20000"


def test_cli_passes_escalation_options(monkeypatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("adapters.localnet.xrpl.run_node", lambda **kw: seen.update(kw))
    result = CliRunner().invoke(
        node_app, ["xrpl", "--no-fee-escalation", "--expected-ledger-size", "5"]
    )
    assert result.exit_code == 0, result.output
    assert (seen["fee_escalation"], seen["expected_ledger_size"]) == (False, 5)
    assert CliRunner().invoke(node_app, ["xrpl", "--expected-ledger-size", "0"]).exit_code != 0


def test_cli_defaults_to_the_nodes_expected_ledger_size(monkeypatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("adapters.localnet.xrpl.run_node", lambda **kw: seen.update(kw))
    result = CliRunner().invoke(node_app, ["xrpl"])
    assert result.exit_code == 0, result.output
    assert seen["expected_ledger_size"] == STANDALONE_EXPECTED_SIZE
