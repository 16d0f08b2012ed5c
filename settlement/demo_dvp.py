"""The second half of `settle demo`: delivery versus payment on the local networks.

A local XRP Ledger and a local Stellar network start in this process (real HTTP, real
signatures; the same adapters would talk to the testnets). A tokenised bond (BND) is
delivered on the XRP Ledger against USDC paid on Stellar, all legs or none:

1. a settlement that settles: both legs locked (Stellar first, then the XRPL escrow),
   COMMIT decided and recorded, both legs committed;
2. a settlement that aborts: the buyer's USDC leaves its account after the instruction,
   Stellar rejects the principal lock, and the fee leg already locked is paid back.

Every ledger transaction is printed with its hash, ledger index and ledger hash, and
the audit chains are verified with each ledger reference checked on its ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

from stellar_sdk import Asset as SdkAsset

from ledger.audit import verify_all
from settlement.bootstrap import Engine
from settlement.domain import SYSTEM, Actor, Role
from settlement.dvp import DvpCoordinator, DvpPolicy, LegInstruction
from settlement.ledger_refs import ledger_ref_checker
from settlement.localworld import LocalWorld, start_local_world
from settlement.sealing import Sealer

Printer = Callable[[str], None]
ALLOCATOR = Actor("key-allocator-northwind", Role.ALLOCATOR, party="northwind-capital")
OFFICER = Actor("key-officer-ada", Role.COMPLIANCE_OFFICER)
BOND = Decimal(10)
PRICE = Decimal(1000)
FEE = Decimal("2.5")


def run(engine: Engine, sealer: Sealer, echo: Printer = print) -> bool:
    """Run both settlements; return True when they ended as described and every audit
    chain, ledger references included, verified."""
    echo("\nDelivery versus payment on the local networks")
    world = start_local_world(usdc=Decimal(5_000))
    try:
        echo(f"  local XRP Ledger at {world.xrpl.url}")
        echo(f"  local Stellar (Horizon API) at {world.stellar.url}")
        echo(
            f"  {world.bond.code} issued on the XRP Ledger, held by the seller; "
            f"{world.usdc.code} issued on Stellar, held by the buyer"
        )
        world.register_accounts(
            engine.compliance, OFFICER, buyer="northwind-capital", seller="meridian-bond-trust"
        )
        echo("  ledger accounts registered to the parties' KYC records by " + OFFICER.id)
        coordinator = DvpCoordinator(
            engine.db,
            service=engine.commitments,
            chains=world.chains,
            sealer=sealer,
            clock=world.clock,
            policy=DvpPolicy(safety_margin_s=120, retry_after_s=0.02),
            accounts=engine.compliance,
        )
        ours: list[UUID] = []
        settled = _settlement(engine, world, coordinator, echo, abort=False, ours=ours)
        aborted = _settlement(engine, world, coordinator, echo, abort=True, ours=ours)
        return settled and aborted and _verify(engine, world, ours, echo)
    finally:
        world.close()


def _settlement(
    engine: Engine,
    world: LocalWorld,
    coordinator: DvpCoordinator,
    echo: Printer,
    *,
    abort: bool,
    ours: list[UUID],
) -> bool:
    service = engine.commitments
    title = (
        "Commitment 4: the buyer's USDC leaves after the instruction; Stellar rejects the lock"
        if abort
        else f"Commitment 3: {BOND} {world.bond.code} on the XRP "
        f"Ledger against {PRICE} {world.usdc.code} on Stellar, plus a {FEE} fee"
    )
    echo(f"\n{title}")
    created = service.create(
        ALLOCATOR,
        deal_ref="BOND-2031-DVP" + ("-B" if abort else ""),
        amount=PRICE,
        currency=world.usdc.code,
        counterparty="meridian-bond-trust",
    )
    cid = created.commitment_id
    ours.append(cid)
    service.submit(ALLOCATOR, cid, expected_version=1)
    service.approve(OFFICER, cid, expected_version=2)
    echo(f"  {cid}: created, screened, approved -> {service.state_of(cid)}")
    legs: list[LegInstruction] = [world.fee_leg(FEE), *world.legs(BOND, PRICE)]
    settlement_id = coordinator.instruct(
        SYSTEM, cid, legs, commit_deadline=world.clock.now() + timedelta(seconds=120)
    )
    for n, leg in enumerate(legs):
        echo(
            f"  leg {n} {leg.kind:<9} {leg.chain:<7} {leg.amount} {leg.asset.code}"
            f"  {leg.sender[:10]}... -> {leg.receiver[:10]}..."
        )
    before = world.holdings()
    if abort:
        _spend_buyers_usdc(world)
        before = world.holdings()
    result = coordinator.run_to_end(settlement_id)
    settlement, _, submissions = coordinator.settlement(settlement_id)
    for sub in submissions:
        where = f"ledger {sub.ledger_index} {sub.ledger_hash[:16]}..." if sub.ledger_hash else ""
        echo(
            f"    leg {sub.leg_no} {sub.purpose:<6} {sub.chain:<7} {sub.status:<8} "
            f"{(sub.result_code or ''):<30} tx {sub.tx_hash[:16]}... {where}"
        )
    echo(f"  decision {settlement.decision}: {settlement.decision_reason}")
    moved = {k: v - before[k] for k, v in world.holdings().items() if v != before[k]}
    state = service.state_of(cid)
    echo(f"  settlement {result.status}; commitment {state}")
    echo(
        "  balances moved: "
        + (", ".join(f"{k} {v:+}" for k, v in sorted(moved.items())) or "none (every lock undone)")
    )
    if abort:
        return result.status == "UNWOUND" and state == "VERIFIED" and not moved
    return result.status == "SETTLED" and state == "SETTLED"


def _spend_buyers_usdc(world: LocalWorld) -> None:
    """The buyer pays most of its USDC elsewhere after the instruction was checked."""
    buyer, usdc = world.buyer_stellar, world.usdc
    spend = world.stellar.balance(buyer.public_key, usdc) - Decimal(100)
    world.stellar.send(
        buyer,
        lambda b: b.append_payment_op(usdc.issuer, SdkAsset(usdc.code, usdc.issuer), f"{spend:f}"),
    )


def _verify(engine: Engine, world: LocalWorld, ours: list[UUID], echo: Printer) -> bool:
    """Recompute every chain; check ledger references for this run's commitments only:
    the networks of earlier demo runs lived in their processes and are gone."""
    with engine.db.unit_of_work() as uow:
        every = verify_all(uow.connection)
        refs = verify_all(
            uow.connection, commitment_ids=ours, check_ledger_ref=ledger_ref_checker(world.chains)
        )
    ok = every.ok and refs.ok
    echo(
        f"\nAudit log {'verified' if every.ok else 'BROKEN'}: {every.chains} chains, "
        f"{every.entries} entries recomputed"
    )
    echo(
        f"Ledger references of this run {'verified' if refs.ok else 'BROKEN'}: "
        f"{refs.ledger_refs_checked} found in a validated ledger with the recorded ledger hash"
    )
    for problem in [*every.breaks, *refs.breaks]:
        echo(f"  {problem}")
    return ok
