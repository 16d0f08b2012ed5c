"""Delivery versus payment on the public testnets, end to end.

A bond token issued on the XRPL testnet against USDC issued on the Stellar testnet,
every account new from the faucets, the engine and coordinator as a worker runs them,
real ledger time. One settlement settles; one aborts because a lock is refused after
the other leg was locked. Each ends with the balances read back from both ledgers and
the audit chain verified, every ledger reference looked up on the testnet it names.

Skipped unless ``SETTLEMENT_XRPL_URL`` and ``SETTLEMENT_HORIZON_URL`` are set (see the
conftest and the README); about five minutes each, most of it provisioning.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

import pytest
from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.transactions import Payment

from ledger.audit import verify_all
from settlement.demo.world import LocalWorld
from settlement.domain.states import State
from settlement.domain.values import SYSTEM
from settlement.dvp import Progress
from settlement.dvp.ledger_refs import ledger_ref_checker
from tests.support import ALLOCATOR, OFFICER

from .conftest import BOND_UNITS, USDC_UNITS, EngineOnPublicTestnets

# provisioning (two to three minutes) runs in the fixtures, inside this timeout
pytestmark = [pytest.mark.testnet, pytest.mark.timeout(1_200)]

BOND = Decimal(10)
PRICE = Decimal(1_000)
#: locks on both testnets take a few closes each; the window leaves room for retries
#: and for a slow faucet-fed network, and T_cancel comes the policy's margin after it
COMMIT_WINDOW_S = 600
#: how long a settlement may take to close, and how often the coordinator steps (each
#: step reads both ledgers: stepping faster only spends the public servers' patience)
SETTLE_TIMEOUT_S = 600.0
STEP_POLL_S = 2.0
#: a public endpoint is several servers, some a ledger or two behind: balances are read
#: again until they show what is expected, for this long at most
BALANCES_SETTLE_S = 60.0


def _verified_commitment(t: EngineOnPublicTestnets) -> UUID:
    service = t.engine.commitments
    created = service.create(
        ALLOCATOR,
        deal_ref="BOND-DVP-TESTNET",
        amount=str(PRICE),
        currency="USDC",
        counterparty="party-southbank",
    )
    service.submit(ALLOCATOR, created.commitment_id)
    service.approve(OFFICER, created.commitment_id)
    assert service.state_of(created.commitment_id) is State.VERIFIED
    return created.commitment_id


def _instruct(t: EngineOnPublicTestnets, commitment_id: UUID) -> UUID:
    """USDC from the buyer to the seller on Stellar, the bond from the seller to the
    buyer on the XRP Ledger."""
    return t.coordinator.instruct(
        SYSTEM,
        commitment_id,
        t.world.legs(BOND, PRICE),
        commit_deadline=t.world.clock.now() + timedelta(seconds=COMMIT_WINDOW_S),
    )


def _holdings_become(world: LocalWorld, expected: dict[str, Decimal]) -> dict[str, Decimal]:
    """The world's balances once they read as ``expected``, or the last reading."""
    deadline = time.monotonic() + BALANCES_SETTLE_S
    held = world.holdings()
    while held != expected and time.monotonic() < deadline:
        time.sleep(2.0)
        held = world.holdings()
    return held


def _verify_audit(t: EngineOnPublicTestnets) -> None:
    with t.engine.db.unit_of_work() as uow:
        report = verify_all(uow.connection, check_ledger_ref=ledger_ref_checker(t.world.chains))
    assert report.ok, report.breaks
    assert report.ledger_refs_checked > 0


def test_a_bond_against_usdc_settles_on_both_testnets(
    testnet_engine: EngineOnPublicTestnets,
) -> None:
    t = testnet_engine
    cid = _verified_commitment(t)
    sid = _instruct(t, cid)
    result = t.coordinator.run_to_end(sid, timeout_s=SETTLE_TIMEOUT_S, poll_s=STEP_POLL_S)
    assert (result.progress, result.status) == (Progress.DONE, "SETTLED"), result
    assert t.engine.commitments.state_of(cid) is State.SETTLED
    settlement, legs, _ = t.coordinator.settlement(sid)
    assert settlement.decision == "COMMIT"
    assert [leg.state for leg in legs] == ["COMMITTED", "COMMITTED"]
    expected = {
        "BND:seller": BOND_UNITS - BOND,
        "BND:buyer": BOND,
        "USDC:buyer": USDC_UNITS - PRICE,
        "USDC:seller": PRICE,
        "USDC:agent": Decimal(0),
        "USDC:fees": Decimal(0),
    }
    assert _holdings_become(t.world, expected) == expected
    _verify_audit(t)


def test_a_refused_lock_aborts_and_returns_every_leg_on_both_testnets(
    testnet_engine: EngineOnPublicTestnets,
) -> None:
    t = testnet_engine
    cid = _verified_commitment(t)
    sid = _instruct(t, cid)
    # the seller gives its bonds back to the issuer after the instruction was checked:
    # the Stellar leg locks first, then the ledger refuses the XRPL lock for lack of funds
    seller, bond = t.world.seller_xrpl, t.world.bond
    t.world.xrpl.send(
        Payment(
            account=seller.classic_address,
            destination=bond.issuer or "",
            amount=IssuedCurrencyAmount(
                currency=bond.code, issuer=bond.issuer or "", value=f"{BOND_UNITS:f}"
            ),
        ),
        seller,
    )
    result = t.coordinator.run_to_end(sid, timeout_s=SETTLE_TIMEOUT_S, poll_s=STEP_POLL_S)
    assert (result.progress, result.status) == (Progress.DONE, "UNWOUND"), result
    assert t.engine.commitments.state_of(cid) is State.VERIFIED
    settlement, legs, subs = t.coordinator.settlement(sid)
    assert settlement.decision == "ABORT"
    assert [leg.state for leg in legs] == ["UNWOUND", "NOT_LOCKED"]
    # the USDC really was locked on the testnet, and came back
    assert any((s.leg_no, s.purpose, s.status) == (0, "lock", "APPLIED") for s in subs), subs
    expected = {
        "BND:seller": Decimal(0),
        "BND:buyer": Decimal(0),
        "USDC:buyer": USDC_UNITS,
        "USDC:seller": Decimal(0),
        "USDC:agent": Decimal(0),
        "USDC:fees": Decimal(0),
    }
    assert _holdings_become(t.world, expected) == expected
    _verify_audit(t)
