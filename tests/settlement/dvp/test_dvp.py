"""Delivery versus payment across the local XRP Ledger and Stellar networks.

Real adapters, real HTTP, a real PostgreSQL. After each scenario: the commitment's
state, the exact balances (every unit accounted for), one applied submission per leg and
purpose at most, and the audit chain with every ledger reference checked on its ledger.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from uuid import UUID

import pytest
from stellar_sdk import Asset as SdkAsset
from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.transactions import Payment

from ledger.settlements import settlements_of
from settlement.domain import errors
from settlement.domain.states import State
from settlement.domain.values import SYSTEM, Actor, Role
from settlement.dvp import LegInstruction, Progress
from settlement.services.keys import KeyService, actor_of
from tests.support import ADMIN, OFFICER, OTHER_ALLOCATOR

from .conftest import Dvp

BOND = Decimal(10)
PRICE = Decimal(1000)


def _instruct(dvp: Dvp, cid: UUID, *, deadline_s: int = 60, settle_in_s: int | None = None) -> UUID:
    now = dvp.world.clock.now()
    return dvp.coordinator.instruct(
        SYSTEM,
        cid,
        dvp.world.legs(BOND, PRICE),
        commit_deadline=now + timedelta(seconds=deadline_s),
        settle_not_before=None if settle_in_s is None else now + timedelta(seconds=settle_in_s),
    )


def _moved(before: dict[str, Decimal], after: dict[str, Decimal]) -> dict[str, Decimal]:
    return {k: after[k] - before[k] for k in before if after[k] != before[k]}


def _submissions(dvp: Dvp, sid: UUID) -> Counter[tuple[int, str, str]]:
    _, _, subs = dvp.coordinator.settlement(sid)
    return Counter((s.leg_no, s.purpose, s.status) for s in subs)


def test_bond_against_usdc_settles_every_leg(dvp: Dvp) -> None:
    cid = dvp.verified_commitment(str(PRICE))
    before = dvp.world.holdings()
    sid = _instruct(dvp, cid)
    result = dvp.drive(sid)
    assert (result.progress, result.status) == (Progress.DONE, "SETTLED"), result
    assert dvp.engine.commitments.state_of(cid) is State.SETTLED
    assert _moved(before, dvp.world.holdings()) == {
        "BND:seller": -BOND,
        "BND:buyer": BOND,
        "USDC:buyer": -PRICE,
        "USDC:seller": PRICE,
    }
    settlement, legs, _ = dvp.coordinator.settlement(sid)
    assert settlement.decision == "COMMIT"
    assert [leg.state for leg in legs] == ["COMMITTED", "COMMITTED"]
    assert _submissions(dvp, sid) == Counter(
        {
            (0, "lock", "APPLIED"): 1,
            (1, "lock", "APPLIED"): 1,
            (0, "claim", "APPLIED"): 1,
            (0, "commit", "APPLIED"): 1,
            (1, "commit", "APPLIED"): 1,
        }
    )
    # the USDC is claimed into the agent, the bond escrow finished (and validated), and
    # only then is the USDC paid out
    actions = [e.action for e in dvp.engine.commitments.audit_trail(cid)]
    assert actions[-9:] == [
        "settlement_instructed",
        "leg_lock",
        "leg_lock",
        "lock",
        "settlement_commit",
        "leg_claim",
        "leg_commit",
        "leg_commit",
        "settle",
    ]
    _, _, subs = dvp.coordinator.settlement(sid)
    finish = next(s for s in subs if s.leg_no == 1 and s.purpose == "commit")
    payout = next(s for s in subs if s.leg_no == 0 and s.purpose == "commit")
    assert finish.finalized_at is not None and finish.finalized_at <= payout.signed_at
    dvp.verify_audit()


def test_stellar_lock_rejected_aborts_before_anything_is_locked_on_xrpl(dvp: Dvp) -> None:
    cid = dvp.verified_commitment(str(PRICE))
    sid = _instruct(dvp, cid)
    # the buyer spends its USDC after the instruction was checked
    buyer = dvp.world.buyer_stellar
    balance = dvp.world.stellar.balance(buyer.public_key, dvp.world.usdc)
    dvp.world.stellar.send(
        buyer,
        lambda b: b.append_payment_op(
            dvp.world.usdc.issuer,
            SdkAsset(dvp.world.usdc.code, dvp.world.usdc.issuer),
            f"{balance:f}",
        ),
    )
    before = dvp.world.holdings()
    result = dvp.drive(sid)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    settlement, legs, _ = dvp.coordinator.settlement(sid)
    assert settlement.decision == "ABORT"
    assert "lock rejected" in (settlement.decision_reason or "")
    assert [leg.state for leg in legs] == ["NOT_LOCKED", "NOT_LOCKED"]
    assert _submissions(dvp, sid) == Counter({(0, "lock", "REJECTED"): 1})
    assert dvp.engine.commitments.state_of(cid) is State.VERIFIED
    assert _moved(before, dvp.world.holdings()) == {}
    dvp.verify_audit()


def test_xrpl_lock_rejected_unwinds_the_stellar_lock_at_once(dvp: Dvp) -> None:
    cid = dvp.verified_commitment(str(PRICE))
    before = dvp.world.holdings()
    sid = _instruct(dvp, cid, deadline_s=20)
    # the seller gives its bonds away after the instruction was checked
    seller, bond = dvp.world.seller_xrpl, dvp.world.bond
    dvp.world.xrpl.send(
        Payment(
            account=seller.classic_address,
            destination=bond.issuer or "",
            amount=IssuedCurrencyAmount(
                currency=bond.code, issuer=bond.issuer or "", value=f"{Decimal(1000):f}"
            ),
        ),
        seller,
    )
    result = dvp.drive(sid, timeout_s=60)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    settlement, legs, _ = dvp.coordinator.settlement(sid)
    assert settlement.decision == "ABORT"
    assert [leg.state for leg in legs] == ["UNWOUND", "NOT_LOCKED"]
    counts = _submissions(dvp, sid)
    assert counts[(0, "lock", "APPLIED")] == 1
    assert counts[(0, "unwind", "APPLIED")] == 1
    assert dvp.engine.commitments.state_of(cid) is State.VERIFIED
    moved = _moved(before, dvp.world.holdings())
    assert moved == {"BND:seller": Decimal(-1000)}, "the buyer got every USDC back"
    dvp.verify_audit()


def test_force_cancel_while_escrowed_unwinds_to_cancelled(dvp: Dvp) -> None:
    cid = dvp.verified_commitment(str(PRICE))
    before = dvp.world.holdings()
    sid = _instruct(dvp, cid, deadline_s=600, settle_in_s=300)
    result = dvp.drive(sid, timeout_s=10, until=dvp.escrowed(cid))
    assert result.progress is Progress.WAITING
    assert dvp.engine.commitments.state_of(cid) is State.ESCROWED
    with pytest.raises(errors.NotAuthorised):
        dvp.coordinator.request_force_cancel(Actor("key-x", Role.ALLOCATOR, party="p"), sid, "x")
    key = KeyService(dvp.engine.db, dvp.world.clock).create(
        role=Role.ADMIN, party=None, person="ada-admin", created_by="test"
    )
    admin = actor_of(key.record)
    dvp.coordinator.request_force_cancel(admin, sid, "counterparty default")

    def stellar_unwound() -> bool:
        _, now_legs, _ = dvp.coordinator.settlement(sid)
        return [leg.state for leg in now_legs] == ["UNWOUND", "LOCKED"]

    result = dvp.drive(sid, timeout_s=10, until=stellar_unwound)
    # Stellar unwinds at once; the XRPL escrow only after CancelAfter
    assert result.status == "UNWINDING"
    _, legs, _ = dvp.coordinator.settlement(sid)
    assert [leg.state for leg in legs] == ["UNWOUND", "LOCKED"]
    dvp.world.advance_time(600 + 120 + 30)
    result = dvp.drive(sid)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    assert dvp.engine.commitments.state_of(cid) is State.CANCELLED
    history = dvp.engine.commitments.history(cid)
    assert (history[-1].event, history[-1].actor, history[-1].reason) == (
        "force_cancel",
        "ada-admin",
        "counterparty default",
    )
    # the person who asked, with the key that signed, on the request and on the cancel
    # the worker made for them later
    entries = {e.action: e for e in dvp.engine.commitments.audit_trail(cid)}
    for action in ("settlement_cancel_requested", "force_cancel"):
        assert (entries[action].actor, entries[action].key_id) == ("ada-admin", key.record.key_id)
    assert _moved(before, dvp.world.holdings()) == {}
    dvp.verify_audit()


def test_deadline_passing_while_escrowed_releases_to_verified(dvp: Dvp) -> None:
    cid = dvp.verified_commitment(str(PRICE))
    before = dvp.world.holdings()
    sid = _instruct(dvp, cid, deadline_s=60, settle_in_s=50)
    assert dvp.drive(sid, timeout_s=10, until=dvp.escrowed(cid)).progress is Progress.WAITING
    assert dvp.engine.commitments.state_of(cid) is State.ESCROWED
    dvp.world.advance_time(60 + 120 + 30)  # past the deadline and T_cancel
    result = dvp.drive(sid)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    settlement, _, _ = dvp.coordinator.settlement(sid)
    assert "deadline" in (settlement.decision_reason or "")
    assert dvp.engine.commitments.state_of(cid) is State.VERIFIED
    assert dvp.engine.commitments.history(cid)[-1].event == "release"
    assert _moved(before, dvp.world.holdings()) == {}
    dvp.verify_audit()


def test_after_commit_there_is_no_cancel(dvp: Dvp) -> None:
    cid = dvp.verified_commitment(str(PRICE))
    sid = _instruct(dvp, cid)
    assert dvp.drive(sid).status == "SETTLED"
    with pytest.raises(errors.TransitionNotAllowed, match="only rolls forward"):
        dvp.coordinator.request_force_cancel(ADMIN, sid, "too late")


def test_one_open_settlement_per_commitment(dvp: Dvp) -> None:
    cid = dvp.verified_commitment(str(PRICE))
    _instruct(dvp, cid, settle_in_s=30)
    with pytest.raises(errors.TransitionNotAllowed, match="already has an open settlement"):
        _instruct(dvp, cid)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda legs: legs[:1], "at least two legs"),
        (
            lambda legs: [
                legs[0],
                LegInstruction(
                    legs[1].chain, legs[1].asset, legs[1].amount, legs[1].sender, legs[1].sender
                ),
            ],
            "to itself",
        ),
        (
            lambda legs: [
                LegInstruction(
                    legs[0].chain, legs[0].asset, Decimal("999"), legs[0].sender, legs[0].receiver
                ),
                legs[1],
            ],
            "pay 999 USDC; the commitment is for 1000",
        ),
        (
            lambda legs: [
                legs[0],
                LegInstruction(
                    legs[1].chain,
                    legs[1].asset,
                    Decimal("10.0000000000000001"),
                    legs[1].sender,
                    legs[1].receiver,
                ),
            ],
            r"leg 1 \(xrpl BND\)",
        ),
        (
            lambda legs: [
                LegInstruction(
                    legs[0].chain,
                    legs[0].asset,
                    Decimal("1000.00000001"),
                    legs[0].sender,
                    legs[0].receiver,
                ),
                legs[1],
            ],
            r"leg 0 \(stellar USDC\)",
        ),
    ],
)
def test_bad_instructions_refused_before_anything_is_signed(
    dvp: Dvp, change: object, message: str
) -> None:
    cid = dvp.verified_commitment(str(PRICE))
    legs = change(dvp.world.legs(BOND, PRICE))  # type: ignore[operator]
    with pytest.raises(errors.InvalidInput, match=message):
        dvp.coordinator.instruct(
            SYSTEM, cid, legs, commit_deadline=dvp.world.clock.now() + timedelta(seconds=60)
        )
    assert dvp.engine.commitments.state_of(cid) is State.VERIFIED
    with dvp.engine.db.unit_of_work() as uow:
        assert settlements_of(uow, cid) == [], "nothing was written"


def test_instruction_needs_a_verified_commitment_and_a_future_deadline(dvp: Dvp) -> None:
    cid = dvp.verified_commitment(str(PRICE))
    legs = dvp.world.legs(BOND, PRICE)
    with pytest.raises(errors.InvalidInput, match="deadline"):
        dvp.coordinator.instruct(SYSTEM, cid, legs, commit_deadline=dvp.world.clock.now())
    with pytest.raises(errors.NotAuthorised):
        dvp.coordinator.instruct(
            OTHER_ALLOCATOR,
            cid,
            legs,
            commit_deadline=dvp.world.clock.now() + timedelta(seconds=60),
        )
    dvp.engine.commitments.withdraw(
        Actor("key-alloc-1", Role.ALLOCATOR, party="party-northwind"), cid
    )
    with pytest.raises(errors.TransitionNotAllowed, match="VERIFIED"):
        dvp.coordinator.instruct(
            SYSTEM, cid, legs, commit_deadline=dvp.world.clock.now() + timedelta(seconds=60)
        )


def test_fee_leg_settles_with_the_rest(dvp: Dvp) -> None:
    cid = dvp.verified_commitment(str(PRICE))
    before = dvp.world.holdings()
    legs = [dvp.world.fee_leg(Decimal("2.5")), *dvp.world.legs(BOND, PRICE)]
    sid = dvp.coordinator.instruct(
        SYSTEM, cid, legs, commit_deadline=dvp.world.clock.now() + timedelta(seconds=60)
    )
    assert dvp.drive(sid).status == "SETTLED"
    assert _moved(before, dvp.world.holdings()) == {
        "BND:seller": -BOND,
        "BND:buyer": BOND,
        "USDC:buyer": -PRICE - Decimal("2.5"),
        "USDC:seller": PRICE,
        "USDC:fees": Decimal("2.5"),
    }
    dvp.verify_audit()


def test_stellar_lock_rejected_after_another_locked_unwinds_it(dvp: Dvp) -> None:
    """The fee leg locks, then Stellar rejects the principal (the buyer's USDC left
    after the instruction): ABORT, and the fee lock is paid back at once."""
    cid = dvp.verified_commitment(str(PRICE))
    legs = [dvp.world.fee_leg(Decimal("2.5")), *dvp.world.legs(BOND, PRICE)]
    sid = dvp.coordinator.instruct(
        SYSTEM, cid, legs, commit_deadline=dvp.world.clock.now() + timedelta(seconds=60)
    )
    buyer, usdc = dvp.world.buyer_stellar, dvp.world.usdc
    spend = dvp.world.stellar.balance(buyer.public_key, usdc) - Decimal(100)
    dvp.world.stellar.send(
        buyer,
        lambda b: b.append_payment_op(usdc.issuer, SdkAsset(usdc.code, usdc.issuer), f"{spend:f}"),
    )
    before = dvp.world.holdings()
    result = dvp.drive(sid)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    _, states, _ = dvp.coordinator.settlement(sid)
    assert [leg.state for leg in states] == ["UNWOUND", "NOT_LOCKED", "NOT_LOCKED"]
    assert _submissions(dvp, sid) == Counter(
        {(0, "lock", "APPLIED"): 1, (0, "unwind", "APPLIED"): 1, (1, "lock", "REJECTED"): 1}
    )
    assert dvp.engine.commitments.state_of(cid) is State.VERIFIED
    assert _moved(before, dvp.world.holdings()) == {}
    dvp.verify_audit()


def test_legs_of_one_sender_are_checked_together(dvp: Dvp) -> None:
    cid = dvp.verified_commitment(str(PRICE))
    balance = dvp.world.stellar.balance(dvp.world.buyer_stellar.public_key, dvp.world.usdc)
    legs = [dvp.world.fee_leg(balance - PRICE + Decimal(1)), *dvp.world.legs(BOND, PRICE)]
    with pytest.raises(errors.InvalidInput, match="together"):
        dvp.coordinator.instruct(
            SYSTEM, cid, legs, commit_deadline=dvp.world.clock.now() + timedelta(seconds=60)
        )


def test_database_refuses_state_changes_the_open_settlement_does_not_support(dvp: Dvp) -> None:
    """Whatever the application sends: no withdraw while settling, no SETTLED with a leg
    not committed, no release with a leg still locked."""
    service = dvp.engine.commitments
    cid = dvp.verified_commitment(str(PRICE))
    sid = _instruct(dvp, cid, deadline_s=600, settle_in_s=300)
    with pytest.raises(errors.TransitionNotAllowed, match="is settling"):
        service.withdraw(Actor("key-alloc-1", Role.ALLOCATOR, party="party-northwind"), cid)
    assert dvp.drive(sid, timeout_s=10, until=dvp.escrowed(cid)).progress is Progress.WAITING
    assert service.state_of(cid) is State.ESCROWED  # every leg locked, settle date ahead
    with pytest.raises(errors.TransitionNotAllowed, match="0 of 2 legs"):
        service.settle(SYSTEM, cid)
    with pytest.raises(errors.TransitionNotAllowed, match="0 of 2 legs"):
        service.release(SYSTEM, cid)
    assert service.state_of(cid) is State.ESCROWED


def test_a_finish_refused_after_commit_waits_for_a_person_who_retries(dvp: Dvp) -> None:
    """The bond's finish is refused for good (the buyer lowered its trust line after the
    lock): nothing is paid out (the USDC waits with the agent), a person is told, and
    once the line is restored an admin's retry settles every leg."""
    service, world = dvp.engine.commitments, dvp.world
    cid = dvp.verified_commitment(str(PRICE))
    before = world.holdings()
    sid = _instruct(dvp, cid, deadline_s=600, settle_in_s=60)
    assert dvp.drive(sid, timeout_s=10, until=dvp.escrowed(cid)).progress is Progress.WAITING
    world.xrpl.trust(world.buyer_xrpl, world.bond, BOND - 1)
    world.advance_time(61)
    result = dvp.drive(sid, timeout_s=30)
    assert result.progress is Progress.NEEDS_REVIEW, result
    settlement, legs, subs = dvp.coordinator.settlement(sid)
    assert settlement.decision == "COMMIT" and settlement.needs_review
    assert "refused" in (settlement.review_reason or "")
    assert [leg.state for leg in legs] == ["HELD", "REFUSED"], "nothing paid out"
    assert {s.result_code for s in subs if s.purpose == "commit" and s.leg_no == 1} == {
        "tecLIMIT_EXCEEDED"
    }
    assert not any(s.purpose == "commit" and s.leg_no == 0 for s in subs), "USDC not paid"
    # the bond is still in its escrow, the USDC with the agent
    assert _moved(before, world.holdings()) == {
        "BND:seller": -BOND,
        "USDC:buyer": -PRICE,
        "USDC:agent": PRICE,
    }
    assert service.state_of(cid) is State.ESCROWED, "never SETTLED with a leg not committed"
    assert [s.id for s in dvp.engine.settlements.flagged()] == [sid]

    with pytest.raises(errors.NotAuthorised):
        dvp.engine.settlements.retry(SYSTEM, sid, "not an admin")
    world.xrpl.trust(world.buyer_xrpl, world.bond, BOND * 10)
    dvp.engine.settlements.retry(ADMIN, sid, "buyer restored its BND trust line")
    result = dvp.drive(sid)
    assert (result.progress, result.status) == (Progress.DONE, "SETTLED"), result
    assert service.state_of(cid) is State.SETTLED
    assert dvp.engine.settlements.flagged() == []
    assert _moved(before, world.holdings()) == {
        "BND:seller": -BOND,
        "BND:buyer": BOND,
        "USDC:buyer": -PRICE,
        "USDC:seller": PRICE,
    }
    actions = [e.action for e in service.audit_trail(cid)]
    assert "settlement_flagged" in actions and "settlement_retried" in actions
    dvp.verify_audit()


def test_legs_only_between_registered_accounts_of_the_commitments_parties(dvp: Dvp) -> None:
    cid = dvp.verified_commitment(str(PRICE))
    stranger = dvp.world.stellar.account()  # funded and trusting USDC, registered to nobody
    dvp.world.stellar.trust(stranger, dvp.world.usdc)
    legs = dvp.world.legs(BOND, PRICE)
    unregistered = [
        LegInstruction(
            legs[0].chain, legs[0].asset, legs[0].amount, legs[0].sender, stranger.public_key
        ),
        legs[1],
    ]
    with pytest.raises(errors.InvalidInput, match="not a registered account"):
        dvp.coordinator.instruct(
            SYSTEM, cid, unregistered, commit_deadline=dvp.world.clock.now() + timedelta(seconds=60)
        )
    # registered, but to a party that is not on this commitment
    compliance = dvp.engine.compliance
    compliance.create_kyc(
        OFFICER,
        party="party-elsewhere",
        legal_name="Elsewhere Holdings",
        jurisdiction="GB",
        risk_rating="low",
        accredited=True,
        status="verified",
        expires_on=date(2099, 12, 31),
    )
    compliance.register_account(OFFICER, "party-elsewhere", "stellar", stranger.public_key)
    with pytest.raises(errors.InvalidInput, match="belongs to party-elsewhere"):
        dvp.coordinator.instruct(
            SYSTEM, cid, unregistered, commit_deadline=dvp.world.clock.now() + timedelta(seconds=60)
        )
    with dvp.engine.db.unit_of_work() as uow:
        assert settlements_of(uow, cid) == []


def test_account_registration_rules(dvp: Dvp) -> None:
    compliance, account = dvp.engine.compliance, dvp.world.stellar.account().public_key
    with pytest.raises(errors.InvalidPartyData, match="not a stellar account"):
        compliance.register_account(OFFICER, "party-northwind", "stellar", "GNOTANACCOUNT")
    with pytest.raises(errors.InvalidPartyData, match="xrpl or stellar"):
        compliance.register_account(OFFICER, "party-northwind", "bitcoin", account)
    with pytest.raises(errors.UnknownParty):
        compliance.register_account(OFFICER, "party-nobody", "stellar", account)
    with pytest.raises(errors.NotAnOfficer):
        compliance.register_account(
            Actor("key-x", Role.COMPLIANCE_OFFICER), "party-northwind", "stellar", account
        )
    compliance.register_account(OFFICER, "party-northwind", "stellar", account)
    with pytest.raises(errors.Conflict):
        compliance.register_account(OFFICER, "party-southbank", "stellar", account)
    assert account in [a.address for a in compliance.accounts_of("party-northwind")]
    entries = compliance.audit_entries(subject_kind="ledger_account", subject=f"stellar:{account}")
    assert [(e.action, e.actor) for e in entries] == [("ledger_account_registered", OFFICER.id)]
    assert compliance.verify_audit().ok
