"""Crash test: a worker process SIGKILLed at random moments, restarted, over real ledgers.

The local XRPL and Stellar networks run in this test process (``LocalWorld``); the
worker is another process (``crash_worker.py``) that builds its own adapters, keystore,
engine, coordinator and ``Worker`` from a JSON file and reaches the networks over HTTP
and the database over its own connections. The test SIGKILLs it at a moment drawn from
a seeded ``random.Random`` (between 0.05 and 0.5 s into each life, so kills land while
it signs, records, sends, polls and transitions), starts a new one, and repeats, over
settlements that settle, that abort because a lock is refused (the Stellar unwind at
once), and that rest escrowed until their deadline passes (XRPL escrows cancelled after
CancelAfter, the ledgers' and the worker's clocks moved together). Every kill is
counted against the phases the open settlements were in at that moment, and the test
asserts at least 50 kills covering LOCKING, COMMITTING and UNWINDING. Then the last
worker (a freshly started process, not a fork) runs until everything is closed, and
the invariants of DESIGN section 8 are checked: no partial settlement, no purpose
signed twice while one could apply, the database and the ledgers agreeing on every
outcome, the audit chains, and conservation per asset, exactly.

That run signs Stellar transactions on channel accounts, as a deployment does. A second,
shorter one has none, and Stellar closes once a second: the settlements' claims and
payouts all take the agent's one sequence, several in one close, and are refused before
any ledger and signed again while the worker is killed among them (issue 22, finding 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography.fernet import Fernet
from stellar_sdk import Asset as SdkAsset
from stellar_sdk import Keypair

from adapters.chain import Chain, ChainName, LedgerTx, LockKind, Outcome, SignedSubmission
from adapters.errors import AdapterError
from adapters.resilience import ChainGuard
from adapters.stellar import StellarChain
from adapters.xrpl import XrplChain
from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.demo.world import LocalWorld
from settlement.domain.states import State
from settlement.domain.values import SYSTEM
from settlement.dvp import DvpCoordinator, DvpPolicy, LegInstruction, StepResult
from settlement.dvp.tickets import top_up_tickets
from settlement.dvp.worker import Worker, WorkerPolicy
from settlement.sealing import Sealer
from settlement.settings import load_settings
from tests.support import ADMIN, seed_compliance

from .conftest import FAST, Dvp
from .simulation import CLOSED, LedgerView, SimEnv, check_invariants, expected_moves, load

WORKER = Path(__file__).resolve().parent / "crash_worker.py"
SEED = 20261122
MIN_KILLS = 50
#: the worker's lease: a killed worker's settlements are taken over after this long
LEASE_S = 0.3
#: as the worker process's (``crash_worker.build_worker``)
POLICY = DvpPolicy(safety_margin_s=120, commit_send_margin_s=30, min_window_s=5, retry_after_s=0.02)


class Harness:
    def __init__(self, world: LocalWorld, engine: bootstrap.Services, tmp: Path) -> None:
        self.world = world
        self.engine = engine
        self.key = Fernet.generate_key()
        self.coordinator = DvpCoordinator(
            engine.db,
            service=engine.commitments,
            chains=world.chains,
            sealer=Sealer(self.key),
            clock=world.clock,
            policy=POLICY,
        )
        self.offset_s = 0
        self.offset_file = tmp / "clock_offset"
        self.offset_file.write_text("0")
        self.log_file = tmp / "worker.log"
        self.config_file = tmp / "worker.json"
        self.config_file.write_text(json.dumps(self.config()))
        self.zygote: subprocess.Popen[str] | None = None

    def config(self) -> dict[str, object]:
        w = self.world
        assert w.stellar_node is not None
        return {
            "xrpl_url": w.xrpl.url,
            "horizon_url": w.stellar.url,
            "network_passphrase": w.stellar_node.network_passphrase,
            "xrpl_seeds": [w.seller_xrpl.seed, w.agent_xrpl.seed],
            "stellar_secrets": [
                k.secret
                for k in (w.buyer_stellar, *w.extra_buyers, w.agent_stellar, *w.channels_stellar)
            ],
            "xrpl_agent": w.agent_xrpl.classic_address,
            "stellar_agent": w.agent_stellar.public_key,
            "stellar_channels": [k.public_key for k in w.channels_stellar],
            "database_owner_url": self.engine.urls.owner,
            "database_app_url": self.engine.urls.app,
            "sealing_key": self.key.decode(),
            "clock_offset_file": str(self.offset_file),
            "log_file": str(self.log_file),
            "lease_s": LEASE_S,
        }

    def advance_time(self, seconds: int) -> None:
        """Ledgers, this process's engine clock and the worker's, together."""
        self.world.advance_time(seconds)
        self.offset_s += seconds
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(str(self.offset_s))
        tmp.replace(self.offset_file)

    def spawn(self) -> int:
        if self.zygote is None:
            self.zygote = subprocess.Popen(
                [sys.executable, str(WORKER), str(self.config_file), "--zygote"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
        assert self.zygote.stdin is not None and self.zygote.stdout is not None
        self.zygote.stdin.write("spawn\n")
        self.zygote.stdin.flush()
        return int(self.zygote.stdout.readline())

    def close(self) -> None:
        if self.zygote is not None:
            assert self.zygote.stdin is not None
            assert self.zygote.stdout is not None
            self.zygote.stdin.close()
            self.zygote.wait(10)
            self.zygote.stdout.close()

    def lookup(self, chain: ChainName, tx_hash: str) -> LedgerTx | None:
        for _ in range(50):
            try:
                return self.world.chains[chain].lookup(tx_hash)
            except AdapterError:
                time.sleep(0.1)
        raise AssertionError(f"{chain} unreachable")

    def statuses(self, ids: list[UUID]) -> dict[UUID, tuple[str, bool]]:
        """Each settlement's status, and whether a signed submission is open."""
        rows: Sequence[Any] = self.engine.db.transaction(
            lambda uow: uow.execute(
                "SELECT s.id, s.status, EXISTS (SELECT 1 FROM ledger_submissions x"
                " WHERE x.settlement_id = s.id AND x.status = 'SIGNED')"
                " FROM settlements s WHERE s.id = ANY(:ids)",
                {"ids": ids},
            ).all()
        )
        return {row[0]: (row[1], row[2]) for row in rows}


@contextlib.contextmanager
def _harness(urls: DatabaseUrls, tmp: Path, **world_options: Any) -> Iterator[Harness]:
    # two XRPL closes a second, not twenty: each close moves XRPL ledger time at least a
    # second, so faster closes run it ahead of the engine's clock past T_cancel
    # (test_simulation.test_xrpl_ledger_time_keeps_to_the_engine_clock_...); at two a
    # second it gains about a second a second, well inside the margins over this test
    world = bootstrap.local_world(
        policy=FAST,
        usdc=Decimal(100_000),
        xrpl_close_interval_s=0.5,
        # empty ledgers close on every tick too: an expiry (LastLedgerSequence) then
        # passes in seconds, which keeps the many lives of this test short
        xrpl_idle_interval_s=None,
        **world_options,
    )
    # the seller locks on Tickets, the agent commits and unwinds on its Sequence: a kill
    # lands in either kind of submission
    xrpl = world.chains[ChainName.XRPL]
    assert isinstance(xrpl, XrplChain)
    assert top_up_tickets(xrpl, world.seller_xrpl.classic_address, 40).ok
    engine = bootstrap.build(load_settings(database_url=urls.owner), clock=world.clock, urls=urls)
    seed_compliance(engine.commitments)
    h = Harness(world, engine, tmp)
    try:
        yield h
    finally:
        h.close()
        engine.close()
        world.close()


@pytest.fixture
def harness(fresh_urls: DatabaseUrls, tmp_path: Path) -> Iterator[Harness]:
    """The worker signs Stellar transactions on channel accounts, as deployed."""
    with _harness(fresh_urls, tmp_path, extra_buyers=1) as h:
        assert h.world.channels_stellar
        yield h


@pytest.fixture
def harness_without_channels(fresh_urls: DatabaseUrls, tmp_path: Path) -> Iterator[Harness]:
    """No Stellar channel accounts and a close every second: every Stellar transaction
    of the agent, whatever the settlement, takes the agent's one sequence, and several
    are signed within one close (issue 22, finding 1)."""
    with _harness(
        fresh_urls, tmp_path, extra_buyers=3, stellar_channels=0, stellar_close_interval_s=1.0
    ) as h:
        yield h


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone: the log would say why
        os.kill(pid, signal.SIGKILL)
    for _ in range(200):  # the zygote ignores SIGCHLD, so the kernel reaps it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.005)


def _wait_for_phase(h: Harness, targets: list[UUID], phase: str, *, timeout_s: float) -> None:
    """Until one of ``targets`` is in ``phase``, or ``timeout_s`` (then the kill lands
    wherever the worker is: the round goes on either way)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(status == phase for status, _ in h.statuses(targets).values()):
            return
        time.sleep(0.02)


def _instruct(
    h: Harness,
    legs: list[LegInstruction],
    price: Decimal,
    *,
    window_s: int,
    settle_in_s: int | None = None,
) -> UUID:
    cid = SimEnv(h.engine, None).verified_commitment(price)  # type: ignore[arg-type]
    now = h.world.clock.now()
    return h.coordinator.instruct(
        SYSTEM,
        cid,
        legs,
        commit_deadline=now + timedelta(seconds=window_s),
        settle_not_before=None if settle_in_s is None else now + timedelta(seconds=settle_in_s),
    )


def _drain(buyer: Keypair, h: Harness, keep: Decimal) -> None:
    """The buyer spends its USDC (all but ``keep``) after the instruction was checked."""
    usdc = h.world.usdc
    spend = h.world.stellar.balance(buyer.public_key, usdc) - keep
    h.world.stellar.send(
        buyer,
        lambda b: b.append_payment_op(usdc.issuer, SdkAsset(usdc.code, usdc.issuer), f"{spend:f}"),
    )


@pytest.mark.timeout(300)
def test_worker_killed_at_random_points_resumes_without_partial_settlement(
    harness: Harness,
) -> None:
    h, w = harness, harness.world
    rng = random.Random(SEED)
    before = w.holdings()
    kills: Counter[str] = Counter()
    total_kills = 0
    ids: list[UUID] = []

    def life_cycle(
        targets: list[UUID],
        *,
        max_kills: int,
        stop: Callable[[], bool] | None = None,
        aim: str | None = None,
    ) -> None:
        """Kill and restart until the targets are closed (or ``stop()``) or max_kills.

        With ``aim`` (a phase no kill has landed in yet: short phases can be missed by
        chance on a loaded machine) each life is killed shortly after a target is seen
        in that phase, rather than at a random moment from its start."""
        nonlocal total_kills
        for _ in range(max_kills):
            state = h.statuses(targets)
            if all(status in CLOSED for status, _ in state.values()):
                return
            if stop is not None and stop():
                return
            pid = h.spawn()
            if aim is None:
                time.sleep(rng.uniform(0.05, 0.5))
            else:
                _wait_for_phase(h, targets, aim, timeout_s=5)
                time.sleep(rng.uniform(0.0, 0.1))
            at_kill = h.statuses(targets)
            _kill(pid)
            total_kills += 1
            for status, in_flight in at_kill.values():
                if status not in CLOSED:
                    kills[status] += 1
                    if in_flight:
                        kills[f"{status} with a transaction in flight"] += 1

    def finish(condition: Callable[[], bool], timeout_s: float = 90) -> None:
        """One life that is not killed, until ``condition`` holds: the kill budget of a
        round may run out first, and moving time past deadlines before the round is done
        would turn settlements that should settle into (correct) aborts."""
        if condition():
            return
        pid = h.spawn()
        deadline = time.monotonic() + timeout_s
        try:
            while not condition():
                assert time.monotonic() < deadline, "a round did not finish without kills"
                time.sleep(0.05)
        finally:
            _kill(pid)

    def closed(targets: list[UUID]) -> Callable[[], bool]:
        return lambda: all(status in CLOSED for status, _ in h.statuses(targets).values())

    # round 1: two plain settlements, one with a fee leg, one refused by Stellar after its
    # fee leg locked (ABORT, the fee lock paid back at once), one resting escrowed until a
    # settlement date that comes after its deadline
    for _ in range(2):
        ids.append(_instruct(h, w.legs(Decimal(5), Decimal(500)), Decimal(500), window_s=120))
    ids.append(
        _instruct(
            h,
            [w.fee_leg(Decimal("1.5")), *w.legs(Decimal(3), Decimal(300))],
            Decimal(300),
            window_s=120,
        )
    )
    poor = w.extra_buyers[0]
    refused = _instruct(
        h,
        [w.fee_leg(Decimal(2), payer=poor), *w.legs(Decimal(1), Decimal(100), buyer_stellar=poor)],
        Decimal(100),
        window_s=120,
    )
    ids.append(refused)
    _drain(poor, h, keep=Decimal(50))  # enough for the fee leg, not for the principal
    escrowed = _instruct(
        h, w.legs(Decimal(2), Decimal(200)), Decimal(200), window_s=60, settle_in_s=55
    )
    ids.append(escrowed)

    def waits_escrowed(sid: UUID, others: list[UUID]) -> Callable[[], bool]:
        def check() -> bool:
            state = h.statuses(others)
            if not all(status in CLOSED for status, _ in state.values()):
                return False
            x = load(h.engine.db, h.engine.commitments, [sid])[0]
            return x.commitment_state is State.ESCROWED and x.settlement.status == "LOCKING"

        return check

    unwound = [refused]
    round_one = waits_escrowed(escrowed, [i for i in ids if i != escrowed])
    life_cycle(ids, max_kills=40, stop=round_one)
    finish(round_one)
    unwound.append(escrowed)

    # round 2: the deadline passes while escrowed (ABORT, Stellar unwinds at once, the XRPL
    # escrow after CancelAfter), and two more settlements lock and commit meanwhile
    h.advance_time(60 + 120 + 5)
    for _ in range(2):
        ids.append(_instruct(h, w.legs(Decimal(4), Decimal(400)), Decimal(400), window_s=120))
    life_cycle(ids, max_kills=40)
    finish(closed(ids))

    # more rounds until the kills are enough: plain settlements, and one resting escrowed
    # past its deadline, so kills land while both its legs unwind
    phases = ("LOCKING", "COMMITTING", "UNWINDING")

    def missing(*wanted: str) -> str | None:
        return next((p for p in wanted if kills[p] == 0), None)

    extra = 0
    while (total_kills < MIN_KILLS + 5 or missing(*phases)) and extra < 10:
        extra += 1
        batch = [
            _instruct(h, w.legs(Decimal(1), Decimal(100)), Decimal(100), window_s=120)
            for _ in range(2)
        ]
        late = _instruct(
            h, w.legs(Decimal(1), Decimal(100)), Decimal(100), window_s=60, settle_in_s=55
        )
        ids.extend([*batch, late])
        unwound.append(late)
        life_cycle(
            [*batch, late],
            max_kills=20,
            stop=waits_escrowed(late, batch),
            aim=missing("COMMITTING", "LOCKING"),
        )
        finish(waits_escrowed(late, batch))
        h.advance_time(60 + 120 + 5)
        life_cycle([*batch, late], max_kills=20, aim=missing("UNWINDING"))
        finish(closed([*batch, late]))

    # the last life: a freshly started process that runs until everything is closed
    done = subprocess.run(
        [sys.executable, str(WORKER), str(h.config_file), "--until-done"],
        timeout=150,
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    print(f"seed {SEED}: {total_kills} kills, by phase {dict(kills)}")
    label = f"crash seed {SEED}"
    assert total_kills >= MIN_KILLS, f"{label}: only {total_kills} kills"
    for phase in phases:
        assert kills[phase] > 0, f"{label}: no kill while {phase}: {dict(kills)}"

    settled = load(h.engine.db, h.engine.commitments, ids)
    outcome = {x.settlement.id: x.settlement.status for x in settled}
    assert {outcome[sid] for sid in unwound} == {"UNWOUND"}, outcome
    assert {outcome[sid] for sid in ids if sid not in unwound} == {"SETTLED"}, outcome
    check_invariants(
        label,
        h.engine.db,
        h.engine.commitments,
        settled,
        LedgerView(h.lookup),
        allow_open_if_flagged=False,
    )
    # conservation, exactly: every unit where the settled legs put it, nothing else moved
    # (the drained buyer's payment to the issuer is the one move outside the engine)
    moved = {k: v - before[k] for k, v in w.holdings().items() if v != before[k]}
    moved.pop("USDC:buyer2", None)
    names = {
        ("xrpl", w.seller_xrpl.classic_address): "seller",
        ("xrpl", w.buyer_xrpl.classic_address): "buyer",
        ("stellar", w.buyer_stellar.public_key): "buyer",
        ("stellar", w.seller_stellar.public_key): "seller",
        ("stellar", w.fee_stellar.public_key): "fees",
    }
    expected: Counter[str] = Counter()
    for (chain, code, account), delta in expected_moves(settled).items():
        expected[f"{code}:{names[(chain, account)]}"] += delta
    assert moved == {k: v for k, v in expected.items() if v}, (moved, expected)
    assert w.stellar.balance(poor.public_key, w.usdc) == Decimal(50), "the fee lock came back"


@pytest.mark.timeout(240)
def test_worker_killed_while_settlements_share_the_agents_sequence(
    harness_without_channels: Harness,
) -> None:
    """Without channel accounts, settlements committing in the same close sign from the
    agent's one Stellar sequence (and its one XRPL Sequence): all but one of each close
    are refused before any ledger (tx_bad_seq, tefPAST_SEQ) or expire, and are signed
    again; kills land among them. Such refusals once counted against a leg that had to
    roll forward, and half the settlements stopped with the bonds delivered and the
    price never paid (issue 22, finding 1). Every settlement settles, whole."""
    h, w = harness_without_channels, harness_without_channels.world
    rng = random.Random(SEED + 1)
    before = w.holdings()
    buyers = [w.buyer_stellar, *w.extra_buyers]
    ids = [
        _instruct(
            h, w.legs(Decimal(1), Decimal(100), buyer_stellar=buyer), Decimal(100), window_s=120
        )
        for buyer in buyers
    ]
    kills: Counter[str] = Counter()
    for _ in range(30):
        state = h.statuses(ids)
        if all(status in CLOSED for status, _ in state.values()):
            break
        pid = h.spawn()
        time.sleep(rng.uniform(0.1, 0.8))
        at_kill = h.statuses(ids)
        _kill(pid)
        kills.update(status for status, _ in at_kill.values() if status not in CLOSED)
    done = subprocess.run(
        [sys.executable, str(WORKER), str(h.config_file), "--until-done"],
        timeout=150,
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"seed {SEED + 1} without channels: kills by phase {dict(kills)}")
    label = f"crash seed {SEED + 1} without channels"
    assert kills["COMMITTING"] > 0, f"{label}: no kill while committing: {dict(kills)}"
    settled = load(h.engine.db, h.engine.commitments, ids)
    assert [x.settlement.status for x in settled] == ["SETTLED"] * len(ids), [
        (x.settlement.status, x.settlement.review_reason) for x in settled
    ]
    stellar = [u for x in settled for u in x.subs if u.chain == "stellar"]
    assert stellar and not any(u.channel for u in stellar), "a Stellar channel was used"
    # the agent's transactions met in one close: some were refused before any ledger
    # (or expired) and signed again, and every purpose still applied once
    refused_after_commit = [
        (u.chain, u.result_code or u.status)
        for x in settled
        for u in x.subs
        if u.purpose in ("claim", "commit") and u.status in ("REJECTED", "EXPIRED")
    ]
    print(f"{label}: refused or expired after COMMIT {Counter(refused_after_commit)}")
    assert refused_after_commit, f"{label}: the agent's sequence was never contended"
    check_invariants(
        label,
        h.engine.db,
        h.engine.commitments,
        settled,
        LedgerView(h.lookup),
        allow_open_if_flagged=False,
    )
    moved = {k: v - before[k] for k, v in w.holdings().items() if v != before[k]}
    expected = {
        "BND:seller": Decimal(-len(ids)),
        "BND:buyer": Decimal(len(ids)),
        "USDC:seller": Decimal(100 * len(ids)),
        "USDC:buyer": Decimal(-100),
        **{f"USDC:buyer{n}": Decimal(-100) for n in range(2, len(ids) + 1)},
    }
    assert moved == expected, (moved, expected)


# -- two workers on one database ------------------------------------------------------------


class StepTracker:
    """Wraps coordinators' ``step`` to catch two workers inside one settlement at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inside: dict[UUID, str] = {}
        self.overlaps: list[tuple[UUID, str, str]] = []
        self.steps: Counter[str] = Counter()
        #: steps that returned (or raised), by worker
        self.finished: Counter[str] = Counter()

    def wrap(self, coordinator: DvpCoordinator, worker_name: str) -> None:
        inner = coordinator.step

        def step(settlement_id: UUID) -> StepResult:
            with self._lock:
                other = self.inside.get(settlement_id)
                if other is not None:
                    self.overlaps.append((settlement_id, other, worker_name))
                else:
                    self.inside[settlement_id] = worker_name
                self.steps[worker_name] += 1
            try:
                return inner(settlement_id)
            finally:
                with self._lock:
                    self.finished[worker_name] += 1
                    if self.inside.get(settlement_id) == worker_name:
                        del self.inside[settlement_id]

        coordinator.step = step  # type: ignore[method-assign]


def _own_chains(world: LocalWorld) -> dict[ChainName, Chain]:
    """Adapters of a worker's own (as a second process would build them)."""
    assert world.stellar_node is not None
    return {
        ChainName.XRPL: XrplChain(
            world.xrpl.url,
            agent=world.agent_xrpl.classic_address,
            signer=world.keystore,
            guard=ChainGuard("xrpl", FAST),
        ),
        ChainName.STELLAR: StellarChain(
            world.stellar.url,
            world.stellar_node.network_passphrase,
            agent=world.agent_stellar.public_key,
            signer=world.keystore,
            guard=ChainGuard("stellar", FAST),
            channels=[c.public_key for c in world.channels_stellar],
        ),
    }


def _coordinator_for(dvp: Dvp, chains: dict[ChainName, Any], sealer: Sealer) -> DvpCoordinator:
    return DvpCoordinator(
        dvp.engine.db,
        service=dvp.engine.commitments,
        chains=chains,
        sealer=sealer,
        clock=dvp.world.clock,
        policy=POLICY,
    )


@pytest.fixture
def slow_close_dvp(fresh_urls: DatabaseUrls) -> Iterator[Dvp]:
    """The DVP fixture with four XRPL closes a second, not twenty: XRPL ledger time runs
    ahead of the clock by up to a second a close, which the test must not outlast."""
    world = bootstrap.local_world(
        policy=FAST,
        usdc=Decimal(5_000),
        xrpl_close_interval_s=0.25,
        xrpl_idle_interval_s=None,  # as in the crash harness: expiries pass quickly
        extra_buyers=5,
    )
    engine = bootstrap.build(
        load_settings(database_url=fresh_urls.owner), clock=world.clock, urls=fresh_urls
    )
    seed_compliance(engine.commitments)
    coordinator = _coordinator_for(
        Dvp(world, engine, None), world.chains, Sealer(Fernet.generate_key())
    )  # type: ignore[arg-type]
    try:
        yield Dvp(world, engine, coordinator)
    finally:
        engine.close()
        world.close()


def test_two_worker_threads_drive_settlements_each_once(slow_close_dvp: Dvp) -> None:
    dvp = slow_close_dvp
    sealer = Sealer(Fernet.generate_key())
    tracker = StepTracker()
    workers = []
    for name in ("worker-a", "worker-b"):
        coordinator = _coordinator_for(dvp, _own_chains(dvp.world), sealer)
        tracker.wrap(coordinator, name)
        workers.append(
            Worker(
                dvp.engine.db,
                coordinator,
                dvp.world.clock,
                name=name,
                policy=WorkerPolicy(lease_s=10, batch=2, idle_s=0.01),
            )
        )
    first = workers[0]._coordinator
    before = dvp.world.holdings()
    # one buyer per settlement: two workers locking from one Stellar account at once
    # abort one of them (test_two_workers_locking_from_one_account_both_settle)
    buyers = [dvp.world.buyer_stellar, *dvp.world.extra_buyers]
    ids = [
        first.instruct(
            SYSTEM,
            dvp.verified_commitment("400"),
            dvp.world.legs(Decimal(2), Decimal(400), buyer_stellar=buyer),
            commit_deadline=dvp.world.clock.now() + timedelta(seconds=120),
        )
        for buyer in buyers
    ]
    threads = [threading.Thread(target=w.run, name=w.name) for w in workers]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = load(dvp.engine.db, dvp.engine.commitments, ids)
            if all(x.settlement.status in CLOSED for x in states):
                break
            time.sleep(0.1)
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(30)
    settled = load(dvp.engine.db, dvp.engine.commitments, ids)
    assert [x.settlement.status for x in settled] == ["SETTLED"] * 6, [
        (
            x.settlement.decision_reason,
            [(u.leg_no, u.purpose, u.status, u.result_code) for u in x.subs],
        )
        for x in settled
        if x.settlement.status != "SETTLED"
    ]
    assert not tracker.overlaps, f"two workers inside one settlement: {tracker.overlaps}"
    assert tracker.steps["worker-a"] > 0 and tracker.steps["worker-b"] > 0, tracker.steps
    for x in settled:
        # both workers sign for the agent and the seller: a Sequence taken by the other
        # worker's transaction makes one expire (XRPL) or be refused (Stellar tx_bad_seq)
        # and be signed again; never two applied. The Stellar leg (0) is locked, claimed
        # into the agent and paid from it; the XRPL leg (1) locked and finished
        applied = Counter((u.leg_no, u.purpose) for u in x.subs if u.status == "APPLIED")
        assert set(applied.values()) == {1}, applied
        assert set(applied) == {
            (0, "lock"),
            (0, "claim"),
            (0, "commit"),
            (1, "lock"),
            (1, "commit"),
        }, applied
        history = [h.event for h in dvp.engine.commitments.history(x.settlement.commitment_id)]
        assert history[-2:] == ["lock", "settle"], history
    check_invariants(
        "two workers",
        dvp.engine.db,
        dvp.engine.commitments,
        settled,
        LedgerView(lambda chain, h: dvp.world.chains[chain].lookup(h)),
        allow_open_if_flagged=False,
    )
    moved = {k: v - before[k] for k, v in dvp.world.holdings().items() if v != before[k]}
    assert moved == {
        "BND:seller": Decimal(-12),
        "BND:buyer": Decimal(12),
        **{f"USDC:{name}": Decimal(-400) for name in ("buyer", "buyer2", "buyer3", "buyer4")},
        **{f"USDC:buyer{n}": Decimal(-400) for n in (5, 6)},
        "USDC:seller": Decimal(2400),
    }


class BlockingChain:
    """A chain whose first submit blocks until released: a ledger call slower than the
    worker's lease (Horizon answers 504 only after 30 s; the adapter waits up to 35 s)."""

    def __init__(self, inner: Chain) -> None:
        self._inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self._first = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def submit(self, submission: SignedSubmission) -> Outcome:
        if self._first:
            self._first = False
            self.entered.set()
            self.release.wait(20)
        return self._inner.submit(submission)


def test_a_step_longer_than_the_lease_is_not_shared_with_another_worker(dvp: Dvp) -> None:
    sealer = Sealer(Fernet.generate_key())
    tracker = StepTracker()
    slow_chains = _own_chains(dvp.world)
    blocking = BlockingChain(slow_chains[ChainName.STELLAR])
    slow_chains[ChainName.STELLAR] = blocking  # type: ignore[assignment]
    slow = _coordinator_for(dvp, slow_chains, sealer)
    other = _coordinator_for(dvp, _own_chains(dvp.world), sealer)
    tracker.wrap(slow, "worker-a")
    tracker.wrap(other, "worker-b")
    policy = WorkerPolicy()  # the default lease
    worker_a = Worker(dvp.engine.db, slow, dvp.world.clock, name="worker-a", policy=policy)
    worker_b = Worker(dvp.engine.db, other, dvp.world.clock, name="worker-b", policy=policy)
    sid = slow.instruct(
        SYSTEM,
        dvp.verified_commitment("400"),
        dvp.world.legs(Decimal(2), Decimal(400)),
        commit_deadline=dvp.world.clock.now() + timedelta(seconds=600),
    )
    a = threading.Thread(target=worker_a.run_once)
    a.start()
    try:
        assert blocking.entered.wait(10), "worker A never reached the ledger"
        # worker A has been waiting on the ledger for longer than its lease
        dvp.world.advance_time(int(policy.lease_s) + 1)
        worker_b.run_once()
    finally:
        blocking.release.set()
        a.join(30)
    assert not tracker.overlaps, f"worker B stepped {sid} while worker A was inside it"


def test_a_worker_steps_its_other_settlements_while_one_waits_on_a_ledger(
    slow_close_dvp: Dvp,
) -> None:
    dvp = slow_close_dvp
    sealer = Sealer(Fernet.generate_key())
    tracker = StepTracker()
    chains = _own_chains(dvp.world)
    blocking = BlockingChain(chains[ChainName.STELLAR])
    chains[ChainName.STELLAR] = blocking  # type: ignore[assignment]
    coordinator = _coordinator_for(dvp, chains, sealer)
    tracker.wrap(coordinator, "worker-a")
    worker = Worker(
        dvp.engine.db,
        coordinator,
        dvp.world.clock,
        name="worker-a",
        policy=WorkerPolicy(batch=3, concurrency=3),
    )
    for _ in range(3):
        coordinator.instruct(
            SYSTEM,
            dvp.verified_commitment("400"),
            dvp.world.legs(Decimal(2), Decimal(400)),
            commit_deadline=dvp.world.clock.now() + timedelta(seconds=600),
        )

    a = threading.Thread(target=worker.run_once)
    a.start()
    try:
        assert blocking.entered.wait(10), "the worker never reached the ledger"
        # well before the blocked call gives up by itself (20 s)
        deadline = time.monotonic() + 8
        while tracker.finished["worker-a"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        # one step is stuck inside a ledger call; the other two ran to their end
        # meanwhile (each sent its lock, or found its channel taken and handed back)
        assert tracker.finished["worker-a"] >= 2
    finally:
        blocking.release.set()
        a.join(30)
    assert not tracker.overlaps


def test_a_running_worker_settles_the_rest_while_one_lane_waits_on_a_ledger(
    slow_close_dvp: Dvp,
) -> None:
    # run() in lanes: a lane freed by a finished step takes the next due settlement at
    # once, while another lane still waits inside a ledger call
    dvp = slow_close_dvp
    sealer = Sealer(Fernet.generate_key())
    tracker = StepTracker()
    chains = _own_chains(dvp.world)
    blocking = BlockingChain(chains[ChainName.STELLAR])
    chains[ChainName.STELLAR] = blocking  # type: ignore[assignment]
    coordinator = _coordinator_for(dvp, chains, sealer)
    tracker.wrap(coordinator, "lanes")
    worker = Worker(
        dvp.engine.db,
        coordinator,
        dvp.world.clock,
        name="lanes",
        policy=WorkerPolicy(batch=8, concurrency=3, idle_s=0.02),
    )
    buyers = [dvp.world.buyer_stellar, *dvp.world.extra_buyers]
    ids = [
        coordinator.instruct(
            SYSTEM,
            dvp.verified_commitment("400"),
            dvp.world.legs(Decimal(2), Decimal(400), buyer_stellar=buyers[n]),
            commit_deadline=dvp.world.clock.now() + timedelta(seconds=600),
        )
        for n in range(4)
    ]
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        assert blocking.entered.wait(10), "the worker never reached the ledger"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            settled = [
                x.settlement.status for x in load(dvp.engine.db, dvp.engine.commitments, ids)
            ]
            if settled.count("SETTLED") == 3:
                break
            time.sleep(0.1)
        # three settled end to end on the two free lanes while the third lane was held
        assert settled.count("SETTLED") == 3, settled
        assert not blocking.release.is_set()
    finally:
        blocking.release.set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
        x.settlement.status != "SETTLED" for x in load(dvp.engine.db, dvp.engine.commitments, ids)
    ):
        time.sleep(0.1)
    worker.stop()
    runner.join(30)
    assert not runner.is_alive(), "stop() ends the lanes"
    assert [x.settlement.status for x in load(dvp.engine.db, dvp.engine.commitments, ids)] == [
        "SETTLED"
    ] * 4
    assert not tracker.overlaps


def test_a_force_cancel_does_not_hand_a_leased_settlement_to_another_worker(dvp: Dvp) -> None:
    sealer = Sealer(Fernet.generate_key())
    tracker = StepTracker()
    slow_chains = _own_chains(dvp.world)
    blocking = BlockingChain(slow_chains[ChainName.STELLAR])
    slow_chains[ChainName.STELLAR] = blocking  # type: ignore[assignment]
    slow = _coordinator_for(dvp, slow_chains, sealer)
    other = _coordinator_for(dvp, _own_chains(dvp.world), sealer)
    tracker.wrap(slow, "worker-a")
    tracker.wrap(other, "worker-b")
    worker_a = Worker(dvp.engine.db, slow, dvp.world.clock, name="worker-a")
    worker_b = Worker(dvp.engine.db, other, dvp.world.clock, name="worker-b")
    sid = slow.instruct(
        SYSTEM,
        dvp.verified_commitment("400"),
        dvp.world.legs(Decimal(2), Decimal(400)),
        commit_deadline=dvp.world.clock.now() + timedelta(seconds=600),
    )
    a = threading.Thread(target=worker_a.run_once)
    a.start()
    try:
        assert blocking.entered.wait(10), "worker A never reached the ledger"
        slow.request_force_cancel(ADMIN, sid, "operator cancels while A is mid-step")
        worker_b.run_once()  # well inside A's 30 s lease
    finally:
        blocking.release.set()
        a.join(30)
    assert not tracker.overlaps, f"worker B stepped {sid} while worker A was inside it"


class RendezvousChain:
    """Two coordinators' Stellar adapters that sign their next lock at the same moment
    (both read the account's sequence before either sends): what two workers do when
    they lock two settlements of one buyer at once."""

    def __init__(self, inner: Chain, barrier: threading.Barrier) -> None:
        self._inner = inner
        self._barrier = barrier

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def prepare_lock(
        self, leg: Any, terms: Any, *, kind: LockKind | None = None, channel: str | None = None
    ) -> SignedSubmission:
        signed = self._inner.prepare_lock(leg, terms, kind=kind, channel=channel)
        self._barrier.wait(10)
        return signed


# Both workers sign from one Stellar account (the buyer's locks, then the agent's
# commits) at the same moment. Each transaction takes its sequence from a channel account
# the engine holds, one transaction per channel at a time, so neither waits for the
# other's sequence (before channels this test collided and ran only in make soak).
def test_two_workers_locking_from_one_account_both_settle(slow_close_dvp: Dvp) -> None:
    # the XRPL seller has no tickets in this world, so its sequence collides: one lock
    # waits out its LastLedgerSequence, which passes in seconds with this fixture's
    # closes (test_tickets has the same race on tickets, where both apply first time)
    dvp = slow_close_dvp
    sealer = Sealer(Fernet.generate_key())
    barrier = threading.Barrier(2)
    coordinators = []
    for _ in range(2):
        chains = _own_chains(dvp.world)
        chains[ChainName.STELLAR] = RendezvousChain(chains[ChainName.STELLAR], barrier)  # type: ignore[assignment]
        coordinators.append(_coordinator_for(dvp, chains, sealer))
    ids = [
        c.instruct(
            SYSTEM,
            dvp.verified_commitment("400"),
            dvp.world.legs(Decimal(2), Decimal(400)),
            commit_deadline=dvp.world.clock.now() + timedelta(seconds=120),
        )
        for c in coordinators
    ]
    threads = [
        threading.Thread(target=c.step, args=(sid,))
        for c, sid in zip(coordinators, ids, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    barrier.abort()  # from here on one coordinator drives both, a step at a time
    plain = _coordinator_for(dvp, dict(dvp.world.chains), sealer)
    for sid in ids:
        plain.run_to_end(sid, timeout_s=45)
    settled = load(dvp.engine.db, dvp.engine.commitments, ids)
    assert [x.settlement.status for x in settled] == ["SETTLED", "SETTLED"], [
        x.settlement.decision_reason for x in settled
    ]
    stellar = [x for one in settled for x in one.subs if x.chain == "stellar"]
    # every Stellar transaction went through a channel, none lost a race for a sequence
    assert stellar and all(
        x.channel in {c.public_key for c in dvp.world.channels_stellar} for x in stellar
    )
    assert {x.status for x in stellar} == {"APPLIED"}, [(x.status, x.result_code) for x in stellar]
