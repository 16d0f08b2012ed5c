"""Transfer fees: AccountSet TransferRate and what it does to payments and token escrows.

Checked against rippled: ``SetAccount.cpp`` (temBAD_TRANSFER_RATE bounds, 0 and
QUALITY_ONE clear the field), ``DirectStep.cpp`` (qualitiesSrcIssues: the issuer's rate
is charged when it issues after the previous step redeemed, i.e. holder to holder only),
``Payment.cpp`` (without SendMax the sender spends at most Amount: tecPATH_PARTIAL;
partial payments deliver what SendMax buys) and ``Escrow.cpp`` (EscrowCreate stores
``TransferRate``; escrowUnlockApplyHelper pays amount ÷ min(locked, current) rate,
rounded up; a cancel returns everything).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.transactions import (
    AccountSet,
    AccountSetAsfFlag,
    EscrowCancel,
    EscrowCreate,
    EscrowFinish,
    Payment,
    PaymentFlag,
    TrustSet,
)

_QUARTER = 1_250_000_000  # a 25 % fee
_TENTH = 1_100_000_000


def usd(issuer, value: str) -> IssuedCurrencyAmount:
    return IssuedCurrencyAmount(currency="USD", issuer=issuer.classic_address, value=value)


def _rate_json(ledger, wallet, rate):
    tx = {
        "TransactionType": "AccountSet",
        "Account": wallet.classic_address,
        "Fee": "10",
        "TransferRate": rate,
        "Sequence": ledger.next_sequence(wallet.classic_address),
        "LastLedgerSequence": ledger.raw("ledger_current")["ledger_current_index"] + 10,
    }
    return ledger.submit_json(tx, wallet)


def _set_rate(ledger, issuer, rate: int) -> None:
    done = ledger.submit(AccountSet(account=issuer.classic_address, transfer_rate=rate), issuer)
    assert done.final_result == "tesSUCCESS"


def _balance(ledger, holder, issuer) -> Decimal:
    lines = [x for x in ledger.lines(holder.classic_address) if x["account"] == issuer]
    return Decimal(lines[0]["balance"]) if lines else Decimal(0)


@pytest.fixture
def token(ledger):
    """An issuer charging 25 % with DefaultRipple; alice holds 200 USD, bob none."""
    issuer, alice, bob = ledger.fund(), ledger.fund(), ledger.fund()
    done = ledger.submit(
        AccountSet(account=issuer.classic_address, set_flag=AccountSetAsfFlag.ASF_DEFAULT_RIPPLE),
        issuer,
    )
    assert done.final_result == "tesSUCCESS"
    for holder in (alice, bob):
        trust = TrustSet(account=holder.classic_address, limit_amount=usd(issuer, "1000"))
        assert ledger.submit(trust, holder).final_result == "tesSUCCESS"
    issue = Payment(
        account=issuer.classic_address,
        destination=alice.classic_address,
        amount=usd(issuer, "200"),
    )
    assert ledger.submit(issue, issuer).final_result == "tesSUCCESS"
    _set_rate(ledger, issuer, _QUARTER)
    return issuer, alice, bob


def test_transfer_rate_is_set_cleared_and_bounded(ledger) -> None:
    issuer = ledger.fund()
    _set_rate(ledger, issuer, _TENTH)
    assert ledger.account(issuer.classic_address)["TransferRate"] == _TENTH
    for bad in (999_999_999, 2_000_000_001, 1):
        refused = _rate_json(ledger, issuer, bad)
        assert refused.engine_result == "temBAD_TRANSFER_RATE"
    assert ledger.account(issuer.classic_address)["TransferRate"] == _TENTH
    _set_rate(ledger, issuer, 1_000_000_000)  # QUALITY_ONE means no fee: field removed
    assert "TransferRate" not in ledger.account(issuer.classic_address)
    _set_rate(ledger, issuer, 2_000_000_000)
    assert ledger.account(issuer.classic_address)["TransferRate"] == 2_000_000_000
    assert _rate_json(ledger, issuer, 0).final_result == "tesSUCCESS"
    assert "TransferRate" not in ledger.account(issuer.classic_address)


def test_holder_to_holder_pays_the_fee_on_top_and_needs_send_max(ledger, token) -> None:
    issuer, alice, bob = token
    without_send_max = ledger.submit(
        Payment(
            account=alice.classic_address,
            destination=bob.classic_address,
            amount=usd(issuer, "100"),
        ),
        alice,
    )
    assert without_send_max.final_result == "tecPATH_PARTIAL"
    assert _balance(ledger, alice, issuer.classic_address) == 200
    paid = ledger.submit(
        Payment(
            account=alice.classic_address,
            destination=bob.classic_address,
            amount=usd(issuer, "100"),
            send_max=usd(issuer, "125"),
        ),
        alice,
    )
    assert paid.final_result == "tesSUCCESS"
    assert _balance(ledger, alice, issuer.classic_address) == 75
    assert _balance(ledger, bob, issuer.classic_address) == 100
    meta = ledger.raw("tx", transaction=paid.tx_hash, api_version=2)["meta"]
    assert meta["delivered_amount"]["value"] == "100"
    # The fee is redeemed: the issuer owes 175 where it owed 200.
    owed = sum(Decimal(x["balance"]) for x in ledger.lines(issuer.classic_address))
    assert owed == Decimal(-175)


def test_a_send_max_below_amount_times_rate_falls_short(ledger, token) -> None:
    issuer, alice, bob = token
    short = ledger.submit(
        Payment(
            account=alice.classic_address,
            destination=bob.classic_address,
            amount=usd(issuer, "100"),
            send_max=usd(issuer, "124.99"),
        ),
        alice,
    )
    assert short.final_result == "tecPATH_PARTIAL"
    partial = ledger.submit(
        Payment(
            account=alice.classic_address,
            destination=bob.classic_address,
            amount=usd(issuer, "100"),
            send_max=usd(issuer, "50"),
            flags=PaymentFlag.TF_PARTIAL_PAYMENT,
        ),
        alice,
    )
    assert partial.final_result == "tesSUCCESS"
    meta = ledger.raw("tx", transaction=partial.tx_hash, api_version=2)["meta"]
    assert meta["delivered_amount"]["value"] == "40"
    assert _balance(ledger, alice, issuer.classic_address) == 150
    assert _balance(ledger, bob, issuer.classic_address) == 40


def _issue(ledger, issuer, holder, value: str) -> None:
    pay = Payment(
        account=issuer.classic_address,
        destination=holder.classic_address,
        amount=usd(issuer, value),
    )
    assert ledger.submit(pay, issuer).final_result == "tesSUCCESS"


def _holder(ledger, issuer):
    """A fresh account trusting the issuer, holding nothing."""
    holder = ledger.fund()
    trust = TrustSet(account=holder.classic_address, limit_amount=usd(issuer, "1000"))
    assert ledger.submit(trust, holder).final_result == "tesSUCCESS"
    return holder


def _owed(ledger, issuer) -> Decimal:
    return -sum(Decimal(x["balance"]) for x in ledger.lines(issuer.classic_address))


def test_a_partial_payment_rounds_the_receiver_down_and_spends_all_of_send_max(
    ledger, token
) -> None:
    # rippled's forward pass from the limiting SendMax: the sender's step spends 1
    # whole, the issuer's turns it into mulRatio(1, QUALITY_ONE, 1.1e9, roundUp=false)
    # = 0.9090909090909090 (16 digits; rounded up it would end in ...091). Bob holds
    # exactly 1, so a spend short by one unit in the 16th digit would show.
    issuer, _, bob = token
    carol = _holder(ledger, issuer)
    _set_rate(ledger, issuer, _TENTH)
    _issue(ledger, issuer, bob, "1")
    owed_before = _owed(ledger, issuer)
    partial = ledger.submit(
        Payment(
            account=bob.classic_address,
            destination=carol.classic_address,
            amount=usd(issuer, "10"),
            send_max=usd(issuer, "1"),
            flags=PaymentFlag.TF_PARTIAL_PAYMENT,
        ),
        bob,
    )
    assert partial.final_result == "tesSUCCESS"
    meta = ledger.raw("tx", transaction=partial.tx_hash, api_version=2)["meta"]
    assert meta["delivered_amount"]["value"] == "0.909090909090909"
    assert _balance(ledger, bob, issuer.classic_address) == 0
    assert _balance(ledger, carol, issuer.classic_address) == Decimal("0.909090909090909")
    # The fee, 1 - 0.909090909090909, is redeemed: the issuer owes that much less.
    assert owed_before - _owed(ledger, issuer) == Decimal("0.090909090909091")


def test_the_sender_pays_amount_times_rate_rounded_up(ledger, token) -> None:
    # 0.9999999999999999 * 1.1 = 1.09999999999999989: rippled's reverse pass asks the
    # sender for mulRatio(out, rate, QUALITY_ONE, roundUp=true) = 1.1, never less, so
    # the issuer is never short. Rounded down, bob would keep 0.900000000000001.
    issuer, _, bob = token
    carol = _holder(ledger, issuer)
    _set_rate(ledger, issuer, _TENTH)
    _issue(ledger, issuer, bob, "2")
    owed_before = _owed(ledger, issuer)
    paid = ledger.submit(
        Payment(
            account=bob.classic_address,
            destination=carol.classic_address,
            amount=usd(issuer, "0.9999999999999999"),
            send_max=usd(issuer, "2"),
        ),
        bob,
    )
    assert paid.final_result == "tesSUCCESS"
    meta = ledger.raw("tx", transaction=paid.tx_hash, api_version=2)["meta"]
    assert meta["delivered_amount"]["value"] == "0.9999999999999999"
    assert _balance(ledger, bob, issuer.classic_address) == Decimal("0.9")
    assert _balance(ledger, carol, issuer.classic_address) == Decimal("0.9999999999999999")
    assert owed_before - _owed(ledger, issuer) == Decimal("0.1000000000000001")


def test_the_issuer_pays_and_is_paid_without_a_fee(ledger, token) -> None:
    issuer, alice, bob = token
    issue = Payment(
        account=issuer.classic_address,
        destination=bob.classic_address,
        amount=usd(issuer, "10"),
    )
    assert ledger.submit(issue, issuer).final_result == "tesSUCCESS"
    assert _balance(ledger, bob, issuer.classic_address) == 10
    redeem = Payment(
        account=alice.classic_address,
        destination=issuer.classic_address,
        amount=usd(issuer, "10"),
    )
    assert ledger.submit(redeem, alice).final_result == "tesSUCCESS"
    assert _balance(ledger, alice, issuer.classic_address) == 190


def _escrow(ledger, token, value: str, *, cancel_in: int = 3600) -> int:
    issuer, alice, bob = token
    lock = AccountSet(
        account=issuer.classic_address, set_flag=AccountSetAsfFlag.ASF_ALLOW_TRUSTLINE_LOCKING
    )
    assert ledger.submit(lock, issuer).final_result == "tesSUCCESS"
    now = ledger.validated_close_time()
    signed = ledger.sign(
        EscrowCreate(
            account=alice.classic_address,
            destination=bob.classic_address,
            amount=usd(issuer, value),
            finish_after=now + 1,
            cancel_after=now + cancel_in,
        ),
        alice,
    )
    assert ledger.submit_signed(signed).final_result == "tesSUCCESS"
    return signed.sequence


def _finish(ledger, token, sequence: int) -> str | None:
    _, alice, bob = token
    ledger.node.advance_time(5)
    ledger.close()
    tx = EscrowFinish(
        account=bob.classic_address, owner=alice.classic_address, offer_sequence=sequence
    )
    return ledger.submit(tx, bob).final_result


def test_a_token_escrow_locks_the_rate_and_the_receiver_gets_less(ledger, token) -> None:
    issuer, alice, bob = token
    sequence = _escrow(ledger, token, "100")
    [escrow] = ledger.objects(alice.classic_address, "escrow")
    assert escrow["TransferRate"] == _QUARTER
    assert _balance(ledger, alice, issuer.classic_address) == 100
    # A later rise does not reach the escrow: the locked rate caps the fee.
    _set_rate(ledger, issuer, 2_000_000_000)
    assert _finish(ledger, token, sequence) == "tesSUCCESS"
    assert _balance(ledger, bob, issuer.classic_address) == 80


def test_a_lower_rate_at_finish_time_is_the_one_charged(ledger, token) -> None:
    issuer, _, bob = token
    sequence = _escrow(ledger, token, "100")
    _set_rate(ledger, issuer, _TENTH)
    assert _finish(ledger, token, sequence) == "tesSUCCESS"
    # 100 / 1.1, rounded up in the 16th digit as rippled's divideRound(..., true).
    assert _balance(ledger, bob, issuer.classic_address) == Decimal("90.90909090909091")


def test_a_cancelled_token_escrow_returns_everything(ledger, token) -> None:
    issuer, alice, _ = token
    sequence = _escrow(ledger, token, "100", cancel_in=10)
    ledger.node.advance_time(20)
    ledger.close()
    cancel = EscrowCancel(
        account=alice.classic_address, owner=alice.classic_address, offer_sequence=sequence
    )
    assert ledger.submit(cancel, alice).final_result == "tesSUCCESS"
    assert _balance(ledger, alice, issuer.classic_address) == 200


def test_a_malformed_transfer_rate_is_refused(ledger) -> None:
    issuer = ledger.fund()
    before = ledger.account(issuer.classic_address)
    assert _rate_json(ledger, issuer, 4_000_000_000).engine_result == "temBAD_TRANSFER_RATE"
    assert ledger.account(issuer.classic_address) == before


def test_an_escrow_to_oneself_still_pays_the_fee_on_finish(ledger, token) -> None:
    # escrowUnlockApplyHelper charges the locked rate whenever neither end is the
    # issuer, the owner finishing its own escrow included; a cancel does not.
    issuer, alice, _ = token
    lock = AccountSet(
        account=issuer.classic_address, set_flag=AccountSetAsfFlag.ASF_ALLOW_TRUSTLINE_LOCKING
    )
    assert ledger.submit(lock, issuer).final_result == "tesSUCCESS"
    now = ledger.validated_close_time()
    signed = ledger.sign(
        EscrowCreate(
            account=alice.classic_address,
            destination=alice.classic_address,
            amount=usd(issuer, "100"),
            finish_after=now + 1,
        ),
        alice,
    )
    assert ledger.submit_signed(signed).final_result == "tesSUCCESS"
    ledger.node.advance_time(5)
    ledger.close()
    finish = EscrowFinish(
        account=alice.classic_address, owner=alice.classic_address, offer_sequence=signed.sequence
    )
    assert ledger.submit(finish, alice).final_result == "tesSUCCESS"
    assert _balance(ledger, alice, issuer.classic_address) == 180


def test_a_finish_checks_the_receivers_limit_against_the_amount_after_the_fee(
    ledger, token
) -> None:
    # escrowUnlockApplyHelper: when someone other than the receiver finishes, the
    # receiver's trust limit must hold what it gets, amount ÷ rate (80 of 100 at 25 %).
    issuer, alice, bob = token
    sequence = _escrow(ledger, token, "100")
    ledger.node.advance_time(5)
    ledger.close()
    finish = EscrowFinish(
        account=alice.classic_address, owner=alice.classic_address, offer_sequence=sequence
    )
    for limit, expected in (("79.99", "tecLIMIT_EXCEEDED"), ("80", "tesSUCCESS")):
        trust = TrustSet(account=bob.classic_address, limit_amount=usd(issuer, limit))
        assert ledger.submit(trust, bob).final_result == "tesSUCCESS"
        assert ledger.submit(finish, alice).final_result == expected
    assert _balance(ledger, bob, issuer.classic_address) == 80
    assert ledger.objects(alice.classic_address, "escrow") == []
