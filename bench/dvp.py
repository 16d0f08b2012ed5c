"""End-to-end two-leg DVP throughput over the local XRPL and Stellar networks.

Figures, not a pass/fail test. Both local networks run as processes of their own
(``settle node xrpl|stellar``) with a 1 s ledger close interval (the real networks
close every 3-5 s, so this is optimistic), against the embedded PostgreSQL. For each
ticket count T and worker count K, K ``settle worker --concurrency C`` processes run
as an operator runs them (settings from the environment, the engine's keys in an
encrypted keystore file, the XRPL signers' tickets kept stocked by the workers), all on
one database; ``--threads`` runs them as threads of this process instead. A closed
loop keeps ``--in-flight`` settlements per worker open: as one closes, feeder threads
in this process create, submit, approve and instruct the next commitment (the
instruction checks every leg against both ledgers). Each settlement is the bond on
XRPL against USDC on Stellar (lock both, decide, commit both: four ledger
transactions).

Printed per (T, K): settled DVPs per second (settled / time from the start to the last
settlement; new work stops after ``--seconds`` and what is open gets ``--drain`` more
seconds to finish), p50/p99 from VERIFIED (approval) to SETTLED, ledger transactions per
close on each chain (mean and max), the share of signatures that had to be made again (a
Sequence taken by a concurrent transaction from the same account expires and is signed
anew), peak RSS of a worker and of each network's process, and the CPU time each part
spent per settled DVP while feeding and settling: this process (the feeders), the
workers, each network and PostgreSQL. On two shared cores their sum bounds the rate:
2 cores / (CPU s per DVP) is the most the machine can settle, whatever the ledgers'
closes allow.

What limits it otherwise: every XRPL lock is signed by the one seller account and every
XRPL commit by the one agent account. Without Tickets (T = 0) an account's transactions
need consecutive sequence numbers, so concurrent workers collide and the loser waits out
its LastLedgerSequence (20 ledgers) before signing again; with T tickets each
transaction takes a ticket of its own. Stellar transactions take their sequence from one
of ``--channels`` channel accounts and go through Horizon's asynchronous submission, so
no step waits for a close; a waiting settlement is looked at again just after the next
close of its ledger.

    python bench/dvp.py [--seconds 20] [--workers 1,4] [--in-flight 32]
                        [--channels 32] [--concurrency 8] [--tickets 0,200]
                        [--feeders 8] [--threads]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psutil
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transitions import ALLOCATOR, OFFICER, SYSTEM, seed

from adapters.chain import Chain, ChainName
from adapters.resilience import ResiliencePolicy
from ledger import embedded, migrate
from ledger.database import app_url_for
from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.demo.world import LocalWorld, NetworkUrls
from settlement.dvp import DvpPolicy
from settlement.dvp.worker import WorkerPolicy
from settlement.sealing import Sealer
from settlement.settings import load_settings

CLOSE_INTERVAL_S = 1.0
#: threads approving and instructing new settlements
FEEDERS = 8
PRICE = Decimal(100)
BOND = Decimal(1)


def own_chains(world: LocalWorld, policy: ResiliencePolicy) -> dict[ChainName, Chain]:
    """A worker's own adapters, on the world's accounts, tickets and channel accounts."""
    return bootstrap.chains_on(
        world.xrpl.url,
        world.stellar.url,
        world.stellar.passphrase,
        xrpl_agent=world.agent_xrpl.classic_address,
        stellar_agent=world.agent_stellar.public_key,
        signer=world.keystore,
        guards=bootstrap.chain_guards(policy),
        stellar_channels=[c.public_key for c in world.channels_stellar],
    )


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
    engine: bootstrap.Services,
    workers_n: int,
    seconds: float,
    in_flight: int,
    drain_s: float,
    concurrency: int = 1,
    cpu: CpuMeter | None = None,
    processes: WorkerProcesses | None = None,
    feeders: int = FEEDERS,
) -> dict[str, Any]:
    sealing_key = processes.sealing_key if processes is not None else Fernet.generate_key()
    sealer = Sealer(sealing_key)
    policy = ResiliencePolicy()
    dvp_policy = DvpPolicy(safety_margin_s=120, min_window_s=5, retry_after_s=0.1)
    coordinators = [
        # the feeders' accounts are registered to nobody: no owner check
        bootstrap.build_coordinator(
            engine,
            own_chains(world, policy),
            clock=world.clock,
            policy=dvp_policy,
            sealed_with=sealer,
            check_owners=False,
        )
        for _ in range(1 if processes is not None else workers_n)
    ]
    workers = (
        []
        if processes is not None
        else [
            bootstrap.build_stepping_worker(
                engine,
                c,
                clock=world.clock,
                name=f"bench-{workers_n}-{n}",
                policy=WorkerPolicy(
                    lease_s=30, batch=in_flight, idle_s=0.02, concurrency=concurrency
                ),
            )
            for n, c in enumerate(coordinators)
        ]
    )
    buyers = [world.buyer_stellar, *world.extra_buyers]
    service = engine.commitments
    target_open = in_flight * workers_n
    ids: list[UUID] = []
    verified_at: dict[UUID, datetime] = {}
    state = threading.Condition()
    live = 0  # instructed and not yet closed, or being made
    made = 0
    stop_feeding = threading.Event()

    def open_ids() -> list[UUID]:
        with state:
            known = list(ids)
        if not known:
            return []
        return engine.db.transaction(
            lambda uow: [
                row[0]
                for row in uow.execute(
                    "SELECT id FROM settlements WHERE id = ANY(:ids)"
                    " AND status IN ('LOCKING', 'COMMITTING', 'UNWINDING')",
                    {"ids": known},
                ).all()
            ]
        )

    def feed() -> None:
        """One of several feeders (approving and instructing is ledger-bound: each
        instruction checks its legs against both ledgers), so the load generator keeps
        ``target_open`` settlements open however fast the workers close them."""
        nonlocal live, made
        while not stop_feeding.is_set():
            with state:
                while live >= target_open and not stop_feeding.is_set():
                    state.wait(0.1)
                if stop_feeding.is_set():
                    return
                live += 1
                n = made
                made += 1
            created = service.create(
                ALLOCATOR, deal_ref=f"BENCH-DVP-{n}", amount=f"{PRICE:f}", currency="USDC"
            )
            service.submit(ALLOCATOR, created.commitment_id)
            service.approve(OFFICER, created.commitment_id)
            approved = world.clock.now()
            sid = coordinators[0].instruct(
                SYSTEM,
                created.commitment_id,
                world.legs(BOND, PRICE, buyer_stellar=buyers[n % len(buyers)]),
                commit_deadline=world.clock.now() + timedelta(seconds=300),
            )
            with state:
                ids.append(sid)
                verified_at[sid] = approved

    failures = _Count()
    worker_log = logging.getLogger("settlement.dvp.worker")
    worker_log.addHandler(failures)
    worker_log.propagate = False  # counted, not printed
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    feeding = [threading.Thread(target=feed, daemon=True) for _ in range(feeders)]
    if processes is not None:
        processes.start(workers_n, concurrency)
    started = time.monotonic()
    started_at = world.clock.now()
    cpu_before = cpu.read() if cpu is not None else {}
    for t in (*threads, *feeding):
        t.start()
    while time.monotonic() - started < seconds:
        still_open = len(open_ids())
        with state:
            live = still_open + (made - len(ids))  # those being made count as open
            state.notify_all()
        time.sleep(0.1)
    stop_feeding.set()
    for t in feeding:
        t.join(60)
    # no new work: let what is open finish (or give up), so latencies include the slow ones
    drain_until = time.monotonic() + drain_s
    while time.monotonic() < drain_until and open_ids():
        time.sleep(0.1)
    cpu_used = cpu.since(cpu_before) if cpu is not None else {}
    for w in workers:
        w.stop()
    for t in threads:
        t.join(60)
    if processes is not None:
        processes.stop()
    rows = engine.db.transaction(
        lambda uow: uow.execute(
            "SELECT s.id, s.status, x.chain, x.ledger_index, x.status, x.purpose,"
            " x.result_code FROM settlements s"
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
    closed_at = dict(
        engine.db.transaction(
            lambda uow: uow.execute(
                "SELECT id, updated_at FROM settlements WHERE id = ANY(:ids)"
                " AND status = 'SETTLED'",
                {"ids": ids},
            ).all()
        )
    )
    logging.getLogger("settlement.dvp.worker").removeHandler(failures)
    # engine-clock times: approval as the feeder saw it, close as the database recorded it
    latencies = [(closed_at[sid] - verified_at[sid]).total_seconds() for sid in closed_at]
    elapsed = (
        (max(closed_at.values()) - started_at).total_seconds()
        if closed_at
        else time.monotonic() - started
    )
    per_ledger: dict[str, Counter[int]] = {"xrpl": Counter(), "stellar": Counter()}
    signatures = resigned = 0
    causes: Counter[str] = Counter()
    for _sid, _status, chain, ledger_index, sub_status, purpose, code in rows:
        signatures += 1
        if sub_status == "EXPIRED" or sub_status == "REJECTED":
            resigned += 1
            causes[f"{chain} {purpose} {code or sub_status}"] += 1
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
        "settled": len(closed_at),
        "dvp_per_s": len(closed_at) / elapsed,
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
        # a worker process logs its own failed steps; only threads' are counted here
        "step_failures": failures.count if processes is None else None,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "causes": ", ".join(f"{k} x{n}" for k, n in causes.most_common()),
        "cpu_ms_per_dvp": {
            name: 1000 * used / len(closed_at) if closed_at else float("nan")
            for name, used in cpu_used.items()
        },
    }


class CpuMeter:
    """CPU seconds (user + system) of this process ("bench": the feeders, and the
    workers when they are threads), of the worker processes, of each network's process
    and of PostgreSQL (every process of the server), so the figures can say where a
    DVP's CPU goes on the two shared cores."""

    def __init__(self, nodes: NodeProcesses, workers: WorkerProcesses | None) -> None:
        self._named = {
            "bench": psutil.Process(),
            "xrpl": psutil.Process(nodes.procs[0].pid),
            "stellar": psutil.Process(nodes.procs[1].pid),
        }
        self._workers = workers

    def read(self) -> dict[str, float]:
        used = {name: _cpu_s(p) for name, p in self._named.items()}
        if self._workers is not None:
            used["workers"] = sum(_cpu_s(p) for p in self._workers.processes())
        used["postgres"] = sum(_cpu_s(p) for p in self._postgres())
        return used

    def since(self, before: dict[str, float]) -> dict[str, float]:
        now = self.read()
        return {name: now[name] - before.get(name, 0.0) for name in now}

    def _postgres(self) -> list[psutil.Process]:
        # backends come and go; a backend that ended during the run is not counted, so
        # the PostgreSQL figure is a floor
        found = []
        for p in psutil.process_iter(["name", "cmdline"]):
            try:
                if p.info["name"] == "postgres" or "postgres:" in " ".join(p.info["cmdline"] or []):
                    found.append(p)
            except psutil.Error:
                continue
        return found


def _cpu_s(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


class WorkerProcesses:
    """``settle worker --concurrency C`` processes, as an operator runs them: settings
    from the environment, the engine's keys in an encrypted keystore file, the sealing
    key shared with this process (which seals the hash-lock secrets when it instructs).
    They judge time by the system clock, as this process's world does against networks
    running elsewhere."""

    def __init__(self, world: LocalWorld, owner_url: str, workdir: Path, tickets: int) -> None:
        self.sealing_key = Fernet.generate_key()
        keystore_key = Fernet.generate_key()
        keystore = bootstrap.keystore_at(workdir / "keystore.fernet", keystore_key)
        for wallet in (world.seller_xrpl, world.agent_xrpl):
            assert wallet.seed is not None
            keystore.add_xrpl(wallet.seed)
        signers = (world.buyer_stellar, *world.extra_buyers, world.agent_stellar)
        for keypair in (*signers, *world.channels_stellar):
            keystore.add_stellar(keypair.secret)
        self._env = os.environ | {
            "SETTLEMENT_NETWORK": "local",
            "SETTLEMENT_DATABASE_URL": owner_url,
            "SETTLEMENT_DATA_DIR": str(workdir),
            "SETTLEMENT_KEYSTORE_FILE": str(workdir / "keystore.fernet"),
            "SETTLEMENT_KEYSTORE_KEY": keystore_key.decode(),
            "SETTLEMENT_SEALING_KEY": self.sealing_key.decode(),
            "SETTLEMENT_XRPL_URL": world.xrpl.url,
            "SETTLEMENT_HORIZON_URL": world.stellar.url,
            "SETTLEMENT_XRPL_AGENT": world.agent_xrpl.classic_address,
            "SETTLEMENT_STELLAR_AGENT": world.agent_stellar.public_key,
            "SETTLEMENT_STELLAR_CHANNELS": ",".join(c.public_key for c in world.channels_stellar),
            # each lock spends one of the seller's tickets, each commit one of the
            # agent's: the workers keep both stocked, as an operator would have them
            "SETTLEMENT_XRPL_TICKET_TARGET": str(tickets),
            "SETTLEMENT_XRPL_TICKET_ACCOUNTS": ",".join(
                (world.seller_xrpl.classic_address, world.agent_xrpl.classic_address)
            ),
            "SETTLEMENT_LOG_LEVEL": "WARNING",
        }
        self._procs: list[subprocess.Popen[bytes]] = []
        #: the largest peak RSS of one worker process
        self.peak_rss_mib = 0.0

    def start(self, count: int, concurrency: int) -> None:
        command = [
            sys.executable,
            "-c",
            "from settlement.cli.main import app; app()",
            "worker",
            "--concurrency",
            str(concurrency),
            "--lease",
            "30",
        ]
        self._procs = [
            subprocess.Popen(command, env=self._env, stdout=subprocess.DEVNULL)
            for _ in range(count)
        ]
        time.sleep(0.5)
        failed = [p.returncode for p in self._procs if p.poll() is not None]
        if failed:
            self.stop()
            raise RuntimeError(f"settle worker exited at start: {failed}")

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in self._procs:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(proc.pid))
        return found

    def stop(self) -> None:
        for proc in self._procs:
            with contextlib.suppress(OSError, StopIteration):
                status = Path(f"/proc/{proc.pid}/status").read_text()
                kib = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM:"))
                self.peak_rss_mib = max(self.peak_rss_mib, kib / 1024)
        for proc in self._procs:
            proc.terminate()  # settle worker stops at its next step on SIGTERM
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._procs = []


class NodeProcesses:
    """``settle node xrpl`` and ``settle node stellar`` as processes of their own, each
    closing a ledger every ``CLOSE_INTERVAL_S``; their peak RSS is read from /proc."""

    def __init__(self) -> None:
        self.xrpl_port, self.stellar_port = _free_port(), _free_port()
        self.procs = [
            self._spawn("xrpl", self.xrpl_port),
            self._spawn("stellar", self.stellar_port),
        ]
        self.urls = NetworkUrls(
            f"http://127.0.0.1:{self.xrpl_port}", f"http://127.0.0.1:{self.stellar_port}"
        )
        deadline = time.monotonic() + 60
        for url, probe in ((self.urls.xrpl_url, _xrpl_up), (self.urls.horizon_url, _horizon_up)):
            while not probe(url):
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                    self.stop()
                    raise RuntimeError(f"local network at {url} did not start")
                time.sleep(0.1)

    @staticmethod
    def _spawn(kind: str, port: int) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-c",
            "from settlement.cli.main import app; app()",
            "node",
            kind,
            "--port",
            str(port),
            "--close-interval",
            str(CLOSE_INTERVAL_S),
        ]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def peak_rss_mib(self) -> list[float]:
        peaks = []
        for proc in self.procs:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            kib = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM:"))
            peaks.append(kib / 1024)
        return peaks

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _xrpl_up(url: str) -> bool:
    try:
        answer = httpx.post(url, json={"method": "server_info", "params": [{}]}, timeout=2)
        return answer.status_code == 200
    except httpx.HTTPError:
        return False


def _horizon_up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--in-flight", type=int, default=32, help="open settlements per worker")
    parser.add_argument(
        "--drain", type=float, default=60.0, help="seconds to let open settlements finish"
    )
    parser.add_argument(
        "--channels", type=int, default=32, help="Stellar channel accounts (0: none)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="settlements a worker steps at once"
    )
    parser.add_argument(
        "--tickets",
        default="0,200",
        help="XRPL Tickets for the seller and the agent, one run per value (0: Sequence)",
    )
    parser.add_argument(
        "--threads",
        action="store_true",
        help="run the workers as threads of this process instead of `settle worker` processes",
    )
    parser.add_argument(
        "--feeders", type=int, default=FEEDERS, help="threads approving and instructing"
    )
    args = parser.parse_args()
    worker_counts = [int(k) for k in args.workers.split(",")]
    ticket_counts = [int(t) for t in args.tickets.split(",")]

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
        f" networks, each a process of its own; {args.seconds:.0f} s per run;"
        f" {args.in_flight} settlements in flight per worker; {args.channels} Stellar channel"
        f" accounts; each worker steps {args.concurrency} settlement(s) at once; workers are"
        + (" threads of this process" if args.threads else " `settle worker` processes")
        + f"; {args.feeders} feeder threads approve and instruct in this process."
        " T: XRPL Tickets for the seller and the agent (0: each signs on its own Sequence)\n"
    )
    header = (
        f"{'T':>4} {'K':>3} {'settled':>8} {'DVP/s':>7} {'VERIFIED->SETTLED p50/p99 s':>28}"
        f" {'XRPL tx/close mean/max':>23} {'Stellar tx/close mean/max':>26}"
        f" {'re-signed %':>11} {'peak RSS MiB worker/xrpl/stellar':>33}"
    )
    print(header)
    print("-" * len(header))
    nodes = NodeProcesses()
    try:
        for tickets in ticket_counts:
            for k in worker_counts:
                name = fresh_database(k)
                owner_url = server.url(name)
                world = bootstrap.local_world(
                    bond_units=Decimal(1_000_000),
                    usdc=Decimal(100_000_000),
                    extra_buyers=7,
                    stellar_channels=args.channels,
                    xrpl_tickets=tickets,
                    networks=nodes.urls,
                )
                # each stepping thread holds two connections (its advisory lock's and its
                # step's own); the pool may grow to three times its size
                pool_size = max(10, -(-(2 * k * args.concurrency + 8) // 3))
                engine = bootstrap.build(
                    load_settings(database_url=owner_url, pool_size=pool_size),
                    clock=world.clock,
                    urls=DatabaseUrls(owner=owner_url, app=app_url_for(owner_url)),
                )
                workdir = tempfile.TemporaryDirectory(prefix="bench-dvp-")
                processes = (
                    None
                    if args.threads
                    else WorkerProcesses(world, owner_url, Path(workdir.name), tickets)
                )
                try:
                    r = run(
                        world,
                        engine,
                        k,
                        args.seconds,
                        args.in_flight,
                        args.drain,
                        args.concurrency,
                        cpu=CpuMeter(nodes, processes),
                        processes=processes,
                        feeders=args.feeders,
                    )
                finally:
                    if processes is not None:
                        processes.stop()
                    engine.close()
                    world.close()
                    workdir.cleanup()
                xrpl_rss, stellar_rss = nodes.peak_rss_mib()
                engine_rss = r["rss_mib"] if processes is None else processes.peak_rss_mib
                rss = f"{engine_rss:.0f}/{xrpl_rss:.0f}/{stellar_rss:.0f}"
                print(
                    f"{tickets:>4} {k:>3} {r['settled']:>8.0f} {r['dvp_per_s']:>7.2f}"
                    f" {r['p50_s']:>14.2f}/{r['p99_s']:<13.2f}"
                    f" {r['xrpl_tx_per_close']:>15.2f}/{r['xrpl_max']:<7.0f}"
                    f" {r['stellar_tx_per_close']:>18.2f}/{r['stellar_max']:<7.0f}"
                    f" {r['resigned_pct']:>11.1f} {rss:>33}",
                    flush=True,
                )
                failed = r["step_failures"]
                print(
                    f"         instructed {r['instructed']:.0f}, unwound {r['unwound']:.0f},"
                    f" still open {r['open']:.0f}"
                    + (
                        f"; steps that failed (each waits out a lease): {failed}"
                        if failed is not None
                        else ""
                    )
                )
                if r["causes"]:
                    print(f"         signed again after: {r['causes']}")
                per = r["cpu_ms_per_dvp"]
                print(
                    "         CPU ms per settled DVP (while feeding and settling): "
                    + ", ".join(f"{name} {per[name]:.0f}" for name in per)
                    + f"; all {sum(per.values()):.0f}"
                )
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        nodes.stop()
    admin.dispose()


if __name__ == "__main__":
    main()
