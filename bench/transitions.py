"""Commitment transitions per second against the embedded PostgreSQL, next to pgbench.

For K = 1, 4, 16 concurrent workers (processes, one connection each) every worker runs
full non-DVP lifecycles for a fixed time:

    create -> submit -> approve -> lock -> settle           (settled path, 5 writes)
    create -> submit -> request_info -> withdraw            (sent-back path, 4 writes)

Every write is one state change with its history row, audit entry and idempotency
record, i.e. one call of the service. In the same run, on the same server,
``pgbench -b tpcb-like`` runs at the same client counts, and the ratio engine/pgbench is
printed. Figures, not a pass/fail test: the machine is shared and noisy.

Where the time goes (measured while tuning): inside the database a transition costs
about 130 us plus 9 us for the deferred audit check at COMMIT; each write is one round
trip. With one client the engine outruns pgbench (one round trip against pgbench's
seven). With several, each write spends most of its time waiting for its own durable
WAL flush; with synchronous_commit=off the same run at K=4 reaches about 0.8 of
pgbench. A settlement engine keeps durable commits, so that gap is left as it is.

    python bench/transitions.py [--seconds 10] [--clients 1,4,16]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from ledger import embedded, migrate
from ledger.database import Database, app_url_for
from settlement.clock import SystemClock
from settlement.domain import Actor, Role
from settlement.service import CommitmentService

ALLOCATOR = Actor("bench-allocator", Role.ALLOCATOR, party="bench-party")
OFFICER = Actor("bench-officer", Role.COMPLIANCE_OFFICER)
SYSTEM = Actor("system", Role.SYSTEM)


def worker(app_url: str, seconds: float, start_at: float, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        queue.put(lifecycles(app_url, seconds, start_at))
    except BaseException as exc:  # noqa: BLE001 - the parent reports it and stops
        queue.put(exc)


def lifecycles(app_url: str, seconds: float, start_at: float) -> tuple[list[int], int]:
    """Run lifecycles until ``seconds`` pass; return latencies (us) and peak RSS (KiB)."""
    db = Database(app_url, pool_size=1)
    service = CommitmentService(db, SystemClock())
    latencies_us: list[int] = []
    prefix = uuid.uuid4().hex[:8]
    n = 0

    def timed(call, *args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter_ns()
        result = call(*args, **kwargs)
        latencies_us.append((time.perf_counter_ns() - t0) // 1000)
        return result

    while time.time() < start_at:
        time.sleep(0.001)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        n += 1
        key = f"{prefix}-{n}"
        created = timed(
            service.create,
            ALLOCATOR,
            deal_ref="BENCH",
            amount="1000.25",
            currency="USD",
            idempotency_key=f"{key}-c",
        )
        cid = created.commitment_id
        timed(service.submit, ALLOCATOR, cid, expected_version=1, idempotency_key=f"{key}-s")
        if n % 2:
            timed(service.approve, OFFICER, cid, expected_version=2, idempotency_key=f"{key}-a")
            timed(service.lock, SYSTEM, cid, expected_version=3, idempotency_key=f"{key}-l")
            timed(service.settle, SYSTEM, cid, expected_version=4, idempotency_key=f"{key}-t")
        else:
            timed(
                service.request_info,
                OFFICER,
                cid,
                expected_version=2,
                reason="need more",
                idempotency_key=f"{key}-r",
            )
            timed(service.withdraw, ALLOCATOR, cid, expected_version=3, idempotency_key=f"{key}-w")
    db.dispose()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return latencies_us, rss_kib


def run_engine(app_url: str, clients: int, seconds: float) -> dict[str, float]:
    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 1.0
    procs = [
        ctx.Process(target=worker, args=(app_url, seconds, start_at, queue)) for _ in range(clients)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for result in results:
        if isinstance(result, BaseException):
            raise RuntimeError("a benchmark worker failed") from result
    for p in procs:
        p.join()
    latencies = sorted(us for lat, _ in results for us in lat)
    return {
        "tps": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) / 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] / 1000,
        "rss_mib": max(rss for _, rss in results) / 1024,
        "writes": len(latencies),
    }


def pgbench(server: embedded.EmbeddedServer, *args: str) -> str:
    """Run the pgbench bundled with the embedded server against it; return its stdout."""
    connection = ["-h", str(server.socket_dir), "-p", str(server.port), "-U", "postgres"]
    command = [str(server.bin_dir / "pgbench"), *connection, *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def run_pgbench(
    server: embedded.EmbeddedServer, database: str, clients: int, seconds: float
) -> float:
    out = pgbench(
        server,
        "-n",
        "-b",
        "tpcb-like",
        "-c",
        str(clients),
        "-j",
        str(min(clients, 2)),
        "-T",
        str(int(seconds)),
        database,
    )
    match = re.search(r"tps = ([0-9.]+)", out)
    assert match, out
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,4,16")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]

    data_dir = Path(os.environ.get("SETTLEMENT_DATA_DIR", ".settlement")).resolve()
    server = embedded.ensure_running(data_dir)
    # databases of this run only, so a concurrent benchmark cannot migrate them under us
    engine_db, pgbench_db = f"bench_engine_{os.getpid()}", f"bench_pgbench_{os.getpid()}"
    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        for name in (engine_db, pgbench_db):
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            c.execute(text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
        settings = dict(
            c.execute(
                text(
                    "SELECT name, setting FROM pg_settings WHERE name IN"
                    " ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections')"
                )
            ).all()
        )
    admin.dispose()
    owner_url = server.url(engine_db)
    migrate.upgrade(owner_url)
    app_url = app_url_for(owner_url)
    scale = max(clients)
    pgbench(server, "-i", "-q", "-s", str(scale), pgbench_db)

    print(
        f"PostgreSQL {server.pgdata.name} via {server.socket_dir}; {os.cpu_count()} cores; "
        f"server settings {settings}"
    )
    print(f"{args.seconds:.0f} s per run; pgbench scale {scale}; engine workers are processes\n")
    header = (
        f"{'K':>3} {'engine tx/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'worker RSS MiB':>15}"
        f" {'pgbench tps':>12} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for k in clients:
        engine = run_engine(app_url, k, args.seconds)
        pgbench_tps = run_pgbench(server, pgbench_db, k, args.seconds)
        print(
            f"{k:>3} {engine['tps']:>12.0f} {engine['p50_ms']:>8.2f} {engine['p99_ms']:>8.2f}"
            f" {engine['rss_mib']:>15.1f} {pgbench_tps:>12.0f} {engine['tps'] / pgbench_tps:>6.2f}",
            flush=True,
        )
    print(
        "\nengine tx/s counts every write (create or transition), each one database"
        " transaction with history, audit entry and idempotency record."
    )
    with admin.connect() as c:
        for name in (engine_db, pgbench_db):
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    sys.exit(0)


if __name__ == "__main__":
    main()
