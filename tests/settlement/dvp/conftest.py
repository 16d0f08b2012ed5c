"""DVP fixtures: both local networks, a migrated database, the coordinator."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

import pytest
from cryptography.fernet import Fernet
from stellar_sdk import TransactionBuilder
from xrpl.core.binarycodec import encode
from xrpl.models.transactions import EscrowFinish
from xrpl.transaction import sign

from adapters.resilience import ResiliencePolicy
from ledger.audit import verify_all
from ledger.settlements import LegRow
from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.demo.world import LocalWorld
from settlement.domain.states import State
from settlement.dvp import DvpCoordinator, DvpPolicy, Progress, StepResult
from settlement.dvp.ledger_refs import ledger_ref_checker
from settlement.sealing import Sealer
from settlement.settings import load_settings
from tests.support import ALLOCATOR, OFFICER, seed_compliance

FAST = ResiliencePolicy(fail_max=3, reset_timeout_s=0.5, attempts=2, backoff_initial_s=0.01)


@dataclass
class Dvp:
    world: LocalWorld
    engine: bootstrap.Services
    coordinator: DvpCoordinator

    def verified_commitment(self, usdc: str = "1000") -> UUID:
        service = self.engine.commitments
        created = service.create(
            ALLOCATOR,
            deal_ref="BOND-DVP",
            amount=usdc,
            currency="USDC",
            counterparty="party-southbank",
        )
        service.submit(ALLOCATOR, created.commitment_id)
        service.approve(OFFICER, created.commitment_id)
        assert service.state_of(created.commitment_id) is State.VERIFIED
        return created.commitment_id

    def drive(
        self,
        settlement_id: UUID,
        *,
        timeout_s: float = 30.0,
        until: Callable[[], bool] | None = None,
    ) -> StepResult:
        """Step until the settlement closes, needs a person, or ``until()`` holds; ledgers
        close meanwhile."""
        return self.coordinator.run_to_end(settlement_id, timeout_s=timeout_s, until=until)

    def escrowed(self, commitment_id: UUID) -> Callable[[], bool]:
        return lambda: self.engine.commitments.state_of(commitment_id) is State.ESCROWED

    def to_rest(self, settlement_id: UUID, timeout_s: float = 30.0) -> StepResult:
        """Step until the settlement closes, also while it is flagged for a person (the
        worker keeps stepping a flagged settlement; ``drive`` stops at the flag)."""
        deadline = time.monotonic() + timeout_s
        result = self.coordinator.step(settlement_id)
        while result.progress is not Progress.DONE and time.monotonic() < deadline:
            time.sleep(0.02)
            result = self.coordinator.step(settlement_id)
        return result

    def past_cancel_after(self, settlement_id: UUID) -> None:
        """Move every clock well past the settlement's T_cancel (a ledger's close time is
        rounded to its close-time resolution)."""
        settlement = self.coordinator.settlement(settlement_id)[0]
        remaining = (settlement.cancel_after - self.world.clock.now()).total_seconds()
        self.world.advance_time(int(remaining) + 60)

    def finish_as_receiver(self, leg: LegRow, fulfillment_hex: str) -> str:
        """The buyer's own EscrowFinish with the public fulfillment (the destination needs
        no deposit preauthorisation), paying the fulfillment's fee surcharge; its hash
        once validated."""
        world = self.world
        buyer = world.buyer_xrpl
        info = world.xrpl.rpc("account_info", account=buyer.classic_address, ledger_index="current")
        current = int(world.xrpl.rpc("ledger_current")["ledger_current_index"])
        tx = EscrowFinish(
            account=buyer.classic_address,
            owner=str(leg.lock_owner),
            offer_sequence=int(leg.lock_sequence or 0),
            condition=self.coordinator.settlement(leg.settlement_id)[0].condition_hex.upper(),
            fulfillment=fulfillment_hex.upper(),
            fee="1000",
            sequence=int(info["account_data"]["Sequence"]),
            last_ledger_sequence=current + 20,
        )
        signed = sign(tx, buyer)
        answer = world.xrpl.rpc("submit", tx_blob=encode(signed.to_xrpl()))
        assert answer["engine_result"] == "tesSUCCESS", answer
        tx_hash = signed.get_hash()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = world.xrpl.rpc("tx", transaction=tx_hash)
            if found.get("validated"):
                assert found["meta"]["TransactionResult"] == "tesSUCCESS", found
                return tx_hash
            time.sleep(0.05)
        raise AssertionError(f"{tx_hash} not validated")

    def reclaim(self, balance_id: str) -> str:
        """The buyer claims its own balance back (past T_cancel), with no time bounds (the
        local networks' time runs ahead of the wall clock); the transaction's hash."""
        buyer, stellar = self.world.buyer_stellar, self.world.stellar
        envelope = (
            TransactionBuilder(stellar.server.load_account(buyer.public_key), stellar.passphrase)
            .add_time_bounds(0, 0)
            .append_claim_claimable_balance_op(balance_id)
            .build()
        )
        envelope.sign(buyer)
        answer = stellar.server.submit_transaction(envelope)
        assert answer["successful"], answer
        return str(answer["hash"])

    def verify_audit(self) -> None:
        with self.engine.db.unit_of_work() as uow:
            report = verify_all(
                uow.connection, check_ledger_ref=ledger_ref_checker(self.world.chains)
            )
        assert report.ok, report.breaks
        assert report.ledger_refs_checked > 0


@pytest.fixture
def dvp(fresh_urls: DatabaseUrls, request: pytest.FixtureRequest) -> Iterator[Dvp]:
    """Both local networks and the coordinator; parametrize it indirectly with a dict of
    ``bootstrap.local_world`` options (e.g. ``{"xrpl_tickets": 4}``) to change the world."""
    options = getattr(request, "param", {})
    world = bootstrap.local_world(policy=FAST, usdc=Decimal(5_000), **options)
    engine = bootstrap.build(
        load_settings(database_url=fresh_urls.owner), clock=world.clock, urls=fresh_urls
    )
    seed_compliance(engine.commitments)
    world.register_accounts(
        engine.compliance, OFFICER, buyer="party-northwind", seller="party-southbank"
    )
    coordinator = bootstrap.build_coordinator(
        engine,
        world.chains,
        clock=world.clock,
        policy=DvpPolicy(safety_margin_s=120, min_window_s=5, retry_after_s=0.02),
        sealed_with=Sealer(Fernet.generate_key()),
    )
    try:
        yield Dvp(world, engine, coordinator)
    finally:
        engine.close()
        world.close()
