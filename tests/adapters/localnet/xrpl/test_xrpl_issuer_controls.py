"""Issuer controls on tokens: RequireAuth, freezes, NoFreeze, deep freeze, TokenEscrow.

Checked against rippled: ``SetAccount.cpp`` (asfRequireAuth and tecOWNERS, asfNoFreeze,
asfGlobalFreeze), ``SetTrust.cpp`` (tfSetfAuth and tefNO_AUTH_REQUIRED,
computeFreezeFlags, the DeepFreeze preclaim invariants, the reserve rule that keeps a
frozen line), the payment engine's step checks (``DirectStep.cpp``: terNO_AUTH on an
unauthorised issue; ``StepChecks.h`` checkFreeze, skipped for a one-step payment;
``Payment.cpp`` turning a ter into tecPATH_DRY), ``Escrow.cpp`` (the Issue helpers of
EscrowCreate/Finish/Cancel preclaim; temBAD_AMOUNT without TokenEscrow) and
``View.cpp`` (requireAuth, isFrozen, isDeepFrozen).
"""

from __future__ import annotations

from collections.abc import Iterator
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
    TrustSet,
    TrustSetFlag,
)

from adapters.localnet.xrpl import XrplNode

from .conftest import Harness

_GLOBAL_FREEZE = 0x00400000
_NO_FREEZE = 0x00200000


def usd(issuer, value: str) -> IssuedCurrencyAmount:
    return IssuedCurrencyAmount(currency="USD", issuer=issuer.classic_address, value=value)


def _set(ledger, wallet, flag: AccountSetAsfFlag, *, clear: bool = False) -> str | None:
    tx = (
        AccountSet(account=wallet.classic_address, clear_flag=flag)
        if clear
        else AccountSet(account=wallet.classic_address, set_flag=flag)
    )
    done = ledger.submit(tx, wallet)
    return done.final_result or done.engine_result


def _trust(ledger, holder, issuer, value="1000", flags: int = 0) -> None:
    done = ledger.submit(
        TrustSet(account=holder.classic_address, limit_amount=usd(issuer, value), flags=flags),
        holder,
    )
    assert done.final_result == "tesSUCCESS"


def _issuer_line_flags(ledger, issuer, holder, flags: int) -> str | None:
    """The issuer's TrustSet on its side of ``holder``'s line (limit 0)."""
    limit = IssuedCurrencyAmount(currency="USD", issuer=holder.classic_address, value="0")
    done = ledger.submit(
        TrustSet(account=issuer.classic_address, limit_amount=limit, flags=flags), issuer
    )
    return done.final_result or done.engine_result


def _pay(ledger, sender, destination, amount) -> str | None:
    done = ledger.submit(
        Payment(
            account=sender.classic_address,
            destination=destination.classic_address,
            amount=amount,
        ),
        sender,
    )
    return done.final_result or done.engine_result


def _line(ledger, holder, peer) -> dict:
    [line] = [x for x in ledger.lines(holder.classic_address) if x["account"] == peer]
    return line


def _balance(ledger, holder, issuer) -> Decimal:
    lines = [x for x in ledger.lines(holder.classic_address) if x["account"] == issuer]
    return Decimal(lines[0]["balance"]) if lines else Decimal(0)


@pytest.fixture
def token(ledger):
    """An issuer with DefaultRipple and two holders: alice holds 100 USD, bob 20."""
    issuer, alice, bob = ledger.fund(), ledger.fund(), ledger.fund()
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_DEFAULT_RIPPLE) == "tesSUCCESS"
    for holder in (alice, bob):
        _trust(ledger, holder, issuer)
    assert _pay(ledger, issuer, alice, usd(issuer, "100")) == "tesSUCCESS"
    assert _pay(ledger, issuer, bob, usd(issuer, "20")) == "tesSUCCESS"
    return issuer, alice, bob


# --- RequireAuth -----------------------------------------------------------------------


def test_require_auth_issues_only_to_authorised_lines(ledger) -> None:
    issuer, alice = ledger.fund(), ledger.fund()
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_REQUIRE_AUTH) == "tesSUCCESS"
    assert ledger.account(issuer.classic_address)["Flags"] & 0x00040000
    _trust(ledger, alice, issuer)
    # DirectStep: the issuer with RequireAuth cannot issue over an unauthorised line.
    assert _pay(ledger, issuer, alice, usd(issuer, "10")) == "tecPATH_DRY"
    assert "peer_authorized" not in _line(ledger, alice, issuer.classic_address)
    assert _issuer_line_flags(ledger, issuer, alice, TrustSetFlag.TF_SET_AUTH) == "tesSUCCESS"
    assert _line(ledger, alice, issuer.classic_address)["peer_authorized"] is True
    assert _line(ledger, issuer, alice.classic_address)["authorized"] is True
    assert _pay(ledger, issuer, alice, usd(issuer, "10")) == "tesSUCCESS"
    assert _balance(ledger, alice, issuer.classic_address) == 10


def test_an_issuer_may_authorise_a_line_before_the_holder_opens_it(ledger) -> None:
    # SetTrust.cpp: tfSetfAuth makes a zero-limit TrustSet create the line.
    issuer, alice = ledger.fund(), ledger.fund()
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_REQUIRE_AUTH) == "tesSUCCESS"
    assert _issuer_line_flags(ledger, issuer, alice, TrustSetFlag.TF_SET_AUTH) == "tesSUCCESS"
    _trust(ledger, alice, issuer)
    assert _pay(ledger, issuer, alice, usd(issuer, "5")) == "tesSUCCESS"


def test_require_auth_cannot_be_set_once_the_issuer_owns_objects(ledger, token) -> None:
    issuer, _, _ = token
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_REQUIRE_AUTH) == "tecOWNERS"
    assert not ledger.account(issuer.classic_address)["Flags"] & 0x00040000


def test_authorising_without_require_auth_is_refused(ledger, token) -> None:
    issuer, alice, _ = token
    done = _issuer_line_flags(ledger, issuer, alice, TrustSetFlag.TF_SET_AUTH)
    assert done == "tefNO_AUTH_REQUIRED"


# --- individual freeze -------------------------------------------------------------------


def test_a_frozen_holder_can_only_send_back_to_the_issuer(ledger, token) -> None:
    issuer, alice, bob = token
    assert _issuer_line_flags(ledger, issuer, alice, TrustSetFlag.TF_SET_FREEZE) == "tesSUCCESS"
    assert _line(ledger, alice, issuer.classic_address)["freeze_peer"] is True
    assert _line(ledger, issuer, alice.classic_address)["freeze"] is True
    # checkFreeze on the step alice -> issuer: the issuer froze alice's line.
    assert _pay(ledger, alice, bob, usd(issuer, "10")) == "tecPATH_DRY"
    assert _balance(ledger, alice, issuer.classic_address) == 100
    # One-step payments are never frozen: redeem to the issuer, issue from it, receive.
    assert _pay(ledger, alice, issuer, usd(issuer, "10")) == "tesSUCCESS"
    assert _pay(ledger, issuer, alice, usd(issuer, "1")) == "tesSUCCESS"
    assert _pay(ledger, bob, alice, usd(issuer, "5")) == "tesSUCCESS"
    assert _balance(ledger, alice, issuer.classic_address) == 96
    assert _issuer_line_flags(ledger, issuer, alice, TrustSetFlag.TF_CLEAR_FREEZE) == "tesSUCCESS"
    assert "freeze" not in _line(ledger, issuer, alice.classic_address)
    assert _pay(ledger, alice, bob, usd(issuer, "10")) == "tesSUCCESS"


def test_a_frozen_line_is_not_a_default_line_and_stays(ledger) -> None:
    # SetTrust.cpp: a side with its freeze bit set keeps its reserve, so the line stays.
    issuer, alice = ledger.fund(), ledger.fund()
    _trust(ledger, alice, issuer)
    assert _issuer_line_flags(ledger, issuer, alice, TrustSetFlag.TF_SET_FREEZE) == "tesSUCCESS"
    assert ledger.account(issuer.classic_address)["OwnerCount"] == 1
    # The holder puts its side back to the default: zero limit, NoRipple.
    _trust(ledger, alice, issuer, value="0", flags=TrustSetFlag.TF_SET_NO_RIPPLE)
    assert ledger.lines(alice.classic_address) != []
    assert _issuer_line_flags(ledger, issuer, alice, TrustSetFlag.TF_CLEAR_FREEZE) == "tesSUCCESS"
    assert ledger.lines(alice.classic_address) == []
    assert ledger.account(issuer.classic_address)["OwnerCount"] == 0


# --- global freeze and NoFreeze -----------------------------------------------------------


def test_global_freeze_stops_holders_paying_each_other(ledger, token) -> None:
    issuer, alice, bob = token
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_GLOBAL_FREEZE) == "tesSUCCESS"
    assert ledger.account(issuer.classic_address)["Flags"] & _GLOBAL_FREEZE
    assert _pay(ledger, alice, bob, usd(issuer, "10")) == "tecPATH_DRY"
    assert _pay(ledger, alice, issuer, usd(issuer, "10")) == "tesSUCCESS"
    assert _pay(ledger, issuer, bob, usd(issuer, "10")) == "tesSUCCESS"
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_GLOBAL_FREEZE, clear=True) == "tesSUCCESS"
    assert _pay(ledger, alice, bob, usd(issuer, "10")) == "tesSUCCESS"


def test_no_freeze_is_a_promise_the_issuer_cannot_take_back(ledger, token) -> None:
    issuer, alice, bob = token
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_GLOBAL_FREEZE) == "tesSUCCESS"
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_NO_FREEZE) == "tesSUCCESS"
    # NoFreeze cannot be cleared; with it set, a global freeze cannot be lifted.
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_NO_FREEZE, clear=True) == "tesSUCCESS"
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_GLOBAL_FREEZE, clear=True) == "tesSUCCESS"
    flags = ledger.account(issuer.classic_address)["Flags"]
    assert flags & _NO_FREEZE and flags & _GLOBAL_FREEZE
    assert _pay(ledger, alice, bob, usd(issuer, "1")) == "tecPATH_DRY"
    # SetTrust.cpp (DeepFreeze enabled): a NoFreeze account cannot freeze a line.
    refused = _issuer_line_flags(ledger, issuer, alice, TrustSetFlag.TF_SET_FREEZE)
    assert refused == "tecNO_PERMISSION"
    assert "freeze" not in _line(ledger, issuer, alice.classic_address)


# --- deep freeze --------------------------------------------------------------------------


def test_a_deep_frozen_holder_cannot_receive_from_other_holders(ledger, token) -> None:
    issuer, alice, bob = token
    both = TrustSetFlag.TF_SET_FREEZE | TrustSetFlag.TF_SET_DEEP_FREEZE
    assert _issuer_line_flags(ledger, issuer, bob, both) == "tesSUCCESS"
    assert _line(ledger, bob, issuer.classic_address)["deep_freeze_peer"] is True
    assert _pay(ledger, alice, bob, usd(issuer, "5")) == "tecPATH_DRY"
    assert _pay(ledger, bob, alice, usd(issuer, "5")) == "tecPATH_DRY"
    assert _balance(ledger, bob, issuer.classic_address) == 20


def test_a_deep_freeze_needs_a_freeze_under_it(ledger, token) -> None:
    issuer, alice, _ = token
    alone = _issuer_line_flags(ledger, issuer, alice, TrustSetFlag.TF_SET_DEEP_FREEZE)
    assert alone == "tecNO_PERMISSION"
    both = TrustSetFlag.TF_SET_FREEZE | TrustSetFlag.TF_SET_DEEP_FREEZE
    assert _issuer_line_flags(ledger, issuer, alice, both) == "tesSUCCESS"
    lift = _issuer_line_flags(ledger, issuer, alice, TrustSetFlag.TF_CLEAR_FREEZE)
    assert lift == "tecNO_PERMISSION"
    mixed = TrustSetFlag.TF_SET_FREEZE | TrustSetFlag.TF_CLEAR_DEEP_FREEZE
    assert _issuer_line_flags(ledger, issuer, alice, mixed) == "tecNO_PERMISSION"


@pytest.fixture
def no_deep_freeze() -> Iterator[Harness]:
    with XrplNode(amendments={"DeepFreeze": False, "TokenEscrow": False}) as node:
        harness = Harness(node)
        yield harness
        harness.http.close()


def test_deep_freeze_flags_are_invalid_without_the_amendment(no_deep_freeze) -> None:
    ledger = no_deep_freeze
    issuer, alice = ledger.fund(), ledger.fund()
    _trust(ledger, alice, issuer)
    both = TrustSetFlag.TF_SET_FREEZE | TrustSetFlag.TF_SET_DEEP_FREEZE
    assert _issuer_line_flags(ledger, issuer, alice, both) == "temINVALID_FLAG"
    assert "freeze" not in _line(ledger, issuer, alice.classic_address)


def test_token_escrow_without_the_amendment_is_a_bad_amount(no_deep_freeze) -> None:
    ledger = no_deep_freeze
    issuer, alice = ledger.fund(), ledger.fund()
    now = ledger.validated_close_time()
    token_escrow = EscrowCreate(
        account=alice.classic_address,
        destination=issuer.classic_address,
        amount=usd(issuer, "1"),
        finish_after=now + 10,
    )
    done = ledger.submit(token_escrow, alice)
    assert done.engine_result == "temBAD_AMOUNT"
    assert done.final_result is None
    xrp_escrow = EscrowCreate(
        account=alice.classic_address,
        destination=issuer.classic_address,
        amount="1000000",
        finish_after=now + 10,
    )
    assert ledger.submit(xrp_escrow, alice).final_result == "tesSUCCESS"


# --- token escrows under issuer controls ---------------------------------------------------


def _lockable(ledger, token):
    issuer, alice, bob = token
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_ALLOW_TRUSTLINE_LOCKING) == "tesSUCCESS"
    return issuer, alice, bob


def _escrow(ledger, owner, destination, amount, *, finish_in=1, cancel_in=3600):
    now = ledger.validated_close_time()
    signed = ledger.sign(
        EscrowCreate(
            account=owner.classic_address,
            destination=destination.classic_address,
            amount=amount,
            finish_after=now + finish_in,
            cancel_after=now + cancel_in,
        ),
        owner,
    )
    done = ledger.submit_signed(signed)
    return (done.final_result or done.engine_result), signed.sequence


def _finish(ledger, by, owner, sequence) -> str | None:
    tx = EscrowFinish(
        account=by.classic_address, owner=owner.classic_address, offer_sequence=sequence
    )
    done = ledger.submit(tx, by)
    return done.final_result or done.engine_result


def test_a_token_escrow_cannot_lock_frozen_funds_or_pay_a_frozen_line(ledger, token) -> None:
    # EscrowCreate preclaim (Issue): isFrozen(account) / isFrozen(dest) -> tecFROZEN.
    issuer, alice, bob = _lockable(ledger, token)
    assert _issuer_line_flags(ledger, issuer, alice, TrustSetFlag.TF_SET_FREEZE) == "tesSUCCESS"
    assert _escrow(ledger, alice, bob, usd(issuer, "10"))[0] == "tecFROZEN"
    assert _escrow(ledger, bob, alice, usd(issuer, "10"))[0] == "tecFROZEN"
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_GLOBAL_FREEZE) == "tesSUCCESS"
    assert _escrow(ledger, bob, bob, usd(issuer, "10"))[0] == "tecFROZEN"
    assert _balance(ledger, bob, issuer.classic_address) == 20


def test_a_plain_freeze_does_not_stop_a_finish_but_a_deep_freeze_does(ledger, token) -> None:
    # EscrowFinish preclaim (Issue): only isDeepFrozen(dest) -> tecFROZEN.
    issuer, alice, bob = _lockable(ledger, token)
    result, first = _escrow(ledger, alice, bob, usd(issuer, "10"))
    assert result == "tesSUCCESS"
    result, second = _escrow(ledger, alice, bob, usd(issuer, "10"))
    assert result == "tesSUCCESS"
    assert _issuer_line_flags(ledger, issuer, bob, TrustSetFlag.TF_SET_FREEZE) == "tesSUCCESS"
    ledger.node.advance_time(5)
    ledger.close()
    assert _finish(ledger, bob, alice, first) == "tesSUCCESS"
    assert _balance(ledger, bob, issuer.classic_address) == 30
    deep = TrustSetFlag.TF_SET_DEEP_FREEZE
    assert _issuer_line_flags(ledger, issuer, bob, deep) == "tesSUCCESS"
    assert _finish(ledger, bob, alice, second) == "tecFROZEN"
    assert _balance(ledger, bob, issuer.classic_address) == 30
    assert len(ledger.objects(alice.classic_address, "escrow")) == 1


def test_a_cancel_returns_tokens_to_a_frozen_owner(ledger, token) -> None:
    # EscrowCancel preclaim checks only requireAuth(owner); no freeze check.
    issuer, alice, bob = _lockable(ledger, token)
    result, seq = _escrow(ledger, alice, bob, usd(issuer, "10"), cancel_in=10)
    assert result == "tesSUCCESS"
    assert _issuer_line_flags(ledger, issuer, alice, TrustSetFlag.TF_SET_FREEZE) == "tesSUCCESS"
    ledger.node.advance_time(20)
    ledger.close()
    cancel = EscrowCancel(
        account=alice.classic_address, owner=alice.classic_address, offer_sequence=seq
    )
    assert ledger.submit(cancel, alice).final_result == "tesSUCCESS"
    assert _balance(ledger, alice, issuer.classic_address) == 100


def test_a_token_escrow_needs_both_parties_authorised(ledger) -> None:
    # EscrowCreate preclaim (Issue): requireAuth(account), requireAuth(dest).
    issuer, alice, bob = ledger.fund(), ledger.fund(), ledger.fund()
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_REQUIRE_AUTH) == "tesSUCCESS"
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_ALLOW_TRUSTLINE_LOCKING) == "tesSUCCESS"
    _trust(ledger, alice, issuer)
    assert _issuer_line_flags(ledger, issuer, alice, TrustSetFlag.TF_SET_AUTH) == "tesSUCCESS"
    assert _pay(ledger, issuer, alice, usd(issuer, "50")) == "tesSUCCESS"
    assert _escrow(ledger, alice, bob, usd(issuer, "10"))[0] == "tecNO_LINE"
    _trust(ledger, bob, issuer)
    assert _escrow(ledger, alice, bob, usd(issuer, "10"))[0] == "tecNO_AUTH"
    assert _issuer_line_flags(ledger, issuer, bob, TrustSetFlag.TF_SET_AUTH) == "tesSUCCESS"
    assert _escrow(ledger, alice, bob, usd(issuer, "10"))[0] == "tesSUCCESS"


# --- malformed input -----------------------------------------------------------------------


def _account_set_json(ledger, wallet, **fields):
    tx = {
        "TransactionType": "AccountSet",
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
        ({"SetFlag": 2, "ClearFlag": 2}, "temINVALID_FLAG"),
        ({"SetFlag": 2, "Flags": 0x00080000}, "temINVALID_FLAG"),  # RequireAuth vs tfOptionalAuth
        ({"Flags": 0x00040000 | 0x00080000}, "temINVALID_FLAG"),
        ({"Flags": 0x00000001}, "temINVALID_FLAG"),
        ({"SetFlag": 4}, "temDISABLED"),  # DisableMaster is not built
    ],
)
def test_malformed_account_flags_are_refused_without_effect(ledger, fields, expected) -> None:
    alice = ledger.fund()
    before = ledger.account(alice.classic_address)
    done = _account_set_json(ledger, alice, **fields)
    assert done.engine_result == expected
    assert ledger.account(alice.classic_address) == before


def _trust_json(ledger, wallet, issuer, flags: int):
    tx = {
        "TransactionType": "TrustSet",
        "Account": wallet.classic_address,
        "Fee": "10",
        "Flags": flags,
        "LimitAmount": {"currency": "USD", "issuer": issuer, "value": "0"},
        "Sequence": ledger.next_sequence(wallet.classic_address),
        "LastLedgerSequence": ledger.raw("ledger_current")["ledger_current_index"] + 10,
    }
    return ledger.submit_json(tx, wallet)


def test_malformed_trust_set_flags_are_refused(ledger, token) -> None:
    issuer, alice, _ = token
    before = _line(ledger, issuer, alice.classic_address)
    out_of_range = _trust_json(ledger, issuer, alice.classic_address, 0x01000000)
    assert out_of_range.engine_result == "temINVALID_FLAG"
    unknown_peer = _trust_json(
        ledger, issuer, "rPT1Sjq2YGrBMTttX4GZHjKu9dyfzbpAYe", TrustSetFlag.TF_SET_FREEZE
    )
    assert unknown_peer.final_result == "tecNO_DST"
    assert _line(ledger, issuer, alice.classic_address) == before


def test_a_finish_fails_when_the_destination_line_lost_its_authorisation(ledger) -> None:
    # EscrowFinish preclaim (Issue): requireAuth(dest). Authorisation is no reason to
    # keep a line (SetTrust.cpp's reserve rule), so a holder that empties its line loses
    # it, and a line opened again is unauthorised: the locked payout can no longer land.
    issuer, alice, bob = ledger.fund(), ledger.fund(), ledger.fund()
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_REQUIRE_AUTH) == "tesSUCCESS"
    assert _set(ledger, issuer, AccountSetAsfFlag.ASF_ALLOW_TRUSTLINE_LOCKING) == "tesSUCCESS"
    for holder in (alice, bob):
        _trust(ledger, holder, issuer)
        assert _issuer_line_flags(ledger, issuer, holder, TrustSetFlag.TF_SET_AUTH) == "tesSUCCESS"
    assert _pay(ledger, issuer, alice, usd(issuer, "50")) == "tesSUCCESS"
    result, sequence = _escrow(ledger, alice, bob, usd(issuer, "10"))
    assert result == "tesSUCCESS"
    _trust(ledger, bob, issuer, value="0", flags=TrustSetFlag.TF_SET_NO_RIPPLE)
    assert ledger.lines(bob.classic_address) == []
    ledger.node.advance_time(5)
    ledger.close()
    assert _finish(ledger, bob, alice, sequence) == "tecNO_LINE"
    _trust(ledger, bob, issuer)
    assert _finish(ledger, bob, alice, sequence) == "tecNO_AUTH"
    assert _balance(ledger, bob, issuer.classic_address) == 0
    assert _issuer_line_flags(ledger, issuer, bob, TrustSetFlag.TF_SET_AUTH) == "tesSUCCESS"
    assert _finish(ledger, bob, alice, sequence) == "tesSUCCESS"
    assert _balance(ledger, bob, issuer.classic_address) == 10
