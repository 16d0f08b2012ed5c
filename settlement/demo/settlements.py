"""The settlement half of `settle demo`: delivery versus payment through the API.

Both local networks start in this process (real HTTP, real signatures; the same
adapters would talk to the testnets): a tokenised bond (BND) issued on the XRP Ledger
and held by the seller, USDC issued on Stellar and held by the buyer. The API server
runs with both ledgers, and a settlement worker drives what the API instructs. Then,
every act through the signed API:

1. an officer registers both parties' ledger accounts;
2. the allocator creates and submits a commitment of 1,200,000 USDC for 10 BND; it is
   screened, and two officers approve it (above the four-eyes threshold);
3. the allocator funds it: USDC on Stellar and a USDC fee against the bond on the XRP
   Ledger; the worker locks every leg, decides COMMIT and commits them; the demo polls
   the API until the commitment is SETTLED and prints every ledger transaction with
   its hash, ledger index and ledger hash, and the balances that moved on the ledgers;
4. a settlement that aborts: with the worker paused, the buyer's USDC leaves its
   account after the instruction; Stellar refuses the lock and the fee already locked
   goes back: nothing moves, the commitment is VERIFIED again and the allocator
   withdraws it;
5. the auditor has the server recompute every audit chain, and checks this run's
   ledger references on the ledgers (the networks of earlier runs lived in their
   processes and are gone, so the server's ``?ledgers=true`` check would fail on them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from stellar_sdk import Asset as SdkAsset

from settlement import bootstrap
from settlement.bootstrap import Ledgers, Services
from settlement.cli.remote import col, table
from settlement.demo.story import (
    COUNTERPARTY,
    ApiStack,
    DemoFailed,
    Printer,
    api_stack,
    echo_audit,
    echo_transition,
    ensure_parties,
    verify_chains,
)
from settlement.demo.world import LocalWorld
from settlement.dvp import DvpCoordinator, LegInstruction
from settlement.dvp.ledger_refs import ledger_ref_checker
from settlement.dvp.worker import Worker, WorkerPolicy
from settlement.sealing import Sealer

BOND = Decimal(10)
PRICE = Decimal(1_200_000)
FEE = Decimal("2.5")
ABORTED_PRICE = Decimal(1_000)
#: how long the demo waits for the worker to finish a settlement
SETTLE_WAIT_S = 45.0
POLL_S = 0.1
COMMIT_WINDOW_S = 120


@dataclass
class DvpOutcome:
    """What the story ended with, as the API and the ledgers reported it."""

    commitment: dict[str, Any] = field(default_factory=dict)
    settlement: dict[str, Any] = field(default_factory=dict)
    moved: dict[str, Decimal] = field(default_factory=dict)
    ledger_refs: list[dict[str, Any]] = field(default_factory=list)
    ledger_ref_problems: list[str] = field(default_factory=list)
    aborted_settlement: dict[str, Any] = field(default_factory=dict)
    aborted_moved: dict[str, Decimal] = field(default_factory=dict)
    aborted_final_state: str = ""
    chains_ok: bool = False

    @property
    def ok(self) -> bool:
        return (
            self.commitment.get("state") == "SETTLED"
            and self.settlement.get("status") == "SETTLED"
            and bool(self.moved)
            and bool(self.ledger_refs)
            and not self.ledger_ref_problems
            and self.aborted_settlement.get("status") == "UNWOUND"
            and not self.aborted_moved
            and self.aborted_final_state == "CANCELLED"
            and self.chains_ok
        )


class _WorkerThread:
    """The settlement worker in a thread; ``paused()`` stops it for a while."""

    def __init__(self, engine: Services, coordinator: DvpCoordinator, world: LocalWorld) -> None:
        self._engine = engine
        self._coordinator = coordinator
        self._world = world
        self._worker: Worker | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._worker = bootstrap.build_stepping_worker(
            self._engine,
            self._coordinator,
            clock=self._world.clock,
            name="demo-worker",
            policy=WorkerPolicy(lease_s=30, idle_s=0.05),
        )
        self._thread = threading.Thread(target=self._worker.run, name="demo-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._worker is not None and self._thread is not None:
            self._worker.stop()
            self._thread.join(timeout=SETTLE_WAIT_S)
        self._worker = self._thread = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()


def _coordinator(engine: Services, world: LocalWorld, sealer: Sealer) -> DvpCoordinator:
    return bootstrap.build_coordinator(
        engine,
        world.chains,
        clock=world.clock,
        sealed_with=sealer,
        # short waits between ledger closes: the local networks close every few ms
        policy=replace(bootstrap.dvp_policy(engine.settings), retry_after_s=0.05),
    )


@contextmanager
def dvp_stack(
    engine: Services, sealer: Sealer, echo: Printer = print
) -> Iterator[tuple[ApiStack, LocalWorld, _WorkerThread]]:
    """Both local networks, the API server with both ledgers, and a worker; all
    stopped on the way out."""
    world = bootstrap.local_world()
    try:
        echo(f"  local XRP Ledger at {world.xrpl.url}")
        echo(f"  local Stellar (Horizon API) at {world.stellar.url}")
        ledgers = Ledgers(
            chains=world.chains,
            guards=world.guards,
            coordinator=_coordinator(engine, world, sealer),
        )
        worker = _WorkerThread(engine, _coordinator(engine, world, sealer), world)
        with api_stack(engine, echo, ledgers=ledgers) as stack:
            worker.start()
            echo("  settlement worker running")
            try:
                yield stack, world, worker
            finally:
                worker.stop()
    finally:
        world.close()


def leg_json(leg: LegInstruction) -> dict[str, Any]:
    """A leg as the API takes it (amounts as decimal strings)."""
    return {
        "kind": leg.kind,
        "chain": leg.chain.value,
        "asset": {"code": leg.asset.code, "issuer": leg.asset.issuer},
        "amount": f"{leg.amount:f}",
        "sender": leg.sender,
        "receiver": leg.receiver,
    }


def _register_accounts(stack: ApiStack, world: LocalWorld, echo: Printer) -> None:
    officer = stack.client("officer-ada")
    owned = [
        ("northwind-capital", "xrpl", world.buyer_xrpl.classic_address),
        ("northwind-capital", "stellar", world.buyer_stellar.public_key),
        (COUNTERPARTY, "xrpl", world.seller_xrpl.classic_address),
        (COUNTERPARTY, "stellar", world.seller_stellar.public_key),
        (COUNTERPARTY, "stellar", world.fee_stellar.public_key),
    ]
    for party, chain, address in owned:
        officer.register_account(party, chain=chain, address=address)
        echo(f"  {chain:<7} {address} registered to {party}")


def _wait(
    stack: ApiStack, commitment_id: str, *, settlement_status: str, state: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Poll the API until the settlement and the commitment reach these."""
    allocator = stack.client("allocator")
    deadline = time.monotonic() + SETTLE_WAIT_S
    while True:
        settlement = allocator.get_settlement(commitment_id)
        commitment = allocator.get_commitment(commitment_id)
        if settlement["status"] == settlement_status and commitment["state"] == state:
            return commitment, settlement
        if time.monotonic() > deadline:
            raise DemoFailed(
                f"commitment {commitment_id} is {commitment['state']} and its settlement "
                f"{settlement['status']} after {SETTLE_WAIT_S:.0f} s; expected {state} "
                f"and {settlement_status}"
            )
        time.sleep(POLL_S)


def _echo_settlement(echo: Printer, settlement: dict[str, Any]) -> None:
    legs = [
        ("LEG", col("leg_no")),
        ("KIND", col("kind")),
        ("CHAIN", col("chain")),
        ("AMOUNT", col("amount")),
        ("ASSET", lambda r: r["asset"]["code"]),
        ("STATUS", col("status")),
    ]
    for line in table(settlement["legs"], legs):
        echo(f"    {line}")
    submissions = [
        ("LEG", col("leg_no")),
        ("STEP", col("purpose")),
        ("CHAIN", col("chain")),
        ("STATUS", col("status")),
        ("OUTCOME", col("outcome")),
        ("LEDGER", col("ledger_index")),
        ("TX HASH", col("tx_hash")),  # whole, last: a reader copies it into a ledger lookup
    ]
    echo("")
    for line in table(settlement["submissions"], submissions):
        echo(f"    {line}")
    ledgers = sorted(
        {
            (r["chain"], r["ledger_index"], r["ledger_hash"])
            for r in settlement["submissions"]
            if r["ledger_hash"]
        }
    )
    for chain, index, ledger_hash in ledgers:
        echo(f"    {chain} ledger {index}: {ledger_hash}")
    echo(f"  decision {settlement['decision']}: {settlement['decision_reason']}")


def _moved(before: dict[str, Decimal], after: dict[str, Decimal]) -> dict[str, Decimal]:
    return {k: v - before[k] for k, v in after.items() if v != before[k]}


def _echo_moved(echo: Printer, moved: dict[str, Decimal]) -> None:
    echo(
        "  balances moved on the ledgers: "
        + (
            ", ".join(f"{k} {v.normalize():+f}" for k, v in sorted(moved.items()))
            or "none (every lock undone)"
        )
    )


def _approved(stack: ApiStack, deal_ref: str, price: Decimal, echo: Printer) -> str:
    """A commitment created and submitted by the allocator, approved by as many
    officers as its screening requires; its id."""
    allocator = stack.client("allocator")
    created = allocator.create_commitment(
        deal_ref=deal_ref, amount=f"{price:f}", currency="USDC", counterparty=COUNTERPARTY
    )
    echo_transition(echo, created, "allocator")
    cid = str(created["commitment_id"])
    submitted = allocator.submit(cid, expected_version=created["version"])
    echo_transition(echo, submitted, "allocator")
    screening = stack.client("officer-ada").review_detail(cid)["screenings"][-1]["screening"]
    required = int(screening["approvals_required"])
    echo(
        f"      screening: {screening['outcome']}, {len(screening['findings'])} finding(s), "
        f"{required} approval(s) required"
    )
    for officer in ("officer-ada", "officer-grace")[:required]:
        approved = stack.client(officer).approve(cid, expected_version=submitted["version"])
        if approved["to_state"] == approved["from_state"]:
            echo(f"      approval by {officer} recorded (audit #{approved['audit_seq']})")
        else:
            echo_transition(echo, approved, officer)
    return cid


def _settle(stack: ApiStack, world: LocalWorld, echo: Printer, outcome: DvpOutcome) -> str:
    echo(
        f"\nCommitment: {BOND} {world.bond.code} on the XRP Ledger against {PRICE} "
        f"{world.usdc.code} on Stellar, plus a {FEE} {world.usdc.code} fee"
    )
    cid = _approved(stack, "BOND-2031-DVP", PRICE, echo)
    before = world.holdings()
    legs = [world.fee_leg(FEE), *world.legs(BOND, PRICE)]
    deadline = world.clock.now() + timedelta(seconds=COMMIT_WINDOW_S)
    funded = stack.client("allocator").start_settlement(
        cid, legs=[leg_json(leg) for leg in legs], commit_deadline=deadline
    )
    echo(f"  funded: settlement {funded['id']} {funded['status']}; the worker settles it")
    outcome.commitment, outcome.settlement = _wait(
        stack, cid, settlement_status="SETTLED", state="SETTLED"
    )
    echo(f"  commitment {cid}: {outcome.commitment['state']} (v{outcome.commitment['version']})")
    _echo_settlement(echo, outcome.settlement)
    outcome.moved = _moved(before, world.holdings())
    _echo_moved(echo, outcome.moved)
    return cid


def _abort(
    stack: ApiStack, world: LocalWorld, worker: _WorkerThread, echo: Printer
) -> tuple[str, dict[str, Any], dict[str, Decimal], str]:
    echo("\nCommitment: the buyer's USDC leaves after the instruction; Stellar refuses the lock")
    cid = _approved(stack, "BOND-2031-DVP-B", ABORTED_PRICE, echo)
    allocator = stack.client("allocator")
    legs = [world.fee_leg(FEE), *world.legs(BOND, ABORTED_PRICE)]
    deadline = world.clock.now() + timedelta(seconds=COMMIT_WINDOW_S)
    with worker.paused():
        # paused, so the worker cannot lock before the buyer spends
        funded = allocator.start_settlement(
            cid, legs=[leg_json(leg) for leg in legs], commit_deadline=deadline
        )
        echo(f"  funded: settlement {funded['id']}; the buyer now pays its USDC elsewhere")
        _spend_buyers_usdc(world)
        before = world.holdings()
    commitment, settlement = _wait(stack, cid, settlement_status="UNWOUND", state="VERIFIED")
    echo(f"  commitment {cid}: {commitment['state']} again (v{commitment['version']})")
    _echo_settlement(echo, settlement)
    moved = _moved(before, world.holdings())
    _echo_moved(echo, moved)
    withdrawn = allocator.withdraw(cid, expected_version=commitment["version"])
    echo_transition(echo, withdrawn, "allocator", "  (nothing left open)")
    return cid, settlement, moved, str(withdrawn["to_state"])


def _spend_buyers_usdc(world: LocalWorld) -> None:
    """The buyer pays most of its USDC elsewhere after the instruction was checked."""
    buyer, usdc = world.buyer_stellar, world.usdc
    spend = world.stellar.balance(buyer.public_key, usdc) - Decimal(100)
    world.stellar.send(
        buyer,
        lambda b: b.append_payment_op(usdc.issuer, SdkAsset(usdc.code, usdc.issuer), f"{spend:f}"),
    )


def _check_refs(
    stack: ApiStack, world: LocalWorld, ids: list[str], echo: Printer, outcome: DvpOutcome
) -> None:
    """This run's ledger references, read through the API, checked on the ledgers."""
    check = ledger_ref_checker(world.chains)
    for cid in ids:
        for ref in stack.client("auditor").ledger_references(cid):
            outcome.ledger_refs.append(ref)
            problem = check(ref["chain"], ref["tx_hash"], ref["ledger_index"], ref["ledger_hash"])
            if problem is not None:
                outcome.ledger_ref_problems.append(f"{cid} entry {ref['seq']}: {problem}")
    status = "verified" if not outcome.ledger_ref_problems else "BROKEN"
    echo(
        f"Ledger references of this run {status}: {len(outcome.ledger_refs)} checked, each "
        "a validated transaction with the recorded ledger hash"
    )
    for problem in outcome.ledger_ref_problems:
        echo(f"  {problem}")


def story(stack: ApiStack, world: LocalWorld, worker: _WorkerThread, echo: Printer) -> DvpOutcome:
    """The settlement story on a running ``dvp_stack``; what it ended with."""
    outcome = DvpOutcome()
    ensure_parties(stack, echo)
    echo("\nLedger accounts, registered by an officer through the API")
    _register_accounts(stack, world, echo)
    settled = _settle(stack, world, echo, outcome)
    aborted, outcome.aborted_settlement, outcome.aborted_moved, outcome.aborted_final_state = (
        _abort(stack, world, worker, echo)
    )
    echo(f"\nAudit chain of {settled}, read through the API")
    echo_audit(echo, stack.client("allocator").audit_trail(settled))
    outcome.chains_ok = verify_chains(stack, echo)
    _check_refs(stack, world, [settled, aborted], echo, outcome)
    return outcome


def run(engine: Services, sealer: Sealer, echo: Printer = print) -> bool:
    """Run the settlement story; True when both settlements ended as described and
    every audit chain and this run's ledger references verified."""
    echo("\nDelivery versus payment on the local networks, through the API")
    with dvp_stack(engine, sealer, echo) as (stack, world, worker):
        outcome = story(stack, world, worker, echo)
    echo("\nServer, worker and both networks stopped")
    return outcome.ok
