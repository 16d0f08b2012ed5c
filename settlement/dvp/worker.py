"""The settlement worker: claims open settlements and drives them.

Several workers may run against one database. Each claims work with ``SELECT ... FOR
UPDATE SKIP LOCKED`` and takes a lease; a lease that runs out (its worker died) lets
another worker resume the settlement from what the database recorded. A settlement
that must wait (a ledger closing, CancelAfter not yet passed) is handed back with its
lease set to when it is due again, so the lease doubles as the timer.

A worker may step settlements side by side, ``concurrency`` at a time: a step that
waits on a ledger (a Horizon submit answers only once the transaction is in a ledger)
does not hold up the others. ``run`` keeps ``concurrency`` lanes, each claiming its
next due settlement as soon as its last step ends, so one slow step never holds a whole
batch back; ``run_once`` steps one claimed batch and returns. One settlement is still
never stepped twice at once, by this worker or another: each step runs under that
settlement's advisory lock.
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from ledger import settlements as settlement_records
from ledger.database import Database
from settlement.clock import Clock
from settlement.dvp import DvpCoordinator, Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerPolicy:
    #: how long a claimed settlement belongs to this worker before others may take it;
    #: longer than the slowest ledger call (a Horizon submit may wait 35 s)
    lease_s: float = 60.0
    #: settlements claimed per poll
    batch: int = 8
    #: idle wait between polls when nothing is due
    idle_s: float = 0.5
    #: how often the worker also cancels expired commitments
    expiry_sweep_s: float = 30.0
    #: how often the worker runs its housekeeping (publishing its breakers' states and
    #: applying an admin's reset, ``settlement.breakers``; topping up XRPL tickets)
    housekeeping_s: float = 5.0
    #: claimed settlements stepped at the same time (threads; each holds two database
    #: connections while it steps, the advisory lock's and the step's own). Raise it
    #: where concurrent settlements do not sign from one account's sequence: XRPL
    #: senders and the agent holding Tickets (``settle xrpl tickets``), Stellar with
    #: channel accounts. Without them two transactions of one account signed at once
    #: collide and one waits out its expiry before it is signed again
    concurrency: int = 1


class Worker:
    def __init__(
        self,
        db: Database,
        coordinator: DvpCoordinator,
        clock: Clock,
        *,
        name: str | None = None,
        policy: WorkerPolicy | None = None,
        expire: Callable[[], object] | None = None,
        housekeeping: Callable[[], object] | None = None,
    ) -> None:
        self._db = db
        self._coordinator = coordinator
        self._clock = clock
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.policy = policy or WorkerPolicy()
        self._stop = threading.Event()
        self._expire = expire
        self._next_sweep = 0.0
        self._housekeeping = housekeeping
        self._next_housekeeping = 0.0
        #: when (monotonic) the settlements this worker handed back fall due again: the
        #: claim loop wakes for the soonest instead of waiting out ``idle_s``
        self._dues: list[float] = []
        self._dues_lock = threading.Lock()
        #: set when a lane frees, or on ``stop()``: the claim loop's wake-up
        self._wake = threading.Event()

    def run_once(self) -> int:
        """Claim what is due, step each claimed settlement once; return how many. Every
        ``expiry_sweep_s`` it also runs the expiry sweep (``CommitmentService.expire_due``)."""
        self._chores()
        claimed = self._claim_due(self.policy.batch)
        workers = min(self.policy.concurrency, len(claimed))
        if workers <= 1:
            for settlement_id in claimed:
                self._drive(settlement_id)
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix=f"{self.name}-step") as pool:
                # _drive logs and swallows a failed step; the results carry nothing else
                list(pool.map(self._drive, claimed))
        return len(claimed)

    def _chores(self) -> None:
        """The expiry sweep and the housekeeping, each when it is due."""
        if self._expire is not None and time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.policy.expiry_sweep_s
            try:
                self._expire()
            except Exception:
                log.exception("expiry sweep failed; it runs again later")
        if self._housekeeping is not None and time.monotonic() >= self._next_housekeeping:
            self._next_housekeeping = time.monotonic() + self.policy.housekeeping_s
            try:
                self._housekeeping()
            except Exception:
                log.exception("housekeeping failed; it runs again later")

    def _claim(self, limit: int) -> list[UUID]:
        now = self._clock.now()
        return self._db.statements(
            lambda uow: settlement_records.claim_due(
                uow, worker=self.name, now=now, lease_s=self.policy.lease_s, limit=limit
            )
        )

    def _drive(self, settlement_id: UUID) -> None:
        # A lease schedules work; the advisory lock makes a step exclusive even when a
        # lease ran out under a slow ledger call (another worker then skips it here).
        with self._db.exclusive(f"settlement-step:{settlement_id}") as mine:
            if not mine:
                log.info("settlement %s: another worker is inside a step; skipped", settlement_id)
                soon = self._clock.now() + timedelta(seconds=1)
                self._db.statements(
                    lambda uow: settlement_records.release_lease(
                        uow, settlement_id, self.name, soon
                    )
                )
                return
            try:
                result = self._coordinator.step(settlement_id)
            except Exception:
                # the lease runs out and the settlement is retried; nothing is lost
                log.exception("settlement %s: step failed; retrying after the lease", settlement_id)
                return
        if result.progress is Progress.DONE:
            return
        retry_at = self._clock.now() + timedelta(seconds=result.retry_after_s)
        self._db.statements(
            lambda uow: settlement_records.release_lease(uow, settlement_id, self.name, retry_at)
        )
        with self._dues_lock:
            heapq.heappush(self._dues, time.monotonic() + result.retry_after_s)

    def _idle_wait_s(self) -> float:
        """How long to wait before claiming again when nothing was due: ``idle_s``, or
        less when a settlement this worker handed back falls due sooner (a step waiting
        on a ledger is due just after its next close, and waiting out the idle tick
        would add up to ``idle_s`` at every stage)."""
        with self._dues_lock:
            soonest = self._dues[0] - time.monotonic() if self._dues else self.policy.idle_s
        return max(0.0, min(self.policy.idle_s, soonest))

    def _claim_due(self, limit: int) -> list[UUID]:
        """``_claim``, first forgetting the dues it covers: those already past (the
        claim takes them, or another worker has)."""
        now = time.monotonic()
        with self._dues_lock:
            while self._dues and self._dues[0] <= now:
                heapq.heappop(self._dues)
        return self._claim(limit)

    def run(self) -> None:
        """Poll until ``stop()``: batch by batch with ``concurrency`` 1, else in lanes."""
        log.info("worker %s started", self.name)
        if self.policy.concurrency <= 1:
            while not self._stop.is_set():
                if self.run_once() == 0:
                    self._stop.wait(self._idle_wait_s())
        else:
            self._run_lanes()
        log.info("worker %s stopped", self.name)

    def _run_lanes(self) -> None:
        """``concurrency`` lanes fed by this thread: it claims as many due settlements
        as lanes are free, and claims again as soon as one frees (or after ``idle_s``
        when none was due), so one slow step never holds the others back and idle lanes
        do not each poll the database. A failure to claim (the database away) is logged
        and retried after the idle wait."""
        free = threading.Semaphore(self.policy.concurrency)
        freed = self._wake

        def lane(settlement_id: UUID) -> None:
            try:
                self._drive(settlement_id)
            except Exception:
                # handing the lease back failed; it runs out and the settlement is retried
                log.exception("worker %s: settlement %s not handed back", self.name, settlement_id)
            finally:
                free.release()
                freed.set()

        with ThreadPoolExecutor(
            self.policy.concurrency, thread_name_prefix=f"{self.name}-lane"
        ) as lanes:
            while not self._stop.is_set():
                self._chores()
                freed.clear()  # before counting free lanes: a lane freed later wakes us
                slots = 0
                while free.acquire(blocking=False):
                    slots += 1
                claimed: list[UUID] = []
                if slots:
                    try:
                        claimed = self._claim_due(slots)
                    except Exception:
                        log.exception("worker %s: claiming failed; trying again", self.name)
                for _ in range(slots - len(claimed)):
                    free.release()
                for settlement_id in claimed:
                    lanes.submit(lane, settlement_id)
                # every lane busy: wait for one; nothing more due: wait for a lane, the
                # soonest settlement this worker handed back, or the idle tick
                freed.wait(self._idle_wait_s() if slots else self.policy.idle_s)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wait(self, seconds: float) -> None:
        """Sleep, waking early on ``stop()``."""
        self._stop.wait(seconds)

    def open_settlements(self) -> int:
        return self._db.statements(settlement_records.count_open)
