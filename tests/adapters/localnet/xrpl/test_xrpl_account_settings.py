"""AccountSet's settings fields, as rippled's SetAccount.cpp applies them.

preflight: TickSize 0 or 3..16 (temBAD_TICK_SIZE), MessageKey a valid public key or
empty (telBAD_PUBLIC_KEY); doApply: each field stored on the AccountRoot, or removed by
its clearing value (empty, all-zero hash, TickSize 0 or 16).
"""

from __future__ import annotations

from typing import Any

from xrpl.models.transactions import AccountSet

EMAIL_HASH = "10000000002000000000300000000012"
MESSAGE_KEY = "03AB40A0490F9B7ED8DF29D246BF2D6269820A0EE7742ACDD457BEA7C7D0931EDB"
WALLET_LOCATOR = "AB" * 32


def _account_set(ledger, wallet, **fields: Any):
    """Submit a raw AccountSet: xrpl-py's model refuses some of these values itself."""
    tx = {
        "TransactionType": "AccountSet",
        "Account": wallet.classic_address,
        "Fee": "10",
        "Sequence": ledger.next_sequence(wallet.classic_address),
        **fields,
    }
    return ledger.submit_json(tx, wallet)


def test_every_settings_field_at_once_applies_as_xrpl_py_submits_it(ledger) -> None:
    # the field set of xrpl-py's integration test_all_fields_minus_set_flag
    alice = ledger.fund()
    done = ledger.submit(
        AccountSet(
            account=alice.classic_address,
            clear_flag=3,
            domain="6578616d706c652e636f6d",
            email_hash=EMAIL_HASH,
            message_key=MESSAGE_KEY,
            transfer_rate=0,
            tick_size=10,
        ),
        alice,
    )
    assert done.final_result == "tesSUCCESS"
    assert _account_set(ledger, alice, WalletLocator=WALLET_LOCATOR).final_result == "tesSUCCESS"
    root = ledger.account(alice.classic_address)
    assert root["EmailHash"] == EMAIL_HASH
    assert root["MessageKey"] == MESSAGE_KEY
    assert root["WalletLocator"] == WALLET_LOCATOR
    assert root["TickSize"] == 10
    assert root["Domain"] == "6578616D706C652E636F6D"
    assert "TransferRate" not in root


def test_clearing_values_remove_the_fields(ledger) -> None:
    alice = ledger.fund()
    _account_set(
        ledger,
        alice,
        EmailHash=EMAIL_HASH,
        MessageKey=MESSAGE_KEY,
        TickSize=5,
        WalletLocator=WALLET_LOCATOR,
    )
    done = _account_set(
        ledger,
        alice,
        EmailHash="0" * 32,
        MessageKey="",
        TickSize=16,  # the maximum means no rounding: stored as absence
        WalletLocator="0" * 64,
    )
    assert done.final_result == "tesSUCCESS"
    root = ledger.account(alice.classic_address)
    for field in ("EmailHash", "MessageKey", "TickSize", "WalletLocator"):
        assert field not in root


def test_tick_size_out_of_range_is_malformed_and_changes_nothing(ledger) -> None:
    alice = ledger.fund()
    before = ledger.account(alice.classic_address)
    for size in (1, 2, 17):
        done = _account_set(ledger, alice, TickSize=size)
        assert done.engine_result == "temBAD_TICK_SIZE", size
    assert ledger.account(alice.classic_address) == before


def test_a_message_key_that_is_no_public_key_is_refused(ledger) -> None:
    alice = ledger.fund()
    before = ledger.account(alice.classic_address)
    for key in ("04" + "AB" * 32, "03ABCD", "ED" + "11" * 33):
        done = _account_set(ledger, alice, MessageKey=key)
        assert done.engine_result == "telBAD_PUBLIC_KEY", key
    assert ledger.account(alice.classic_address) == before
