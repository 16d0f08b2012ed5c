"""Crash recovery and several workers: all progress is in the database.

A ``Crash`` raised inside a chain call stands for the process dying at that instant:
nothing after it runs, and a new coordinator (a restarted worker) must carry on from
what was recorded, without signing any purpose twice.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from cryptography.fernet import Fernet

from adapters.chain import Chain, ChainName, Outcome, Purpose, SignedSubmission
from ledger import settlements as records
from settlement.domain.states import State
from settlement.domain.values import SYSTEM
from settlement.dvp import DvpCoordinator, DvpPolicy, Progress
from settlement.dvp.worker import Worker, WorkerPolicy
from settlement.sealing import Sealer

from .conftest import Dvp


class Crash(BaseException):
    """The process died here (BaseException: no handler in the engine catches it)."""


class CrashingChain:
    """A chain that dies once, at a chosen moment of a chosen purpose."""

    def __init__(self, inner: Chain, *, purpose: Purpose, when: str) -> None:
        self._inner = inner
        self._purpose = purpose
        self._when = when  # "before_send" or "after_send"
        self.crashed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def submit(self, submission: SignedSubmission) -> Outcome:
        if not self.crashed and submission.purpose is self._purpose:
            self.crashed = True
            if self._when == "before_send":
                raise Crash(f"killed before sending {submission.tx_hash}")
            self._inner.submit(submission)
            raise Crash(f"killed after sending {submission.tx_hash}")
        return self._inner.submit(submission)


def _coordinator(dvp: Dvp, chains: dict[ChainName, Any], sealer: Sealer) -> DvpCoordinator:
    return DvpCoordinator(
        dvp.engine.db,
        service=dvp.engine.commitments,
        chains=chains,
        sealer=sealer,
        clock=dvp.world.clock,
        policy=DvpPolicy(safety_margin_s=120, min_window_s=5, retry_after_s=0.02),
    )


def _instruct(dvp: Dvp, coordinator: DvpCoordinator, cid: UUID) -> UUID:
    return coordinator.instruct(
        SYSTEM,
        cid,
        dvp.world.legs(Decimal(10), Decimal(1000)),
        commit_deadline=dvp.world.clock.now() + timedelta(seconds=60),
    )


def _step_until_it_dies(coordinator: DvpCoordinator, settlement_id: UUID) -> None:
    for _ in range(2_000):
        coordinator.step(settlement_id)


@pytest.mark.parametrize("when", ["before_send", "after_send"])
@pytest.mark.parametrize(
    ("chain", "purpose"),
    [
        (ChainName.STELLAR, Purpose.LOCK),
        (ChainName.XRPL, Purpose.LOCK),
        (ChainName.STELLAR, Purpose.COMMIT),
        (ChainName.XRPL, Purpose.COMMIT),
    ],
)
def test_killed_around_a_submission_resumes_without_signing_twice(
    dvp: Dvp, chain: ChainName, purpose: Purpose, when: str
) -> None:
    sealer = Sealer(Fernet.generate_key())
    crashing = CrashingChain(dvp.world.chains[chain], purpose=purpose, when=when)
    first_life = _coordinator(dvp, {**dvp.world.chains, chain: crashing}, sealer)
    cid = dvp.verified_commitment("1000")
    before = dvp.world.holdings()
    sid = _instruct(dvp, first_life, cid)
    with pytest.raises(Crash):
        _step_until_it_dies(first_life, sid)
    assert crashing.crashed

    second_life = _coordinator(dvp, dict(dvp.world.chains), sealer)
    dvp.coordinator = second_life
    result = dvp.drive(sid)
    assert (result.progress, result.status) == (Progress.DONE, "SETTLED"), result
    assert dvp.engine.commitments.state_of(cid) is State.SETTLED
    _, _, subs = second_life.settlement(sid)
    signed = Counter((s.leg_no, s.purpose) for s in subs)
    assert set(signed.values()) == {1}, f"a purpose was signed twice: {signed}"
    assert {s.status for s in subs} == {"APPLIED"}
    moved = {k: v - before[k] for k, v in dvp.world.holdings().items() if v != before[k]}
    assert moved == {
        "BND:seller": Decimal(-10),
        "BND:buyer": Decimal(10),
        "USDC:buyer": Decimal(-1000),
        "USDC:seller": Decimal(1000),
    }
    dvp.verify_audit()


def test_worker_drives_a_settlement_to_the_end(dvp: Dvp) -> None:
    cid = dvp.verified_commitment("1000")
    sid = _instruct(dvp, dvp.coordinator, cid)
    worker = Worker(
        dvp.engine.db, dvp.coordinator, dvp.world.clock, policy=WorkerPolicy(lease_s=5, idle_s=0.01)
    )
    for _ in range(3_000):
        worker.run_once()
        if dvp.engine.commitments.state_of(cid) is State.SETTLED:
            break
    assert dvp.engine.commitments.state_of(cid) is State.SETTLED
    settlement, _, _ = dvp.coordinator.settlement(sid)
    assert settlement.status == "SETTLED"


def test_two_workers_never_claim_the_same_settlement(dvp: Dvp) -> None:
    ids = [_instruct(dvp, dvp.coordinator, dvp.verified_commitment("1000")) for _ in range(6)]
    now = dvp.world.clock.now()
    start = threading.Barrier(2, timeout=10)
    claimed: dict[str, list[UUID]] = {}

    def claim(name: str) -> None:
        def work(uow: Any) -> list[UUID]:
            start.wait()
            return records.claim_due(uow, worker=name, now=now, lease_s=30, limit=4)

        claimed[name] = dvp.engine.db.transaction(work)

    threads = [threading.Thread(target=claim, args=(n,)) for n in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    first, second = claimed["w1"], claimed["w2"]
    assert not set(first) & set(second), "SKIP LOCKED: no settlement claimed twice"
    assert sorted(first + second) == sorted(ids), "between them they took all six"

    # a leased settlement is not due again until its lease runs out
    def again(uow: Any) -> list[UUID]:
        return records.claim_due(uow, worker="w3", now=now, lease_s=30, limit=10)

    assert dvp.engine.db.transaction(again) == []
    later = now + timedelta(seconds=31)

    def after_lease(uow: Any) -> list[UUID]:
        return records.claim_due(uow, worker="w3", now=later, lease_s=30, limit=10)

    assert sorted(dvp.engine.db.transaction(after_lease)) == sorted(ids)
