"""Escrows for XRP and tokens, with PREIMAGE-SHA-256 conditions and the time rules."""

from __future__ import annotations

import hashlib
import os
from decimal import Decimal

from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.transactions import (
    AccountSet,
    AccountSetAsfFlag,
    EscrowCancel,
    EscrowCreate,
    EscrowFinish,
    Payment,
    TicketCreate,
    TrustSet,
)

from adapters.localnet.xrpl.conditions import make_preimage_pair


def _pair() -> tuple[str, str]:
    condition, fulfillment = make_preimage_pair(os.urandom(32))
    return condition.hex().upper(), fulfillment.hex().upper()


def _create(
    ledger,
    owner,
    destination,
    amount,
    *,
    cancel_in: int = 300,
    condition=None,
    finish_in: int | None = None,
):
    now = ledger.validated_close_time()
    tx = EscrowCreate(
        account=owner.classic_address,
        destination=destination.classic_address,
        amount=amount,
        cancel_after=now + cancel_in,
        finish_after=now + finish_in if finish_in is not None else None,
        condition=condition,
    )
    signed = ledger.sign(tx, owner)
    return ledger.submit_signed(signed), signed.sequence


def test_conditional_xrp_escrow_locks_then_delivers_with_the_fulfillment(ledger) -> None:
    alice, bob = ledger.fund(), ledger.fund()
    condition, fulfillment = _pair()
    created, seq = _create(ledger, alice, bob, "250000000", condition=condition)
    assert created.final_result == "tesSUCCESS"
    assert ledger.balance(alice.classic_address) == 1_000_000_000 - 250_000_000 - 10
    assert ledger.account(alice.classic_address)["OwnerCount"] == 1
    [escrow] = ledger.objects(alice.classic_address, "escrow")
    assert escrow["Amount"] == "250000000" and escrow["Condition"] == condition
    assert ledger.objects(bob.classic_address, "escrow") == [escrow]
    entry = ledger.raw("ledger_entry", escrow={"owner": alice.classic_address, "seq": seq})
    assert entry["node"] == escrow

    _, wrong = _pair()
    finish = {
        "account": bob.classic_address,
        "owner": alice.classic_address,
        "offer_sequence": seq,
        "condition": condition,
    }
    bad = ledger.submit(EscrowFinish(**finish, fulfillment=wrong), bob)
    assert bad.final_result == "tecCRYPTOCONDITION_ERROR"
    cheap = ledger.submit(EscrowFinish(**finish, fulfillment=fulfillment, fee="10"), bob)
    assert cheap.engine_result == "telINSUF_FEE_P"
    no_condition = ledger.submit(
        EscrowFinish(account=bob.classic_address, owner=alice.classic_address, offer_sequence=seq),
        bob,
    )
    assert no_condition.final_result == "tecCRYPTOCONDITION_ERROR"
    bob_before = ledger.balance(bob.classic_address)
    # 36-byte fulfillment: 10 × (33 + 36 // 16) = 350 drops is the exact minimum.
    good = ledger.submit(EscrowFinish(**finish, fulfillment=fulfillment, fee="350"), bob)
    assert good.final_result == "tesSUCCESS"
    assert ledger.balance(bob.classic_address) == bob_before + 250_000_000 - 350
    assert ledger.objects(alice.classic_address, "escrow") == []
    assert ledger.account(alice.classic_address)["OwnerCount"] == 0


def test_finish_is_refused_after_cancel_after_and_cancel_refunds(ledger) -> None:
    alice, bob = ledger.fund(), ledger.fund()
    condition, fulfillment = _pair()
    created, seq = _create(ledger, alice, bob, "100000000", condition=condition, cancel_in=30)
    assert created.final_result == "tesSUCCESS"
    early_cancel = ledger.submit(
        EscrowCancel(
            account=alice.classic_address, owner=alice.classic_address, offer_sequence=seq
        ),
        alice,
    )
    assert early_cancel.final_result == "tecNO_PERMISSION"
    ledger.node.advance_time(60)
    ledger.close()  # the parent close time is now past CancelAfter
    late = ledger.submit(
        EscrowFinish(
            account=bob.classic_address,
            owner=alice.classic_address,
            offer_sequence=seq,
            condition=condition,
            fulfillment=fulfillment,
        ),
        bob,
    )
    assert late.final_result == "tecNO_PERMISSION"
    before = ledger.balance(alice.classic_address)
    # Anyone may cancel an expired escrow; the funds go back to the owner.
    cancelled = ledger.submit(
        EscrowCancel(account=bob.classic_address, owner=alice.classic_address, offer_sequence=seq),
        bob,
    )
    assert cancelled.final_result == "tesSUCCESS"
    assert ledger.balance(alice.classic_address) == before + 100_000_000
    assert ledger.objects(alice.classic_address, "escrow") == []


def test_time_rules_use_the_parent_ledgers_close_time_not_the_wall_clock(ledger) -> None:
    alice, bob = ledger.fund(), ledger.fund()
    condition, fulfillment = _pair()
    created, seq = _create(ledger, alice, bob, "1000000", condition=condition, cancel_in=30)
    assert created.final_result == "tesSUCCESS"
    ledger.node.advance_time(3_600)  # the clock is past CancelAfter, no ledger closed since
    done = ledger.submit(
        EscrowFinish(
            account=bob.classic_address,
            owner=alice.classic_address,
            offer_sequence=seq,
            condition=condition,
            fulfillment=fulfillment,
        ),
        bob,
    )
    assert done.final_result == "tesSUCCESS"


def test_finish_after_is_respected(ledger) -> None:
    alice, bob = ledger.fund(), ledger.fund()
    created, seq = _create(ledger, alice, bob, "1000000", finish_in=20, cancel_in=600)
    assert created.final_result == "tesSUCCESS"
    finish = EscrowFinish(
        account=bob.classic_address, owner=alice.classic_address, offer_sequence=seq
    )
    assert ledger.submit(finish, bob).final_result == "tecNO_PERMISSION"
    ledger.node.advance_time(40)
    ledger.close()
    assert ledger.submit(finish, bob).final_result == "tesSUCCESS"


def test_malformed_and_expired_creates(ledger) -> None:
    alice, bob = ledger.fund(), ledger.fund()
    condition, _ = _pair()
    expired, _ = _create(ledger, alice, bob, "1000000", condition=condition, cancel_in=-10)
    assert expired.final_result == "tecNO_PERMISSION"
    no_times = ledger.submit_json(
        {
            "TransactionType": "EscrowCreate",
            "Account": alice.classic_address,
            "Destination": bob.classic_address,
            "Amount": "1000",
            "Fee": "10",
            "Flags": 0,
            "Sequence": ledger.next_sequence(alice.classic_address),
            "Condition": condition,
        },
        alice,
    )
    assert no_times.engine_result == "temBAD_EXPIRATION"
    now = ledger.validated_close_time()
    unconditioned = ledger.submit_json(
        {
            "TransactionType": "EscrowCreate",
            "Account": alice.classic_address,
            "Destination": bob.classic_address,
            "Amount": "1000",
            "Fee": "10",
            "Flags": 0,
            "Sequence": ledger.next_sequence(alice.classic_address),
            "CancelAfter": now + 100,
        },
        alice,
    )
    assert unconditioned.engine_result == "temMALFORMED"
    missing = ledger.submit(
        EscrowFinish(account=bob.classic_address, owner=alice.classic_address, offer_sequence=999),
        bob,
    )
    assert missing.final_result == "tecNO_TARGET"


def test_escrow_needs_the_owner_reserve(ledger) -> None:
    alice, bob = ledger.fund(xrp=2), ledger.fund()
    condition, _ = _pair()
    # 2 XRP covers the base reserve (1) but not base + one object (1.2) plus 1 XRP.
    short, _ = _create(ledger, alice, bob, "1000000", condition=condition)
    assert short.final_result == "tecUNFUNDED"
    assert ledger.objects(alice.classic_address, "escrow") == []


def test_escrow_created_with_a_ticket_is_keyed_by_the_ticket(ledger) -> None:
    alice, bob = ledger.fund(), ledger.fund()
    seq = ledger.next_sequence(alice.classic_address)
    ledger.submit(TicketCreate(account=alice.classic_address, ticket_count=1), alice)
    ticket = seq + 1
    condition, fulfillment = _pair()
    now = ledger.validated_close_time()
    created = ledger.submit_json(
        {
            "TransactionType": "EscrowCreate",
            "Account": alice.classic_address,
            "Destination": bob.classic_address,
            "Amount": "1000000",
            "Fee": "10",
            "Flags": 0,
            "Sequence": 0,
            "TicketSequence": ticket,
            "CancelAfter": now + 300,
            "Condition": condition,
        },
        alice,
    )
    assert created.final_result == "tesSUCCESS"
    done = ledger.submit(
        EscrowFinish(
            account=bob.classic_address,
            owner=alice.classic_address,
            offer_sequence=ticket,
            condition=condition,
            fulfillment=fulfillment,
        ),
        bob,
    )
    assert done.final_result == "tesSUCCESS"


def _token_setup(ledger, *, allow_locking: bool):
    issuer, alice, bob = ledger.fund(), ledger.fund(), ledger.fund()
    flags = [AccountSetAsfFlag.ASF_DEFAULT_RIPPLE]
    if allow_locking:
        flags.append(AccountSetAsfFlag.ASF_ALLOW_TRUSTLINE_LOCKING)
    for flag in flags:
        done = ledger.submit(AccountSet(account=issuer.classic_address, set_flag=flag), issuer)
        assert done.final_result == "tesSUCCESS"
    for holder in (alice, bob):
        ledger.submit(
            TrustSet(
                account=holder.classic_address,
                limit_amount=IssuedCurrencyAmount(
                    currency="USD", issuer=issuer.classic_address, value="1000"
                ),
            ),
            holder,
        )
    ledger.submit(
        Payment(
            account=issuer.classic_address,
            destination=alice.classic_address,
            amount=IssuedCurrencyAmount(currency="USD", issuer=issuer.classic_address, value="100"),
        ),
        issuer,
    )
    return issuer, alice, bob


def _usd(ledger, holder, issuer) -> Decimal:
    for line in ledger.lines(holder.classic_address):
        if line["account"] == issuer.classic_address:
            return Decimal(line["balance"])
    return Decimal(0)


def test_token_escrow_needs_the_issuers_permission(ledger) -> None:
    issuer, alice, bob = _token_setup(ledger, allow_locking=False)
    amount = IssuedCurrencyAmount(currency="USD", issuer=issuer.classic_address, value="10")
    created, _ = _create(ledger, alice, bob, amount, condition=_pair()[0])
    assert created.final_result == "tecNO_PERMISSION"
    assert _usd(ledger, alice, issuer) == 100


def test_token_escrow_locks_tokens_and_finish_delivers_them(ledger) -> None:
    issuer, alice, bob = _token_setup(ledger, allow_locking=True)
    condition, fulfillment = _pair()
    amount = IssuedCurrencyAmount(currency="USD", issuer=issuer.classic_address, value="40")
    created, seq = _create(ledger, alice, bob, amount, condition=condition)
    assert created.final_result == "tesSUCCESS"
    assert _usd(ledger, alice, issuer) == 60
    [escrow] = ledger.objects(issuer.classic_address, "escrow")  # listed with the issuer too
    assert escrow["Amount"]["value"] == "40"
    too_much = IssuedCurrencyAmount(currency="USD", issuer=issuer.classic_address, value="61")
    unfunded, _ = _create(ledger, alice, bob, too_much, condition=condition)
    assert unfunded.final_result == "tecINSUFFICIENT_FUNDS"
    done = ledger.submit(
        EscrowFinish(
            account=bob.classic_address,
            owner=alice.classic_address,
            offer_sequence=seq,
            condition=condition,
            fulfillment=fulfillment,
        ),
        bob,
    )
    assert done.final_result == "tesSUCCESS"
    assert _usd(ledger, bob, issuer) == 40
    assert _usd(ledger, alice, issuer) == 60
    assert ledger.objects(issuer.classic_address, "escrow") == []


def test_token_escrow_cancel_returns_the_tokens(ledger) -> None:
    issuer, alice, bob = _token_setup(ledger, allow_locking=True)
    amount = IssuedCurrencyAmount(currency="USD", issuer=issuer.classic_address, value="25")
    created, seq = _create(ledger, alice, bob, amount, condition=_pair()[0], cancel_in=20)
    assert created.final_result == "tesSUCCESS"
    assert _usd(ledger, alice, issuer) == 75
    ledger.node.advance_time(30)
    ledger.close()
    cancelled = ledger.submit(
        EscrowCancel(
            account=alice.classic_address, owner=alice.classic_address, offer_sequence=seq
        ),
        alice,
    )
    assert cancelled.final_result == "tesSUCCESS"
    assert _usd(ledger, alice, issuer) == 100
    assert ledger.account(alice.classic_address)["OwnerCount"] == 1  # the trust line only


def test_issuer_cannot_escrow_its_own_token(ledger) -> None:
    issuer, alice, _ = _token_setup(ledger, allow_locking=True)
    amount = IssuedCurrencyAmount(currency="USD", issuer=issuer.classic_address, value="1")
    created, _ = _create(ledger, issuer, alice, amount, condition=_pair()[0])
    assert created.final_result == "tecNO_PERMISSION"


def test_condition_and_fulfillment_formats(ledger) -> None:
    preimage = b"\x01" * 32
    condition, fulfillment = make_preimage_pair(preimage)
    assert fulfillment == bytes([0xA0, 34, 0x80, 32]) + preimage
    assert condition == (
        bytes([0xA0, 0x25, 0x80, 0x20])
        + hashlib.sha256(preimage).digest()
        + bytes([0x81, 0x01, 32])
    )
