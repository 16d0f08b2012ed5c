"""A blob that does not fit its type's template is no transaction: refused, never applied.

Checked against rippled's ``STObject::applyTemplate`` (libxrpl/protocol/STObject.cpp),
the templates of ``TxFormats.cpp`` / ``transactions.macro``, and the ``submit`` handler
(xrpld/rpc/handlers/Submit.cpp), which answers the STTx constructor's exception as
``error: invalidTransaction`` with its text in ``error_exception``.
"""

from __future__ import annotations

from typing import Any

import pytest
from xrpl.asyncio.transaction.reliable_submission import XRPLReliableSubmissionException
from xrpl.clients import XRPLRequestFailureException
from xrpl.transaction import submit_and_wait

from tests.adapters.localnet.xrpl.conftest import sign_json

GENESIS = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"


def _payment(ledger, wallet, **extra: Any) -> dict[str, Any]:
    tx: dict[str, Any] = {
        "TransactionType": "Payment",
        "Account": wallet.classic_address,
        "Destination": GENESIS,
        "Amount": "1000",
        "Fee": "10",
        "Sequence": ledger.next_sequence(wallet.classic_address),
        "LastLedgerSequence": ledger.node.chain.open_sequence + 10,
    }
    tx.update(extra)
    return {k: v for k, v in tx.items() if v is not None}


def _refused(ledger, wallet, tx_json: dict[str, Any]) -> str:
    """Submit; assert nothing applied (before and after a close); return the text."""
    sequence = ledger.next_sequence(wallet.classic_address)
    balance = ledger.balance(wallet.classic_address)
    blob, tx_hash = sign_json(tx_json, wallet)
    result = ledger.raw("submit", tx_blob=blob)
    assert result["status"] == "error", result
    assert result["error"] == "invalidTransaction"
    assert "engine_result" not in result
    ledger.close()
    assert ledger.next_sequence(wallet.classic_address) == sequence
    assert ledger.balance(wallet.classic_address) == balance
    assert ledger.raw("tx", transaction=tx_hash)["error"] == "txnNotFound"
    text: str = result["error_exception"]
    return text


def test_payment_with_cancel_after_is_refused_not_applied(ledger) -> None:
    alice = ledger.fund()
    tx = _payment(ledger, alice, CancelAfter=800_000_000)
    assert _refused(ledger, alice, tx) == "Field 'CancelAfter' found in disallowed location."


def test_blob_without_sequence_is_not_read_as_sequence_zero(ledger) -> None:
    alice = ledger.fund()
    tx = _payment(ledger, alice, Sequence=None)
    assert _refused(ledger, alice, tx) == "Field 'Sequence' is required but missing."


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Destination": None}, "Field 'Destination' is required but missing."),
        ({"Amount": None}, "Field 'Amount' is required but missing."),
        ({"Fee": None}, "Field 'Fee' is required but missing."),
        ({"Owner": GENESIS}, "Field 'Owner' found in disallowed location."),
        ({"TicketCount": 2}, "Field 'TicketCount' found in disallowed location."),
    ],
)
def test_payment_template(ledger, change, message) -> None:
    alice = ledger.fund()
    assert _refused(ledger, alice, _payment(ledger, alice, **change)) == message


@pytest.mark.parametrize(
    ("tx_type", "fields", "message"),
    [
        ("EscrowFinish", {"Owner": GENESIS}, "Field 'OfferSequence' is required but missing."),
        ("EscrowFinish", {"OfferSequence": 3}, "Field 'Owner' is required but missing."),
        ("EscrowCancel", {"Owner": GENESIS}, "Field 'OfferSequence' is required but missing."),
        ("EscrowCreate", {"Amount": "5"}, "Field 'Destination' is required but missing."),
        ("TicketCreate", {}, "Field 'TicketCount' is required but missing."),
        ("TrustSet", {"Destination": GENESIS}, "Field 'Destination' found in disallowed location."),
        ("AccountSet", {"Amount": "1"}, "Field 'Amount' found in disallowed location."),
        ("DepositPreauth", {"Owner": GENESIS}, "Field 'Owner' found in disallowed location."),
    ],
)
def test_other_templates(ledger, tx_type, fields, message) -> None:
    alice = ledger.fund()
    tx = {
        "TransactionType": tx_type,
        "Account": alice.classic_address,
        "Fee": "10",
        "Sequence": ledger.next_sequence(alice.classic_address),
        **fields,
    }
    assert _refused(ledger, alice, tx) == message


def test_a_well_formed_blob_still_applies(ledger) -> None:
    alice = ledger.fund()
    submitted = ledger.submit_json(_payment(ledger, alice), alice)
    assert (submitted.engine_result, submitted.final_result) == ("tesSUCCESS", "tesSUCCESS")


def test_delegate_is_refused_as_a_disabled_amendment(ledger) -> None:
    # Transactor::preflight1: sfDelegate without PermissionDelegation is temDISABLED
    alice = ledger.fund()
    submitted = ledger.submit_json(_payment(ledger, alice, Delegate=GENESIS), alice)
    assert submitted.engine_result == "temDISABLED"
    assert submitted.final_result is None


def test_submit_and_wait_fails_fast_on_a_blob_the_node_refuses(ledger) -> None:
    """xrpl-py's reliable submission raises at once instead of polling until timeout."""
    alice = ledger.fund()
    blob, _ = sign_json(_payment(ledger, alice, Sequence=None), alice)
    with pytest.raises((XRPLRequestFailureException, XRPLReliableSubmissionException)) as info:
        submit_and_wait(blob, ledger.client)
    assert "invalidTransaction" in str(info.value)
    # The node's open ledger never saw it.
    assert ledger.node.chain.open_records == []
