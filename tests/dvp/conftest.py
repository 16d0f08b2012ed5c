"""DVP fixtures: both local networks, a migrated database, the coordinator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

import pytest
from cryptography.fernet import Fernet
from support import ALLOCATOR, OFFICER, seed_compliance

from adapters.resilience import ResiliencePolicy
from ledger.audit import verify_all
from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.dvp import DvpCoordinator, DvpPolicy, StepResult
from settlement.ledger_refs import ledger_ref_checker
from settlement.localworld import LocalWorld, start_local_world
from settlement.sealing import Sealer
from settlement.settings import load_settings
from settlement.states import State

FAST = ResiliencePolicy(fail_max=3, reset_timeout_s=0.5, attempts=2, backoff_initial_s=0.01)


@dataclass
class Dvp:
    world: LocalWorld
    engine: bootstrap.Engine
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
    ``start_local_world`` options (e.g. ``{"xrpl_tickets": 4}``) to change the world."""
    options = getattr(request, "param", {})
    world = start_local_world(policy=FAST, usdc=Decimal(5_000), **options)
    engine = bootstrap.build(
        load_settings(database_url=fresh_urls.owner), clock=world.clock, urls=fresh_urls
    )
    seed_compliance(engine.commitments)
    world.register_accounts(
        engine.compliance, OFFICER, buyer="party-northwind", seller="party-southbank"
    )
    coordinator = DvpCoordinator(
        engine.db,
        service=engine.commitments,
        chains=world.chains,
        sealer=Sealer(Fernet.generate_key()),
        clock=world.clock,
        policy=DvpPolicy(safety_margin_s=120, min_window_s=5, retry_after_s=0.02),
        accounts=engine.compliance,
    )
    try:
        yield Dvp(world, engine, coordinator)
    finally:
        engine.close()
        world.close()
