"""Seeded fault simulation of delivery versus payment (issue 5).

Each seed draws settlements and faults from ``random.Random(seed)``; after the run every
invariant of DESIGN section 8 is checked against the database and the ledgers, and a
failure names its seed (``pytest -k 'seed_1234'`` repeats it exactly on the fake layer).

Layers:
- ``test_fake_ledger_seed``: 200 seeds (CI) over two deterministic in-memory ledgers
  behind the real ``Chain`` port, a real PostgreSQL and the real coordinator, with lost
  and 504 responses, rejections, transactions held back until they expire, partitions,
  stalled ledgers, clock jumps, force-cancels and serialization failures
  (``simulation.py`` says what the fake keeps faithful).
- ``test_local_networks_seed``: fewer seeds over the real local XRPL and Stellar nodes and
  the real adapters (HTTP, signatures, hashes, breakers), with the nodes' own fault
  injection; ledger references are checked on the ledgers themselves.
- ``test_soak_*`` (marked slow, ``make soak``): 5,000 fake seeds and 100 network seeds.

A seed that once failed goes into ``REGRESSION_SEEDS`` and runs in CI for ever.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from support import ADMIN, seed_compliance

from adapters.chain import ChainName, LedgerTx
from adapters.errors import AdapterError
from adapters.stellar import StellarChain
from ledger.database import app_url_for
from ledger.errors import TransientConflict
from settlement import bootstrap, errors
from settlement.bootstrap import DatabaseUrls
from settlement.clock import ManualClock
from settlement.domain import SYSTEM
from settlement.dvp import DvpCoordinator, DvpPolicy, Progress
from settlement.localworld import LocalWorld, start_local_world
from settlement.sealing import Sealer
from settlement.settings import load_settings

from .conftest import FAST
from .simulation import (
    CLOSED,
    FlakyDatabase,
    LedgerView,
    SimEnv,
    check_invariants,
    expected_moves,
    load,
    run_fake_seed,
)

#: seeds that once failed (fake layer); they run first, in every CI run.
#: 10028: a Stellar commit refused without applying, then signed again before any ledger
#: closed: byte-identical, so the unique tx_hash refused the record and every step failed
#: until time moved (the simulation now lets time pass while committing, as it does)
#: 311, 513: the fake numbered a new transaction after queued ones with a gap before
#: them, so nothing of the agent's could apply again (a fake bug; the checks caught it)
REGRESSION_SEEDS: list[int] = [10028, 311, 513]
#: seeds that once failed on the local networks
REGRESSION_NETWORK_SEEDS: list[int] = []

CI_SEEDS = 200
CI_NETWORK_SEEDS = 12
SOAK_SEEDS = 5_000
SOAK_NETWORK_SEEDS = 100


@pytest.fixture(scope="module")
def module_urls(pg_server: Any, template_db: str) -> Iterator[DatabaseUrls]:
    """A migrated database for this module alone (clone of the session template)."""
    name = f"settlement_sim_{os.getpid()}_{random.randrange(10**9)}"
    admin = pg_server.admin()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
        # thousands of tiny transactions: waiting for each WAL flush would dominate the
        # run, and a server crash is not what this module simulates (test_crash is)
        c.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    owner = pg_server.url_for(name)
    yield DatabaseUrls(owner=owner, app=app_url_for(owner))
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def sim(module_urls: DatabaseUrls) -> Iterator[SimEnv]:
    clock = ManualClock(datetime(2026, 11, 22, 9, 0, tzinfo=UTC))
    engine = bootstrap.build(
        load_settings(database_url=module_urls.owner), clock=clock, urls=module_urls
    )
    seed_compliance(engine.commitments)
    try:
        yield SimEnv(engine, clock)
    finally:
        engine.close()


# -- the fake layer -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", REGRESSION_SEEDS + list(range(CI_SEEDS)))
def test_fake_ledger_seed(sim: SimEnv, seed: int) -> None:
    run_fake_seed(sim, seed)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_soak_fake_ledger_seeds(sim: SimEnv) -> None:
    failed: list[tuple[int, str]] = []
    totals: Counter[str] = Counter()
    for seed in range(CI_SEEDS, CI_SEEDS + SOAK_SEEDS):
        try:
            report = run_fake_seed(sim, seed)
        except AssertionError as exc:
            failed.append((seed, str(exc)[:300]))
            continue
        totals.update(report.outcomes)
    print(f"soak: {SOAK_SEEDS} seeds, outcomes {dict(totals)}")
    assert not failed, f"failing seeds (add them to REGRESSION_SEEDS): {failed[:10]}"


def test_the_fake_layer_reaches_every_outcome_and_fault(sim: SimEnv) -> None:
    """A simulation that never aborts, never loses a response or never retries a
    transaction proves little: check that 40 seeds reach all of them."""
    outcomes: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    for seed in range(10_000, 10_040):
        report = run_fake_seed(sim, seed)
        outcomes.update(report.outcomes)
        faults.update({k.split(":")[-1]: v for k, v in report.faults.items()})
    print(f"outcomes {dict(outcomes)} faults {dict(faults)}")
    assert outcomes["SETTLED"] > 0 and outcomes["UNWOUND"] > 0, outcomes
    for fault in ("drop", "timeout", "reject", "hold", "partition", "stall", "clock_jump"):
        assert faults[fault] > 0, (fault, faults)
    assert faults["db_40001_injected"] > 0 and faults["step_failed_40001"] > 0, faults


# -- the local networks -------------------------------------------------------------------


class NetSim:
    """One local world and one database for the module's network seeds."""

    def __init__(self, world: LocalWorld, engine: bootstrap.Engine) -> None:
        self.world = world
        self.engine = engine
        self.sealer = Sealer(Fernet.generate_key())

    def lookup(self, chain: ChainName, tx_hash: str) -> LedgerTx | None:
        for _ in range(50):  # a breaker left open by a partition closes again shortly
            try:
                return self.world.chains[chain].lookup(tx_hash)
            except AdapterError:
                time.sleep(0.1)
        raise AssertionError(f"{chain} unreachable for lookup")


@pytest.fixture(scope="module")
def net(module_urls: DatabaseUrls) -> Iterator[NetSim]:
    # one close a second: faster closes make XRPL ledger time run ahead of the engine's
    # clock (see test_xrpl_ledger_time_keeps_to_the_engine_clock_under_fast_closes)
    world = start_local_world(
        policy=FAST,
        usdc=Decimal(1_000_000),
        bond_units=Decimal(100_000),
        xrpl_close_interval_s=1.0,
    )
    engine = bootstrap.build(
        load_settings(database_url=module_urls.owner), clock=world.clock, urls=module_urls
    )
    seed_compliance(engine.commitments)
    try:
        yield NetSim(world, engine)
    finally:
        engine.close()
        world.close()


def run_real_seed(net: NetSim, seed: int) -> Counter[str]:
    """One seed over the local networks: 1-2 settlements, a few of the nodes' faults,
    engine and ledger clocks moved together, serialization failures; then invariants."""
    rng = random.Random(seed)
    started = time.monotonic()
    label = f"network seed {seed}"
    world = net.world
    xf, sf = world.xrpl_node.faults, world.stellar_node.faults
    outcomes: Counter[str] = Counter()

    db_armed = [False]

    def db_failures() -> int:
        if not db_armed[0]:
            return 0
        return 0 if rng.random() < 0.9 else rng.choice([1, 2, 4])

    flaky = FlakyDatabase(net.engine.db, db_failures)
    # Stellar submissions go through Horizon's asynchronous route by default; a share of
    # the seeds use the synchronous one, whose 504-after-apply fault the others cannot meet
    stellar = world.chains[ChainName.STELLAR]
    assert isinstance(stellar, StellarChain)
    stellar.asynchronous_submit = rng.random() < 0.6
    coordinator = DvpCoordinator(
        flaky,  # type: ignore[arg-type]
        service=net.engine.commitments,
        chains=world.chains,
        sealer=net.sealer,
        clock=world.clock,
        policy=DvpPolicy(safety_margin_s=120, min_window_s=5, retry_after_s=0.02),
    )
    before = world.holdings()
    ids: list[UUID] = []
    for _ in range(rng.choice([1, 2])):
        price = Decimal(rng.choice([10, 100, 1000]))
        cid = SimEnv(net.engine, ManualClock(world.clock.now())).verified_commitment(price)
        legs = world.legs(Decimal(rng.randint(1, 5)), price)
        if rng.random() < 0.3:
            legs = [world.fee_leg(Decimal("0.5")), *legs]
        now = world.clock.now()
        settle_at = now + timedelta(seconds=5) if rng.random() < 0.2 else None
        window_s = rng.choice([30, 60])
        for _ in range(100):  # a breaker a previous seed left open closes within a second
            try:
                sid = coordinator.instruct(
                    SYSTEM,
                    cid,
                    legs,
                    commit_deadline=now + timedelta(seconds=window_s),
                    settle_not_before=settle_at,
                )
                break
            except AdapterError:
                time.sleep(0.05)
        else:
            raise AssertionError(f"{label}: the ledgers stayed unreachable")
        ids.append(sid)
    # the faults of this seed, armed before the first step
    db_armed[0] = True
    armed = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(
            ["x_drop", "x_reject", "x_delay", "s_drop", "s_504", "s_reject", "s_delay", "cancel"]
        )
        if kind == "s_504" and stellar.asynchronous_submit:
            kind = "s_drop"  # the asynchronous route answers at once: its loss is a drop
        armed.append(kind)
        match kind:
            case "x_drop":
                xf.drop_submit_responses(rng.randint(1, 2))
            case "x_reject":
                xf.reject_submits(1, rng.choice(["temMALFORMED", "tefPAST_SEQ", "telINSUF_FEE_P"]))
            case "x_delay":
                xf.delay_responses(0.2, count=rng.randint(1, 3))
            case "s_drop":
                sf.drop_responses(rng.randint(1, 2))
            case "s_504":
                sf.timeout_responses(rng.randint(1, 2))
            case "s_reject":
                sf.reject_submissions(1, rng.choice(["tx_insufficient_fee", 503]))
            case "s_delay":
                sf.delay(0.2, rng.randint(1, 3))
    steps = 0
    errors_seen: Counter[str] = Counter()
    details: Counter[str] = Counter()
    cancel_at = rng.randint(1, 6) if "cancel" in armed else -1
    partition_at = rng.randint(2, 8) if rng.random() < 0.3 else -1
    jump_at = rng.randint(2, 10) if rng.random() < 0.2 else -1
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live = [
            x
            for x in load(net.engine.db, net.engine.commitments, ids)
            if x.settlement.status not in CLOSED
        ]
        if not live:
            break
        steps += 1
        if steps == cancel_at:
            with contextlib.suppress(errors.TransitionNotAllowed, TransientConflict):
                coordinator.request_force_cancel(ADMIN, live[0].settlement.id, "simulated")
        if steps == partition_at:
            rng.choice([xf, sf]).partition(0.3)
        if steps == jump_at and not any(x.settlement.status == "COMMITTING" for x in live):
            world.advance_time(rng.choice([40, 200]))
        results = []
        for x in live:
            try:
                result = coordinator.step(x.settlement.id)
                details[result.detail[:160]] += 1
                results.append(result)
            except Exception as exc:  # noqa: BLE001 - as Worker._drive: logged, run again
                errors_seen[type(exc).__name__] += 1
                details[repr(exc)[:160]] += 1
                results.append(None)
        if all(r is not None and r.progress is Progress.NEEDS_REVIEW for r in results) and all(
            x.settlement.status == "COMMITTING" for x in live
        ):
            break
        waiting_cancel = all(
            x.settlement.status == "UNWINDING" and x.settlement.cancel_after > world.clock.now()
            for x in live
        )
        if waiting_cancel and steps > 5:
            # XRPL escrows unwind only after CancelAfter: move both clocks past it
            latest = max(x.settlement.cancel_after for x in live)
            world.advance_time(int((latest - world.clock.now()).total_seconds()) + 5)
        elif settle_at_pending(live, world):
            world.advance_time(6)
        else:
            time.sleep(0.02)
    xf.clear()
    sf.clear()
    db_armed[0] = False
    # drive anything left with the faults healed
    end = time.monotonic() + 30
    while time.monotonic() < end:
        live = [
            x
            for x in load(net.engine.db, net.engine.commitments, ids)
            if x.settlement.status not in CLOSED
        ]
        if not live:
            break
        for x in live:
            try:
                coordinator.step(x.settlement.id)
            except Exception as exc:  # noqa: BLE001 - as Worker._drive
                errors_seen[type(exc).__name__] += 1
        if all(x.settlement.status == "UNWINDING" for x in live):
            latest = max(x.settlement.cancel_after for x in live)
            if latest >= world.clock.now():
                world.advance_time(int((latest - world.clock.now()).total_seconds()) + 5)
        time.sleep(0.05)
    settled = load(net.engine.db, net.engine.commitments, ids)
    for x in settled:
        outcomes[x.settlement.status] += 1
    outcomes.update({f"error:{k}": v for k, v in errors_seen.items()})
    outcomes["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    if outcomes["elapsed_ms"] > 10_000:
        print(f"{label} slow ({armed}): {details.most_common(5)}")
    check_invariants(label, net.engine.db, net.engine.commitments, settled, LedgerView(net.lookup))
    # conservation, exactly: every unit of each asset where the settled legs put it
    moved = {k: v - before[k] for k, v in world.holdings().items() if v != before[k]}
    expected: dict[str, Decimal] = {}
    names = _holder_names(world)
    for (chain, code, account), delta in expected_moves(settled).items():
        key = f"{code}:{names[(chain, account)]}"
        expected[key] = expected.get(key, Decimal(0)) + delta
    expected = {k: v for k, v in expected.items() if v}
    if all(x.settlement.status in CLOSED for x in settled):
        assert moved == expected, f"{label}: moved {moved}, expected {expected} ({armed})"
    return outcomes


def settle_at_pending(live: list[Any], world: LocalWorld) -> bool:
    return any(
        x.settlement.status == "LOCKING"
        and x.settlement.settle_not_before is not None
        and x.settlement.settle_not_before > world.clock.now()
        and x.commitment_state.value == "ESCROWED"
        for x in live
    )


def _holder_names(world: LocalWorld) -> dict[tuple[str, str], str]:
    names = {
        ("xrpl", world.seller_xrpl.classic_address): "seller",
        ("xrpl", world.buyer_xrpl.classic_address): "buyer",
        ("stellar", world.buyer_stellar.public_key): "buyer",
        ("stellar", world.seller_stellar.public_key): "seller",
        ("stellar", world.agent_stellar.public_key): "agent",
        ("stellar", world.fee_stellar.public_key): "fees",
    }
    for n, k in enumerate(world.extra_buyers, 2):
        names[("stellar", k.public_key)] = f"buyer{n}"
    return names


@pytest.mark.parametrize("seed", REGRESSION_NETWORK_SEEDS + list(range(CI_NETWORK_SEEDS)))
def test_local_networks_seed(net: NetSim, seed: int) -> None:
    print(seed, dict(run_real_seed(net, seed)))


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_soak_local_networks_seeds(net: NetSim) -> None:
    failed = []
    for seed in range(CI_NETWORK_SEEDS, CI_NETWORK_SEEDS + SOAK_NETWORK_SEEDS):
        try:
            run_real_seed(net, seed)
        except AssertionError as exc:
            failed.append((seed, str(exc)[:300]))
    assert not failed, f"failing network seeds (add to REGRESSION_NETWORK_SEEDS): {failed[:10]}"


@pytest.mark.timeout(60)
def test_xrpl_ledger_time_keeps_to_the_engine_clock_under_fast_closes() -> None:
    """Each XRPL close time is at least its parent's + 1 s (rippled's effCloseTime), so a
    node closing empty ledgers 20 times a second runs ledger time ahead without bound.
    LocalWorld's node closes busy ledgers fast but idle ones once a second, as rippled's
    consensus closes an idle ledger only after its idle interval."""
    world = start_local_world(policy=FAST)  # the defaults the demo and the DVP tests use
    try:
        time.sleep(8)
        ledger = world.xrpl_node.chain.last_closed.header
        engine_ripple_s = world.xrpl_node.clock.ripple_now_s()
        ahead_s = ledger.close_time - engine_ripple_s
        # rippled rounds close times to its resolution (10 s); more than that is drift,
        # and T_cancel's margin (120 s here) cannot absorb drift that grows without bound
        assert ahead_s <= 30, f"XRPL ledger time is {ahead_s} s ahead of the engine's clock"
    finally:
        world.close()
