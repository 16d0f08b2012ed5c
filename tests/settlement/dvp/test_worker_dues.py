"""A settlement a worker hands back is claimed again when it falls due, not on the next
idle tick: a step waiting on a ledger is due just after the next close, and waiting out
``idle_s`` at each of a DVP's stages would add it to the latency every time."""

from __future__ import annotations

import threading
import time
from uuid import UUID

import pytest

from settlement.domain.settlements import SettlementStatus
from settlement.dvp import Progress
from settlement.dvp.coordinator import StepResult
from settlement.dvp.worker import Worker, WorkerPolicy

from .conftest import Dvp
from .test_dvp import _instruct

#: far longer than the whole test may take: a re-claim that waited for it would fail
IDLE_S = 60.0
WAITS = 3


class Waiting:
    """A coordinator whose step waits ``WAITS`` times (due again in 50 ms), then is done."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.done = threading.Event()

    def step(self, settlement_id: UUID) -> StepResult:
        self.steps.append(time.monotonic())
        if len(self.steps) <= WAITS:
            return StepResult(Progress.WAITING, SettlementStatus.LOCKING, retry_after_s=0.05)
        self.done.set()
        return StepResult(Progress.DONE, SettlementStatus.LOCKING)


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_settlement_handed_back_is_claimed_again_when_due(dvp: Dvp, concurrency: int) -> None:
    _instruct(dvp, dvp.verified_commitment())
    coordinator = Waiting()
    worker = Worker(
        dvp.engine.db,
        coordinator,  # type: ignore[arg-type]
        dvp.world.clock,
        policy=WorkerPolicy(idle_s=IDLE_S, concurrency=concurrency),
    )
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        assert coordinator.done.wait(IDLE_S / 2), coordinator.steps
    finally:
        worker.stop()
        runner.join(IDLE_S)
    assert len(coordinator.steps) == WAITS + 1
