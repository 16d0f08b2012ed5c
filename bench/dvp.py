"""End-to-end two-leg DVP throughput over the local XRPL and Stellar networks.

Figures, not a pass/fail test. Both local networks run in this process with a 1 s ledger
close interval (as the real networks close every 3-5 s, this is optimistic), against
the embedded PostgreSQL. For each worker count K (threads, each with its own
coordinator and its own adapters, all on one database, as separate worker processes
would be), a closed loop keeps ``--in-flight`` settlements per worker open: as one
closes, the next commitment is approved and instructed. Each settlement is the bond on
XRPL against USDC on Stellar (lock both, decide, commit both: four ledger transactions).

Printed per K: settled DVPs per second (settled / time from the start to the last
settlement; new work stops after ``--seconds`` and what is open gets ``--drain`` more
seconds to finish), p50/p99 from VERIFIED (approval) to SETTLED,
ledger transactions per close on each chain (mean and max), the share of signatures that
had to be made again (a Sequence taken by a concurrent transaction from the same
account expires and is signed anew), and peak RSS of this process (which also holds
both networks).

What limits it: every XRPL lock is signed by the one seller account and every XRPL
commit by the one agent account. An account's transactions need consecutive sequence
numbers, so concurrent workers collide and the loser waits out its LastLedgerSequence
(20 ledgers) before signing again. Stellar transactions take their sequence from one of
``--channels`` channel accounts (0: each signer's own sequence, as before channels were
built), so they no longer collide. ``--concurrency`` steps that many claimed
settlements of a worker side by side (a Horizon submit waits for its ledger). XRPL
Tickets are not built, so the XRPL side still serialises per account and the issue's
target of >= 100 settlements/s is not reached; the local networks also run inside this
process, not as separate processes as the issue asks.

    python bench/dvp.py [--seconds 30] [--workers 1,4] [--in-flight 4]
                        [--channels 8] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID

from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transitions import ALLOCATOR, OFFICER, SYSTEM, seed

from adapters.chain import Chain, ChainName
from adapters.resilience import ChainGuard, ResiliencePolicy
from adapters.stellar import StellarChain
from adapters.xrpl import XrplChain
from ledger import embedded, migrate
from ledger.database import app_url_for
from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.dvp import DvpCoordinator, DvpPolicy
from settlement.localworld import LocalWorld, start_local_world
from settlement.sealing import Sealer
from settlement.settings import load_settings
from settlement.worker import Worker, WorkerPolicy

CLOSE_INTERVAL_S = 1.0
PRICE = Decimal(100)
BOND = Decimal(1)


def own_chains(world: LocalWorld, policy: ResiliencePolicy) -> dict[ChainName, Chain]:
    """A worker's own adapters, on the world's accounts and channel accounts."""
    return {
        ChainName.XRPL: XrplChain(
            world.xrpl.url,
            agent=world.agent_xrpl.classic_address,
            signer=world.keystore,
            guard=ChainGuard("xrpl", policy),
        ),
        ChainName.STELLAR: StellarChain(
            world.stellar.url,
            world.stellar_node.network_passphrase,
            agent=world.agent_stellar.public_key,
            signer=world.keystore,
            guard=ChainGuard("stellar", policy),
            channels=[c.public_key for c in world.channels_stellar],
        ),
    }


class _Count(logging.Handler):
    """Counts the worker's "step failed" reports (each costs the settlement a lease)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(
    world: LocalWorld,
    engine: bootstrap.Engine,
    workers_n: int,
    seconds: float,
    in_flight: int,
    drain_s: float,
    concurrency: int = 1,
) -> dict[str, float]:
    sealer = Sealer(Fernet.generate_key())
    policy = ResiliencePolicy()
    dvp_policy = DvpPolicy(safety_margin_s=120, min_window_s=5, retry_after_s=0.1)
    coordinators = [
        DvpCoordinator(
            engine.db,
            service=engine.commitments,
            chains=own_chains(world, policy),
            sealer=sealer,
            clock=world.clock,
            policy=dvp_policy,
        )
        for _ in range(workers_n)
    ]
    workers = [
        Worker(
            engine.db,
            c,
            world.clock,
            name=f"bench-{workers_n}-{n}",
            policy=WorkerPolicy(lease_s=30, batch=in_flight, idle_s=0.02, concurrency=concurrency),
        )
        for n, c in enumerate(coordinators)
    ]
    buyers = [world.buyer_stellar, *world.extra_buyers]
    service = engine.commitments
    ids: list[UUID] = []
    verified_at: dict[UUID, float] = {}
    settled_at: dict[UUID, float] = {}

    def open_ids() -> list[UUID]:
        if not ids:
            return []
        return engine.db.transaction(
            lambda uow: [
                row[0]
                for row in uow.execute(
                    "SELECT id FROM settlements WHERE id = ANY(:ids)"
                    " AND status IN ('LOCKING', 'COMMITTING', 'UNWINDING')",
                    {"ids": ids},
                ).all()
            ]
        )

    failures = _Count()
    worker_log = logging.getLogger("settlement.worker")
    worker_log.addHandler(failures)
    worker_log.propagate = False  # counted, not printed
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    started = time.monotonic()
    for t in threads:
        t.start()
    n = 0
    while time.monotonic() - started < seconds:
        live = open_ids()
        for sid in set(ids) - set(live) - set(settled_at):
            settled_at[sid] = time.monotonic()
        for _ in range(in_flight * workers_n - len(live)):
            created = service.create(
                ALLOCATOR, deal_ref=f"BENCH-DVP-{n}", amount=f"{PRICE:f}", currency="USDC"
            )
            service.submit(ALLOCATOR, created.commitment_id)
            service.approve(OFFICER, created.commitment_id)
            approved = time.monotonic()
            buyer = buyers[n % len(buyers)]
            n += 1
            sid = coordinators[0].instruct(
                SYSTEM,
                created.commitment_id,
                world.legs(BOND, PRICE, buyer_stellar=buyer),
                commit_deadline=world.clock.now() + timedelta(seconds=300),
            )
            ids.append(sid)
            verified_at[sid] = approved
        time.sleep(0.05)
    window_s = time.monotonic() - started
    # no new work: let what is open finish (or give up), so latencies include the slow ones
    drain_until = time.monotonic() + drain_s
    while time.monotonic() < drain_until:
        live = open_ids()
        for sid in set(ids) - set(live) - set(settled_at):
            settled_at[sid] = time.monotonic()
        if not live:
            break
        time.sleep(0.1)
    elapsed = (max(settled_at.values()) - started) if settled_at else window_s
    for w in workers:
        w.stop()
    for t in threads:
        t.join(60)
    rows = engine.db.transaction(
        lambda uow: uow.execute(
            "SELECT s.id, s.status, x.chain, x.ledger_index, x.status FROM settlements s"
            " JOIN ledger_submissions x ON x.settlement_id = s.id WHERE s.id = ANY(:ids)",
            {"ids": ids},
        ).all()
    )
    statuses = dict(
        engine.db.transaction(
            lambda uow: uow.execute(
                "SELECT id, status FROM settlements WHERE id = ANY(:ids)", {"ids": ids}
            ).all()
        )
    )
    done_in_window = [sid for sid in settled_at if statuses.get(sid) == "SETTLED"]
    logging.getLogger("settlement.worker").removeHandler(failures)
    latencies = [settled_at[sid] - verified_at[sid] for sid in done_in_window]
    per_ledger: dict[str, Counter[int]] = {"xrpl": Counter(), "stellar": Counter()}
    signatures = resigned = 0
    for _sid, _status, chain, ledger_index, sub_status in rows:
        signatures += 1
        if sub_status == "EXPIRED" or sub_status == "REJECTED":
            resigned += 1
        if sub_status == "APPLIED" and ledger_index is not None:
            per_ledger[chain][ledger_index] += 1

    def tx_per_close(chain: str) -> tuple[float, int]:
        counts = per_ledger[chain]
        if not counts:
            return 0.0, 0
        span = max(counts) - min(counts) + 1  # closes in the window, empty ones included
        return sum(counts.values()) / span, max(counts.values())

    x_mean, x_max = tx_per_close("xrpl")
    s_mean, s_max = tx_per_close("stellar")
    return {
        "settled": len(done_in_window),
        "dvp_per_s": len(done_in_window) / elapsed,
        "p50_s": _p(latencies, 0.5),
        "p99_s": _p(latencies, 0.99),
        "mean_s": statistics.fmean(latencies) if latencies else float("nan"),
        "xrpl_tx_per_close": x_mean,
        "xrpl_max": x_max,
        "stellar_tx_per_close": s_mean,
        "stellar_max": s_max,
        "resigned_pct": 100.0 * resigned / signatures if signatures else 0.0,
        "unwound": sum(1 for s in statuses.values() if s == "UNWOUND"),
        "open": sum(1 for s in statuses.values() if s not in ("SETTLED", "UNWOUND")),
        "instructed": len(ids),
        "step_failures": failures.count,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--in-flight", type=int, default=4, help="open settlements per worker")
    parser.add_argument(
        "--drain", type=float, default=90.0, help="seconds to let open settlements finish"
    )
    parser.add_argument(
        "--channels", type=int, default=8, help="Stellar channel accounts (0: none)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="settlements a worker steps at once"
    )
    args = parser.parse_args()
    worker_counts = [int(k) for k in args.workers.split(",")]

    data_dir = Path(os.environ.get("SETTLEMENT_DATA_DIR", ".settlement")).resolve()
    server = embedded.ensure_running(data_dir)
    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")

    def fresh_database(k: int) -> str:
        """A migrated database per run, so no run inherits another's open settlements."""
        name = f"bench_dvp_{os.getpid()}_{k}"
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            c.execute(text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
        owner_url = server.url(name)
        migrate.upgrade(owner_url)
        seed(owner_url)
        return name

    print(
        f"{os.cpu_count()} cores; ledgers close every {CLOSE_INTERVAL_S:.0f} s on both local"
        f" networks; {args.seconds:.0f} s per run; {args.in_flight} settlements in flight per"
        f" worker; {args.channels} Stellar channel accounts; each worker steps"
        f" {args.concurrency} settlement(s) at once; workers are threads of this process,"
        " which also runs both networks\n"
    )
    header = (
        f"{'K':>3} {'settled':>8} {'DVP/s':>7} {'VERIFIED->SETTLED p50/p99 s':>28}"
        f" {'XRPL tx/close mean/max':>23} {'Stellar tx/close mean/max':>26}"
        f" {'re-signed %':>11} {'peak RSS MiB':>13}"
    )
    print(header)
    print("-" * len(header))
    for k in worker_counts:
        name = fresh_database(k)
        owner_url = server.url(name)
        world = start_local_world(
            bond_units=Decimal(1_000_000),
            usdc=Decimal(100_000_000),
            xrpl_close_interval_s=CLOSE_INTERVAL_S,
            stellar_close_interval_s=CLOSE_INTERVAL_S,
            extra_buyers=7,
            stellar_channels=args.channels,
        )
        engine = bootstrap.build(
            load_settings(database_url=owner_url, pool_size=10),
            clock=world.clock,
            urls=DatabaseUrls(owner=owner_url, app=app_url_for(owner_url)),
        )
        try:
            r = run(world, engine, k, args.seconds, args.in_flight, args.drain, args.concurrency)
        finally:
            engine.close()
            world.close()
        print(
            f"{k:>3} {r['settled']:>8.0f} {r['dvp_per_s']:>7.2f}"
            f" {r['p50_s']:>14.2f}/{r['p99_s']:<13.2f}"
            f" {r['xrpl_tx_per_close']:>15.2f}/{r['xrpl_max']:<7.0f}"
            f" {r['stellar_tx_per_close']:>18.2f}/{r['stellar_max']:<7.0f}"
            f" {r['resigned_pct']:>11.1f} {r['rss_mib']:>13.0f}",
            flush=True,
        )
        print(
            f"    instructed {r['instructed']:.0f}, unwound {r['unwound']:.0f}, still open"
            f" {r['open']:.0f}; steps that failed (each waits out a lease):"
            f" {r['step_failures']:.0f}"
        )
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


if __name__ == "__main__":
    main()
