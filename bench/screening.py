"""Sanctions screening throughput, and the latency of a submit that screens.

1. Names screened per second against a generated 20,000-entry list with two aliases
   per entry (60,000 names), at the configured match threshold.
2. p50 / p99 latency of one submit (DRAFT -> PENDING_REVIEW with screening of both
   parties, the screening stored, the audit entry written) against the embedded
   PostgreSQL with that list loaded through the real OpenSanctions loader.

Figures, not a pass/fail test. Target (issue #6): submit with screening p99 < 50 ms on
a 2-core machine. Seeded: the same run generates the same list and names.

    python bench/screening.py [--entries 20000] [--names 2000] [--submits 500] [--seed 6]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import string
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from compliance.sanctions import ListRef, SanctionsEntry, SanctionsIndex
from ledger import embedded, migrate
from ledger.database import app_url_for
from settlement import bootstrap
from settlement.domain.values import Actor, Role
from settlement.settings import load_settings

ADMIN = Actor("bench-admin", Role.ADMIN)
OFFICER = Actor("bench-officer", Role.COMPLIANCE_OFFICER)
ALLOCATOR = Actor("bench-allocator", Role.ALLOCATOR, party="bench-allocator-party")


def word(rnd: random.Random) -> str:
    return "".join(rnd.choice(string.ascii_lowercase) for _ in range(rnd.randint(4, 10))).title()


def generated_entries(rnd: random.Random, n: int) -> list[SanctionsEntry]:
    return [
        SanctionsEntry(
            entry_id=f"gen-{i:06d}",
            kind=rnd.choice(("Person", "Company")),
            name=" ".join(word(rnd) for _ in range(rnd.randint(2, 4))),
            aliases=(f"{word(rnd)} {word(rnd)}", f"{word(rnd)} {word(rnd)} {word(rnd)}"),
            identifiers=(f"GEN-{rnd.randrange(10**9):09d}",),
        )
        for i in range(n)
    ]


def names_per_second(entries: list[SanctionsEntry], rnd: random.Random, n: int, th: int) -> None:
    t0 = time.perf_counter()
    index = SanctionsIndex.build([(ListRef(1, "generated", "0" * 64), entries)])
    build_s = time.perf_counter() - t0
    queries = [" ".join(word(rnd) for _ in range(rnd.randint(2, 3))) for _ in range(n)]
    # a tenth are near-copies of listed names, so some work is spent on hits
    for i in range(0, n, 10):
        queries[i] = entries[rnd.randrange(len(entries))].name.upper()
    t0 = time.perf_counter()
    hits = sum(bool(index.match_names([q], th)) for q in queries)
    elapsed = time.perf_counter() - t0
    print(
        f"index: {len(entries)} entries, {index.name_count} names, built in {build_s * 1000:.0f} ms"
    )
    print(
        f"names screened per second: {n / elapsed:,.0f}  ({elapsed / n * 1000:.2f} ms per name,"
        f" threshold {th}, {hits} of {n} hit)"
    )


def write_opensanctions(entries: list[SanctionsEntry], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "schema", "name", "aliases", "identifiers", "sanctions"])
        for e in entries:
            writer.writerow(
                [e.entry_id, e.kind, e.name, ";".join(e.aliases), ";".join(e.identifiers), "gen"]
            )


def submit_latency(entries: list[SanctionsEntry], submits: int) -> None:
    data_dir = Path(os.environ.get("SETTLEMENT_DATA_DIR", ".settlement")).resolve()
    server = embedded.ensure_running(data_dir)
    name = f"bench_screening_{os.getpid()}"
    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
    try:
        owner = server.url(name)
        migrate.upgrade(owner)
        settings = load_settings(database_url=owner)
        engine = bootstrap.build(
            settings, urls=bootstrap.DatabaseUrls(owner=owner, app=app_url_for(owner))
        )
        try:
            run_submits(engine, entries, submits)
        finally:
            engine.close()
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_submits(engine: bootstrap.Services, entries: list[SanctionsEntry], submits: int) -> None:
    compliance, service = engine.compliance, engine.commitments
    compliance.register_officer(ADMIN, OFFICER.id, display_name="bench")
    for party, legal in (
        (ALLOCATOR.party, "Northwind Bench Capital"),
        ("bench-counterparty", "Meridian Bench Trust"),
    ):
        compliance.create_kyc(
            OFFICER,
            party=party,
            legal_name=legal,
            aliases=["Bench Alias Holdings"],
            jurisdiction="GB",
            risk_rating="low",
            accredited=True,
            status="verified",
            expires_on=date(2099, 1, 1),
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "targets.simple.csv"
        write_opensanctions(entries, path)
        t0 = time.perf_counter()
        compliance.load_sanctions(ADMIN, path)
        print(f"list loaded into PostgreSQL in {time.perf_counter() - t0:.1f} s")
    ids = [
        service.create(
            ALLOCATOR,
            deal_ref="BENCH",
            amount="1000.00",
            currency="USD",
            counterparty="bench-counterparty",
        ).commitment_id
        for _ in range(submits + 1)
    ]
    service.submit(ALLOCATOR, ids.pop(), expected_version=1)  # warm-up: index build, prepares
    latencies_ms: list[float] = []
    for cid in ids:
        t0 = time.perf_counter_ns()
        service.submit(ALLOCATOR, cid, expected_version=1)
        latencies_ms.append((time.perf_counter_ns() - t0) / 1e6)
    latencies_ms.sort()
    p99 = latencies_ms[int(len(latencies_ms) * 0.99) - 1]
    print(
        f"submit with screening ({submits} submits, 2 parties x 2 names, 1 client): "
        f"p50 {statistics.median(latencies_ms):.1f} ms, p99 {p99:.1f} ms, "
        f"max {latencies_ms[-1]:.1f} ms  (target p99 < 50 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--names", type=int, default=2_000)
    parser.add_argument("--submits", type=int, default=500)
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    threshold = load_settings().sanctions_match_threshold
    print(f"seed {args.seed}; {os.cpu_count()} cores; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    rnd = random.Random(args.seed)
    entries = generated_entries(rnd, args.entries)
    names_per_second(entries, rnd, args.names, threshold)
    submit_latency(entries, args.submits)


if __name__ == "__main__":
    main()
