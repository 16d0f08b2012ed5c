"""Commitment transitions per second against the embedded PostgreSQL, next to pgbench.

For K = 1, 4, 16 concurrent workers (processes, one connection each) every worker runs
full non-DVP lifecycles for a fixed time:

    create -> submit -> approve -> lock -> settle           (settled path, 5 writes)
    create -> submit -> request_info -> withdraw            (sent-back path, 4 writes)

Every write is one state change with its history row, audit entry and idempotency
record, i.e. one call of the service. All workers are allocators of one party in one
currency, so at K=16 sixteen clients of one party submit at once: the case the party's
rolling 24 h limit and the currency's open total are read (and, since migration 0015,
counted) for on every submit. The database of a run is kept across the K steps, so
the later steps submit against the commitments of the earlier ones. In the same run,
on the same server, ``pgbench -b tpcb-like`` runs at the same client counts, and the
ratio engine/pgbench is printed. Figures, not a pass/fail test: the machine is shared
and noisy.

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
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

from sqlalchemy import create_engine, text

from ledger import embedded, migrate
from ledger.database import app_url_for
from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.domain.values import Actor, Role
from settlement.settings import load_settings

ALLOCATOR = Actor("bench-allocator", Role.ALLOCATOR, party="bench-party")
OFFICER = Actor("bench-officer", Role.COMPLIANCE_OFFICER)
ADMIN = Actor("bench-admin", Role.ADMIN)
SYSTEM = Actor("system", Role.SYSTEM)
SAMPLES = Path(__file__).resolve().parent.parent / "config" / "sanctions"


def build(owner_url: str) -> bootstrap.Services:
    urls = DatabaseUrls(owner=owner_url, app=app_url_for(owner_url))
    return bootstrap.build(load_settings(database_url=owner_url, pool_size=2), urls=urls)


def seed(owner_url: str) -> None:
    """What submit and approve need: a KYC'd party, an officer, the sample lists."""
    engine = build(owner_url)
    compliance = engine.compliance
    compliance.register_officer(ADMIN, OFFICER.id, display_name="Bench Officer")
    compliance.create_kyc(
        OFFICER,
        party="bench-party",
        legal_name="Bench Allocator Capital",
        jurisdiction="GB",
        risk_rating="low",
        accredited=True,
        status="verified",
        expires_on=date(2099, 12, 31),
    )
    compliance.load_sanctions(
        ADMIN, SAMPLES / "sample_sdn.csv", aliases_file=SAMPLES / "sample_alt.csv"
    )
    engine.close()


def worker(owner_url: str, seconds: float, start_at: float, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        queue.put(lifecycles(owner_url, seconds, start_at))
    except BaseException as exc:  # noqa: BLE001 - the parent reports it and stops
        queue.put(exc)


def lifecycles(owner_url: str, seconds: float, start_at: float) -> tuple[dict[str, list[int]], int]:
    """Run lifecycles until ``seconds`` pass; return latencies (us) by event, peak RSS (KiB)."""
    engine = build(owner_url)
    service = engine.commitments
    latencies_us: dict[str, list[int]] = {}
    prefix = uuid.uuid4().hex[:8]
    n = 0

    def timed(event: str, call, *args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter_ns()
        result = call(*args, **kwargs)
        latencies_us.setdefault(event, []).append((time.perf_counter_ns() - t0) // 1000)
        return result

    while time.time() < start_at:
        time.sleep(0.001)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        n += 1
        key = f"{prefix}-{n}"
        created = timed(
            "create",
            service.create,
            ALLOCATOR,
            deal_ref="BENCH",
            amount="1000.25",
            currency="USD",
            idempotency_key=f"{key}-c",
        )
        cid = created.commitment_id
        timed(
            "submit", service.submit, ALLOCATOR, cid, expected_version=1, idempotency_key=f"{key}-s"
        )
        if n % 2:
            timed(
                "approve",
                service.approve,
                OFFICER,
                cid,
                expected_version=2,
                idempotency_key=f"{key}-a",
            )
            timed("lock", service.lock, SYSTEM, cid, expected_version=3, idempotency_key=f"{key}-l")
            timed(
                "settle",
                service.settle,
                SYSTEM,
                cid,
                expected_version=4,
                idempotency_key=f"{key}-t",
            )
        else:
            timed(
                "request_info",
                service.request_info,
                OFFICER,
                cid,
                expected_version=2,
                reason="need more",
                idempotency_key=f"{key}-r",
            )
            timed(
                "withdraw",
                service.withdraw,
                ALLOCATOR,
                cid,
                expected_version=3,
                idempotency_key=f"{key}-w",
            )
    engine.close()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return latencies_us, rss_kib


def _p(values: list[int], q: float) -> float:
    return values[max(0, int(len(values) * q) - 1)] / 1000


def run_engine(owner_url: str, clients: int, seconds: float) -> dict[str, float]:
    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 2.0
    procs = [
        ctx.Process(target=worker, args=(owner_url, seconds, start_at, queue))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    for result in results:
        if isinstance(result, BaseException):
            raise RuntimeError("a benchmark worker failed") from result
    by_event: dict[str, list[int]] = {}
    for lat, _ in results:
        for event, values in lat.items():
            by_event.setdefault(event, []).extend(values)
    every = sorted(v for values in by_event.values() for v in values)
    others = sorted(v for e, values in by_event.items() if e != "submit" for v in values)
    submits = sorted(by_event.get("submit", []))
    return {
        "tps": len(every) / seconds,
        "p50_ms": _p(every, 0.5),
        "p99_ms": _p(every, 0.99),
        "plain_p50_ms": _p(others, 0.5),
        "plain_p99_ms": _p(others, 0.99),
        "submit_p50_ms": _p(submits, 0.5),
        "submit_p99_ms": _p(submits, 0.99),
        "rss_mib": max(rss for _, rss in results) / 1024,
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
    seed(owner_url)
    scale = max(clients)
    pgbench(server, "-i", "-q", "-s", str(scale), pgbench_db)

    print(
        f"PostgreSQL {server.pgdata.name} via {server.socket_dir}; {os.cpu_count()} cores; "
        f"server settings {settings}"
    )
    print(f"{args.seconds:.0f} s per run; pgbench scale {scale}; engine workers are processes\n")
    header = (
        f"{'K':>3} {'engine tx/s':>12} {'p50/p99 ms':>12} {'no-submit p50/p99':>18}"
        f" {'submit p50/p99':>15} {'RSS MiB':>8} {'pgbench tps':>12} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for k in clients:
        e = run_engine(owner_url, k, args.seconds)
        pgbench_tps = run_pgbench(server, pgbench_db, k, args.seconds)
        print(
            f"{k:>3} {e['tps']:>12.0f} {e['p50_ms']:>5.2f}/{e['p99_ms']:<6.2f}"
            f" {e['plain_p50_ms']:>11.2f}/{e['plain_p99_ms']:<6.2f}"
            f" {e['submit_p50_ms']:>8.2f}/{e['submit_p99_ms']:<6.2f} {e['rss_mib']:>8.1f}"
            f" {pgbench_tps:>12.0f} {e['tps'] / pgbench_tps:>6.2f}",
            flush=True,
        )
    print(
        "\nengine tx/s counts every write (create or transition), each one database"
        " transaction with history, audit entry and idempotency record; submit also"
        " screens both parties against the sample sanctions list (one unit of work)."
    )
    with admin.connect() as c:
        for name in (engine_db, pgbench_db):
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    sys.exit(0)


if __name__ == "__main__":
    main()
