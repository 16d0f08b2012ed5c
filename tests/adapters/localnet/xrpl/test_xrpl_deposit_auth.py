"""Deposit authorisation: AccountSet asfDepositAuth, DepositPreauth and their effects.

Checked against rippled: ``SetAccount.cpp`` (asfDepositAuth), ``DepositPreauth.cpp``
(preflight/preclaim/doApply), ``Payment.cpp`` (the DepositAuth checks of the XRP and
the IOU branches, and the base-reserve exception), ``Escrow.cpp`` (EscrowFinish's
``verifyDepositPreauth`` with the submitter as sender) and ``View.cpp``
(``verifyDepositPreauth``).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.transactions import (
    AccountSet,
    AccountSetAsfFlag,
    DepositPreauth,
    EscrowCreate,
    EscrowFinish,
    Payment,
    TrustSet,
)

from adapters.localnet.xrpl import hashing

_BASE_RESERVE_DROPS = 1_000_000


def _deposit_auth(ledger, wallet) -> None:
    done = ledger.submit(
        AccountSet(account=wallet.classic_address, set_flag=AccountSetAsfFlag.ASF_DEPOSIT_AUTH),
        wallet,
    )
    assert done.final_result == "tesSUCCESS"


def _preauth(ledger, owner, sender) -> str | None:
    done = ledger.submit(
        DepositPreauth(account=owner.classic_address, authorize=sender.classic_address), owner
    )
    return done.final_result or done.engine_result


def _pay(ledger, sender, destination, amount="5000000"):
    return ledger.submit(
        Payment(
            account=sender.classic_address,
            destination=destination.classic_address,
            amount=amount,
        ),
        sender,
    )


def test_deposit_preauth_index_is_rippleds() -> None:
    # The DepositPreauth example of xrpl.org's ledger-entry reference.
    index = hashing.deposit_preauth_index(
        "rsUiUMpnrgxQp24dJYZDhmV4bE3aBtQyt8", "rEhxGqkqPPSxQ3P25J66ft5TwpzV14k2de"
    )
    assert index == "4A255038CC3ADCC1A9C91509279B59908251728D0DAADB248FFE297D0F7E068C"


def test_deposit_auth_refuses_xrp_from_strangers_until_preauthorised(ledger) -> None:
    # Payment.cpp XRP branch: verifyDepositPreauth after the funds check.
    shop, alice = ledger.fund(), ledger.fund()
    _deposit_auth(ledger, shop)
    assert ledger.account(shop.classic_address)["Flags"] & 0x01000000
    before = ledger.balance(shop.classic_address)
    refused = _pay(ledger, alice, shop)
    assert refused.final_result == "tecNO_PERMISSION"
    assert ledger.balance(shop.classic_address) == before

    assert _preauth(ledger, shop, alice) == "tesSUCCESS"
    [preauth] = ledger.objects(shop.classic_address, "deposit_preauth")
    assert preauth["Authorize"] == alice.classic_address
    assert preauth["index"] == hashing.deposit_preauth_index(
        shop.classic_address, alice.classic_address
    )
    assert ledger.account(shop.classic_address)["OwnerCount"] == 1
    assert _pay(ledger, alice, shop).final_result == "tesSUCCESS"
    assert ledger.balance(shop.classic_address) == before - 10 + 5_000_000

    done = ledger.submit(
        DepositPreauth(account=shop.classic_address, unauthorize=alice.classic_address), shop
    )
    assert done.final_result == "tesSUCCESS"
    assert ledger.objects(shop.classic_address, "deposit_preauth") == []
    assert ledger.account(shop.classic_address)["OwnerCount"] == 0
    assert _pay(ledger, alice, shop).final_result == "tecNO_PERMISSION"

    cleared = ledger.submit(
        AccountSet(account=shop.classic_address, clear_flag=AccountSetAsfFlag.ASF_DEPOSIT_AUTH),
        shop,
    )
    assert cleared.final_result == "tesSUCCESS"
    assert _pay(ledger, alice, shop).final_result == "tesSUCCESS"


def test_a_drained_deposit_auth_account_can_still_get_the_base_reserve(ledger) -> None:
    # Payment.cpp: dstAmount <= base reserve and dst balance <= base reserve pass.
    poor, alice = ledger.fund(xrp=1), ledger.fund()
    _deposit_auth(ledger, poor)
    assert ledger.balance(poor.classic_address) <= _BASE_RESERVE_DROPS
    small = _pay(ledger, alice, poor, amount=str(_BASE_RESERVE_DROPS))
    assert small.final_result == "tesSUCCESS"
    # Now above the base reserve: the exception no longer applies.
    assert _pay(ledger, alice, poor, amount="1").final_result == "tecNO_PERMISSION"
    big = ledger.fund(xrp=1)
    _deposit_auth(ledger, big)
    too_much = _pay(ledger, alice, big, amount=str(_BASE_RESERVE_DROPS + 1))
    assert too_much.final_result == "tecNO_PERMISSION"


def test_deposit_auth_refuses_tokens_from_strangers(ledger) -> None:
    # Payment.cpp IOU branch: verifyDepositPreauth before the payment engine runs.
    issuer, alice, shop = ledger.fund(), ledger.fund(), ledger.fund()
    usd = IssuedCurrencyAmount(currency="USD", issuer=issuer.classic_address, value="1000")
    for holder in (alice, shop):
        trust = TrustSet(account=holder.classic_address, limit_amount=usd)
        assert ledger.submit(trust, holder).final_result == "tesSUCCESS"
    _deposit_auth(ledger, shop)
    ten = IssuedCurrencyAmount(currency="USD", issuer=issuer.classic_address, value="10")
    # Even the issuer needs preauthorisation to deliver to a DepositAuth account.
    assert _pay(ledger, issuer, shop, amount=ten).final_result == "tecNO_PERMISSION"
    assert _preauth(ledger, shop, issuer) == "tesSUCCESS"
    assert _pay(ledger, issuer, shop, amount=ten).final_result == "tesSUCCESS"
    [line] = ledger.lines(shop.classic_address)
    assert Decimal(line["balance"]) == 10


def test_escrow_finish_to_a_deposit_auth_account_needs_the_right_submitter(ledger) -> None:
    # Escrow.cpp EscrowFinish::doApply: verifyDepositPreauth(account_ = submitter, dest).
    alice, shop, helper = ledger.fund(), ledger.fund(), ledger.fund()
    now = ledger.validated_close_time()
    create = ledger.sign(
        EscrowCreate(
            account=alice.classic_address,
            destination=shop.classic_address,
            amount="7000000",
            finish_after=now + 1,
            cancel_after=now + 3600,
        ),
        alice,
    )
    assert ledger.submit_signed(create).final_result == "tesSUCCESS"
    _deposit_auth(ledger, shop)
    ledger.node.advance_time(5)
    ledger.close()

    def finish(by):
        tx = EscrowFinish(
            account=by.classic_address,
            owner=alice.classic_address,
            offer_sequence=create.sequence,
        )
        return ledger.submit(tx, by).final_result

    assert finish(alice) == "tecNO_PERMISSION"
    assert finish(helper) == "tecNO_PERMISSION"
    assert _preauth(ledger, shop, helper) == "tesSUCCESS"
    before = ledger.balance(shop.classic_address)
    assert finish(helper) == "tesSUCCESS"
    assert ledger.balance(shop.classic_address) == before + 7_000_000


def test_the_destination_itself_may_finish_into_its_deposit_auth_account(ledger) -> None:
    alice, shop = ledger.fund(), ledger.fund()
    now = ledger.validated_close_time()
    create = ledger.sign(
        EscrowCreate(
            account=alice.classic_address,
            destination=shop.classic_address,
            amount="3000000",
            finish_after=now + 1,
            cancel_after=now + 3600,
        ),
        alice,
    )
    assert ledger.submit_signed(create).final_result == "tesSUCCESS"
    _deposit_auth(ledger, shop)
    ledger.node.advance_time(5)
    ledger.close()
    done = ledger.submit(
        EscrowFinish(
            account=shop.classic_address,
            owner=alice.classic_address,
            offer_sequence=create.sequence,
        ),
        shop,
    )
    assert done.final_result == "tesSUCCESS"


def test_deposit_preauth_result_codes(ledger) -> None:
    # DepositPreauth.cpp preclaim/doApply: tecNO_TARGET, tecDUPLICATE, tecNO_ENTRY.
    shop, alice = ledger.fund(), ledger.fund()
    unfunded = "rPT1Sjq2YGrBMTttX4GZHjKu9dyfzbpAYe"  # a valid address nobody funded
    assert (
        ledger.submit(
            DepositPreauth(account=shop.classic_address, authorize=unfunded), shop
        ).final_result
        == "tecNO_TARGET"
    )
    assert _preauth(ledger, shop, alice) == "tesSUCCESS"
    assert _preauth(ledger, shop, alice) == "tecDUPLICATE"
    missing = ledger.submit(
        DepositPreauth(account=shop.classic_address, unauthorize=unfunded), shop
    )
    assert missing.final_result == "tecNO_ENTRY"
    assert ledger.account(shop.classic_address)["OwnerCount"] == 1


def test_deposit_preauth_needs_the_reserve_for_its_object(ledger) -> None:
    # DepositPreauth.cpp: mPriorBalance < accountReserve(OwnerCount + 1).
    poor, alice = ledger.fund(xrp=1), ledger.fund()
    assert _preauth(ledger, poor, alice) == "tecINSUFFICIENT_RESERVE"
    assert ledger.objects(poor.classic_address, "deposit_preauth") == []


def _preauth_json(ledger, wallet, **fields):
    tx = {
        "TransactionType": "DepositPreauth",
        "Account": wallet.classic_address,
        "Fee": "10",
        "Sequence": ledger.next_sequence(wallet.classic_address),
        "LastLedgerSequence": ledger.raw("ledger_current")["ledger_current_index"] + 10,
        **fields,
    }
    return ledger.submit_json(tx, wallet)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "temMALFORMED"),
        (
            {
                "Authorize": "rPT1Sjq2YGrBMTttX4GZHjKu9dyfzbpAYe",
                "Unauthorize": "rPT1Sjq2YGrBMTttX4GZHjKu9dyfzbpAYe",
            },
            "temMALFORMED",
        ),
        ({"Authorize": "rrrrrrrrrrrrrrrrrrrrrhoLvTp"}, "temINVALID_ACCOUNT_ID"),
        (
            {"Flags": 0x00010000, "Authorize": "rPT1Sjq2YGrBMTttX4GZHjKu9dyfzbpAYe"},
            "temINVALID_FLAG",
        ),
        (
            {
                "AuthorizeCredentials": [
                    {
                        "Credential": {
                            "Issuer": "rPT1Sjq2YGrBMTttX4GZHjKu9dyfzbpAYe",
                            "CredentialType": "4B5943",
                        }
                    }
                ]
            },
            "temDISABLED",
        ),
    ],
)
def test_malformed_deposit_preauth_is_refused_without_effect(ledger, fields, expected) -> None:
    shop = ledger.fund()
    before = ledger.account(shop.classic_address)
    done = _preauth_json(ledger, shop, **fields)
    assert done.engine_result == expected
    assert done.final_result is None
    assert ledger.account(shop.classic_address) == before


def test_preauthorising_yourself_is_malformed(ledger) -> None:
    shop = ledger.fund()
    done = _preauth_json(ledger, shop, Authorize=shop.classic_address)
    assert done.engine_result == "temCANNOT_PREAUTH_SELF"
    assert ledger.objects(shop.classic_address) == []
