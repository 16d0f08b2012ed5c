"""Issued tokens over trust lines: TrustSet, issuing, redeeming, rippling, reserves."""

from __future__ import annotations

from decimal import Decimal

from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.transactions import (
    AccountSet,
    AccountSetAsfFlag,
    Payment,
    TrustSet,
    TrustSetFlag,
)


def usd(issuer: str, value: str) -> IssuedCurrencyAmount:
    return IssuedCurrencyAmount(currency="USD", issuer=issuer, value=value)


def _setup(ledger, *, default_ripple: bool):
    issuer, alice, bob = ledger.fund(), ledger.fund(), ledger.fund()
    if default_ripple:
        done = ledger.submit(
            AccountSet(
                account=issuer.classic_address, set_flag=AccountSetAsfFlag.ASF_DEFAULT_RIPPLE
            ),
            issuer,
        )
        assert done.final_result == "tesSUCCESS"
    for holder in (alice, bob):
        done = ledger.submit(
            TrustSet(
                account=holder.classic_address, limit_amount=usd(issuer.classic_address, "1000")
            ),
            holder,
        )
        assert done.final_result == "tesSUCCESS"
    return issuer, alice, bob


def _balance(ledger, holder: str, issuer: str) -> Decimal:
    lines = [line for line in ledger.lines(holder) if line["account"] == issuer]
    return Decimal(lines[0]["balance"]) if lines else Decimal(0)


def test_holders_pay_each_other_through_an_issuer_with_default_ripple(ledger) -> None:
    issuer, alice, bob = _setup(ledger, default_ripple=True)
    assert ledger.account(alice.classic_address)["OwnerCount"] == 1
    assert ledger.account(issuer.classic_address)["OwnerCount"] == 0
    issued = ledger.submit(
        Payment(
            account=issuer.classic_address,
            destination=alice.classic_address,
            amount=usd(issuer.classic_address, "100"),
        ),
        issuer,
    )
    assert issued.final_result == "tesSUCCESS"
    moved = ledger.submit(
        Payment(
            account=alice.classic_address,
            destination=bob.classic_address,
            amount=usd(issuer.classic_address, "30.5"),
        ),
        alice,
    )
    assert moved.final_result == "tesSUCCESS"
    assert _balance(ledger, alice.classic_address, issuer.classic_address) == Decimal("69.5")
    assert _balance(ledger, bob.classic_address, issuer.classic_address) == Decimal("30.5")
    issuer_view = {
        line["account"]: Decimal(line["balance"]) for line in ledger.lines(issuer.classic_address)
    }
    assert issuer_view == {
        alice.classic_address: Decimal("-69.5"),
        bob.classic_address: Decimal("-30.5"),
    }
    redeemed = ledger.submit(
        Payment(
            account=bob.classic_address,
            destination=issuer.classic_address,
            amount=usd(issuer.classic_address, "30.5"),
        ),
        bob,
    )
    assert redeemed.final_result == "tesSUCCESS"
    assert _balance(ledger, bob.classic_address, issuer.classic_address) == 0
    meta = ledger.raw("tx", transaction=moved.tx_hash, api_version=2)["meta"]
    assert meta["delivered_amount"]["value"] == "30.5"
    changed = [
        n["ModifiedNode"]["LedgerEntryType"] for n in meta["AffectedNodes"] if "ModifiedNode" in n
    ]
    assert changed.count("RippleState") == 2


def test_no_rippling_through_an_issuer_without_default_ripple(ledger) -> None:
    issuer, alice, bob = _setup(ledger, default_ripple=False)
    ledger.submit(
        Payment(
            account=issuer.classic_address,
            destination=alice.classic_address,
            amount=usd(issuer.classic_address, "100"),
        ),
        issuer,
    )
    done = ledger.submit(
        Payment(
            account=alice.classic_address,
            destination=bob.classic_address,
            amount=usd(issuer.classic_address, "10"),
        ),
        alice,
    )
    assert done.final_result == "tecPATH_DRY"
    assert _balance(ledger, alice.classic_address, issuer.classic_address) == 100


def test_no_trust_line_is_path_dry_and_over_the_limit_is_partial(ledger) -> None:
    issuer, alice, _ = _setup(ledger, default_ripple=True)
    stranger = ledger.fund()
    dry = ledger.submit(
        Payment(
            account=issuer.classic_address,
            destination=stranger.classic_address,
            amount=usd(issuer.classic_address, "1"),
        ),
        issuer,
    )
    assert dry.final_result == "tecPATH_DRY"
    over = ledger.submit(
        Payment(
            account=issuer.classic_address,
            destination=alice.classic_address,
            amount=usd(issuer.classic_address, "1000.01"),
        ),
        issuer,
    )
    assert over.final_result == "tecPATH_PARTIAL"
    assert _balance(ledger, alice.classic_address, issuer.classic_address) == 0
    unfunded = ledger.submit(
        Payment(
            account=alice.classic_address,
            destination=issuer.classic_address,
            amount=usd(issuer.classic_address, "1"),
        ),
        alice,
    )
    assert unfunded.final_result == "tecPATH_DRY"


def test_removing_a_trust_line_releases_its_reserve(ledger) -> None:
    issuer, alice, _ = _setup(ledger, default_ripple=True)
    assert len(ledger.objects(alice.classic_address, "state")) == 1
    zero = usd(issuer.classic_address, "0")
    done = ledger.submit(TrustSet(account=alice.classic_address, limit_amount=zero), alice)
    assert done.final_result == "tesSUCCESS"
    # Alice has no DefaultRipple, so her side is only back in its default state once
    # NoRipple is set as well; until then the line (and its reserve) stays.
    assert len(ledger.objects(alice.classic_address, "state")) == 1
    assert ledger.account(alice.classic_address)["OwnerCount"] == 1
    done = ledger.submit(
        TrustSet(
            account=alice.classic_address, limit_amount=zero, flags=TrustSetFlag.TF_SET_NO_RIPPLE
        ),
        alice,
    )
    assert done.final_result == "tesSUCCESS"
    assert ledger.objects(alice.classic_address, "state") == []
    assert ledger.account(alice.classic_address)["OwnerCount"] == 0


def test_trust_line_to_a_missing_issuer_and_redundant_lines(ledger) -> None:
    from xrpl.wallet import Wallet

    alice = ledger.fund()
    ghost = Wallet.create().classic_address
    done = ledger.submit(
        TrustSet(account=alice.classic_address, limit_amount=usd(ghost, "10")), alice
    )
    assert done.final_result == "tecNO_DST"
    issuer = ledger.fund()
    redundant = ledger.submit(
        TrustSet(account=alice.classic_address, limit_amount=usd(issuer.classic_address, "0")),
        alice,
    )
    assert redundant.final_result == "tecNO_LINE_REDUNDANT"
