"""End-to-end two-leg DVP throughput over the local XRPL and Stellar networks, the
engine beside the bare libraries.

Figures, not a pass/fail test. Both local networks run as processes of their own
(``settle node xrpl|stellar``) with a 1 s ledger close interval (the real networks
close every 3-5 s, so this is optimistic), against the embedded PostgreSQL. For each
ticket count T, worker count K and number in flight F, K ``settle worker --concurrency
C`` processes run as an operator runs them (settings from the environment, the
engine's keys in an encrypted keystore file, the XRPL signers' tickets kept stocked by
the workers), all on one database; ``--threads`` runs them as threads of this process
instead. A closed loop keeps F settlements per worker open: as one closes, feeder
threads in this process create, submit, approve and instruct the next commitment (the
instruction checks every leg against both ledgers). Each settlement is the bond on
XRPL against USDC on Stellar: lock both, decide, claim, finish, pay (five ledger
transactions).

``--mode bare`` runs K bare clients (``bench/dvp_bare.py``) instead: the same five
transactions per DVP in the same order, written with xrpl-py and stellar-sdk alone, no
database, no engine, on the same nodes with the same tickets and channel accounts and
F DVPs in flight per client. ``--mode both`` runs the engine and the bare clients one
after the other for every (T, K, F) (``--rounds`` alternates the order), and prints the
ratios issue 25 names: engine CPU / bare CPU per DVP, engine VERIFIED->SETTLED p50 /
bare lock-to-commit p50, and per K the best DVP/s of each side over the F swept.

Printed per run: settled DVPs per second (settled / time from the start to the last
settlement; new work stops after ``--seconds`` and what is open gets ``--drain`` more
seconds to finish), p50/p99 latency (engine: VERIFIED (approval) to SETTLED; bare:
first lock signed to last commit validated), ledger transactions per close on each
chain and the share of signatures made again (engine), peak RSS, and the CPU time each
part spent per settled DVP: this process (the feeders), the workers or bare clients,
each network, and PostgreSQL. PostgreSQL is the benchmark's own server only (its
postmaster, every backend, and the backends that ended during the run, reaped into
the postmaster's children times); the share of the feeders' own backends is reported
apart, and the engine's CPU per DVP is workers + PostgreSQL - the feeders' backends.
CPU clocks start once the workers (or clients) have imported, connected and gone idle.
Also per engine run: database transactions (``pg_stat_database.xact_commit``) per
settled DVP, the feeders' own (counted on SQLAlchemy's events here) taken out.

On two shared cores every figure is noisy: compare runs made side by side (``--mode
both``), and repeat (``--rounds``).

What limits it otherwise: every XRPL lock is signed by the one seller account and every
XRPL commit by the one agent account. Without Tickets (T = 0) an account's transactions
need consecutive sequence numbers, so concurrent workers collide and the loser waits out
its LastLedgerSequence (20 ledgers) before signing again; with T tickets each
transaction takes a ticket of its own (the bare clients need T > 0). Stellar
transactions take their sequence from one of ``--channels`` channel accounts and go
through Horizon's asynchronous submission, so no step waits for a close; a waiting
settlement is looked at again just after the next close of its ledger.

    python bench/dvp.py [--mode engine|bare|both] [--seconds 20] [--workers 1,4]
                        [--in-flight 32] [--channels 32] [--concurrency 8]
                        [--tickets 0,200] [--feeders 8] [--rounds 1] [--threads]

``bench/dvp_profile.py`` profiles one worker for a fixed number of DVPs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import httpx
import psutil
from cryptography.fernet import Fernet
from sqlalchemy import Engine, create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlcount import SqlCounter
from transitions import ALLOCATOR, OFFICER, SYSTEM, seed

from adapters.chain import Chain, ChainName
from adapters.resilience import ResiliencePolicy
from ledger import embedded, migrate
from ledger.database import app_url_for
from ledger.webhooks import EventType
from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.demo.world import LocalWorld, NetworkUrls
from settlement.domain.values import Actor, Role
from settlement.dvp import DvpPolicy
from settlement.dvp.coordinator import DvpCoordinator
from settlement.dvp.worker import Worker, WorkerPolicy
from settlement.sealing import Sealer
from settlement.settings import load_settings

CLOSE_INTERVAL_S = 1.0
#: threads approving and instructing new settlements
FEEDERS = 8
PRICE = Decimal(100)
BOND = Decimal(1)
#: PostgreSQL application names, so the server's CPU can be split by who connected
FEEDER_APP = "bench-feeder"
WORKER_APP = "bench-worker"
#: registers the --webhook runs' endpoint (for every party: an admin's)
HOOK_ADMIN = Actor("bench-admin", Role.ADMIN)
BARE_CLIENT = Path(__file__).resolve().with_name("dvp_bare.py")


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


@dataclass
class RunShape:
    workers: int
    seconds: float
    in_flight: int
    drain_s: float
    concurrency: int = 1
    feeders: int = FEEDERS
    #: settle exactly this many and stop (a profile); None: run for ``seconds``
    limit: int | None = None


class EngineRun:
    """One engine run: feeders keep ``in_flight`` settlements per worker open while the
    workers (threads here, or ``WorkerProcesses``) settle them; then the figures."""

    def __init__(
        self,
        world: LocalWorld,
        engine: bootstrap.Services,
        shape: RunShape,
        cpu: CpuMeter | None = None,
        processes: WorkerProcesses | None = None,
    ) -> None:
        self.world, self.engine, self.shape = world, engine, shape
        self.cpu, self.processes = cpu, processes
        key = processes.sealing_key if processes is not None else Fernet.generate_key()
        self.coordinators = [
            self._coordinator(Sealer(key)) for _ in range(1 if processes else shape.workers)
        ]
        self.workers = [] if processes is not None else self._workers()
        self.ids: list[UUID] = []
        self.verified_at: dict[UUID, datetime] = {}
        self.state = threading.Condition()
        self.live = 0  # instructed and not yet closed, or being made
        self.made = 0
        self.stop_feeding = threading.Event()

    def _coordinator(self, sealer: Sealer) -> DvpCoordinator:
        # the feeders' accounts are registered to nobody: no owner check
        return bootstrap.build_coordinator(
            self.engine,
            own_chains(self.world, ResiliencePolicy()),
            clock=self.world.clock,
            policy=DvpPolicy(safety_margin_s=120, min_window_s=5, retry_after_s=0.1),
            sealed_with=sealer,
            check_owners=False,
        )

    def _workers(self) -> list[Worker]:
        shape = self.shape
        return [
            bootstrap.build_stepping_worker(
                self.engine,
                c,
                clock=self.world.clock,
                name=f"bench-{shape.workers}-{n}",
                policy=WorkerPolicy(
                    lease_s=30, batch=shape.in_flight, idle_s=0.02, concurrency=shape.concurrency
                ),
            )
            for n, c in enumerate(self.coordinators)
        ]

    def open_ids(self) -> list[UUID]:
        with self.state:
            known = list(self.ids)
        if not known:
            return []
        return self.engine.db.transaction(
            lambda uow: [
                row[0]
                for row in uow.execute(
                    "SELECT id FROM settlements WHERE id = ANY(:ids)"
                    " AND status IN ('LOCKING', 'COMMITTING', 'UNWINDING')",
                    {"ids": known},
                ).all()
            ]
        )

    def feed(self) -> None:
        """One of several feeders (approving and instructing is ledger-bound: each
        instruction checks its legs against both ledgers), so the load generator keeps
        the target open however fast the workers close them."""
        target_open = self.shape.in_flight * self.shape.workers
        limit = self.shape.limit
        buyers = [self.world.buyer_stellar, *self.world.extra_buyers]
        service, world = self.engine.commitments, self.world
        while not self.stop_feeding.is_set():
            with self.state:
                while self.live >= target_open and not self.stop_feeding.is_set():
                    self.state.wait(0.1)
                if self.stop_feeding.is_set() or (limit is not None and self.made >= limit):
                    return
                self.live += 1
                n = self.made
                self.made += 1
            created = service.create(
                ALLOCATOR, deal_ref=f"BENCH-DVP-{n}", amount=f"{PRICE:f}", currency="USDC"
            )
            service.submit(ALLOCATOR, created.commitment_id)
            service.approve(OFFICER, created.commitment_id)
            approved = world.clock.now()
            sid = self.coordinators[0].instruct(
                SYSTEM,
                created.commitment_id,
                world.legs(BOND, PRICE, buyer_stellar=buyers[n % len(buyers)]),
                commit_deadline=world.clock.now() + timedelta(seconds=300),
            )
            with self.state:
                self.ids.append(sid)
                self.verified_at[sid] = approved

    def run(self) -> dict[str, Any]:
        failures = _Count()
        worker_log = logging.getLogger("settlement.dvp.worker")
        worker_log.addHandler(failures)
        worker_log.propagate = False  # counted, not printed
        try:
            cpu_used, started_at = self._settle()
        finally:
            worker_log.removeHandler(failures)
        r = self._figures(started_at)
        r["step_failures"] = failures.count if self.processes is None else None
        r["cpu_ms_per_dvp"] = {
            name: 1000 * used / r["settled"] if r["settled"] else float("nan")
            for name, used in cpu_used.items()
        }
        return r

    def _settle(self) -> tuple[dict[str, float], datetime]:
        """Feed, settle and drain; the CPU each part used meanwhile, and the start."""
        shape = self.shape
        threads = [threading.Thread(target=w.run, daemon=True) for w in self.workers]
        feeding = [threading.Thread(target=self.feed, daemon=True) for _ in range(shape.feeders)]
        if self.processes is not None:
            self.processes.start(shape.workers, shape.concurrency)
        started = time.monotonic()
        started_at = self.world.clock.now()
        cpu_before = self.cpu.read() if self.cpu is not None else {}
        for t in (*threads, *feeding):
            t.start()
        while time.monotonic() - started < shape.seconds:
            if shape.limit is not None and self.made >= shape.limit:
                break
            still_open = len(self.open_ids())
            with self.state:
                # those being made count as open
                self.live = still_open + (self.made - len(self.ids))
                self.state.notify_all()
            time.sleep(0.1)
        self.stop_feeding.set()
        for t in feeding:
            t.join(60)
        # no new work: let what is open finish (or give up), so latencies include the slow
        drain_until = time.monotonic() + shape.drain_s
        while time.monotonic() < drain_until and self.open_ids():
            time.sleep(0.1)
        cpu_used = self.cpu.since(cpu_before) if self.cpu is not None else {}
        for w in self.workers:
            w.stop()
        for t in threads:
            t.join(60)
        if self.processes is not None:
            self.processes.stop()
        return cpu_used, started_at

    def _rows(self, sql: str) -> list[Any]:
        return self.engine.db.transaction(
            lambda uow: list(uow.execute(sql, {"ids": self.ids}).all())
        )

    def _figures(self, started_at: datetime) -> dict[str, Any]:
        rows = self._rows(
            "SELECT s.id, s.status, x.chain, x.ledger_index, x.status, x.purpose,"
            " x.result_code FROM settlements s"
            " JOIN ledger_submissions x ON x.settlement_id = s.id WHERE s.id = ANY(:ids)"
        )
        statuses = dict(self._rows("SELECT id, status FROM settlements WHERE id = ANY(:ids)"))
        closed_at = dict(
            self._rows(
                "SELECT id, updated_at FROM settlements WHERE id = ANY(:ids) AND status = 'SETTLED'"
            )
        )
        # engine-clock times: approval as the feeder saw it, close as the database recorded it
        latencies = [(closed_at[sid] - self.verified_at[sid]).total_seconds() for sid in closed_at]
        elapsed = (
            (max(closed_at.values()) - started_at).total_seconds() if closed_at else float("nan")
        )
        return {
            "settled": len(closed_at),
            "dvp_per_s": len(closed_at) / elapsed if closed_at else 0.0,
            "p50_s": _p(latencies, 0.5),
            "p99_s": _p(latencies, 0.99),
            "mean_s": statistics.fmean(latencies) if latencies else float("nan"),
            "unwound": sum(1 for s in statuses.values() if s == "UNWOUND"),
            "open": sum(1 for s in statuses.values() if s not in ("SETTLED", "UNWOUND")),
            "instructed": len(self.ids),
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        } | _submission_figures(rows)


def _submission_figures(rows: list[Any]) -> dict[str, Any]:
    """Ledger transactions per close on each chain, and the signatures made again."""
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
        "xrpl_tx_per_close": x_mean,
        "xrpl_max": x_max,
        "stellar_tx_per_close": s_mean,
        "stellar_max": s_max,
        "resigned_pct": 100.0 * resigned / signatures if signatures else 0.0,
        "causes": ", ".join(f"{k} x{n}" for k, n in causes.most_common()),
    }


def _peak_rss_mib(proc: subprocess.Popen[Any]) -> float:
    """A live child's peak resident set (VmHWM), MiB; 0 once it is gone."""
    with contextlib.suppress(OSError, StopIteration):
        status = Path(f"/proc/{proc.pid}/status").read_text()
        kib = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM:"))
        return kib / 1024
    return 0.0


def _cpu_s(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


class PostgresCpu:
    """CPU seconds of the benchmark's own PostgreSQL server: its postmaster, every live
    backend, and every process that ended (the postmaster reaps them, and the kernel
    adds their times to its children's). Per backend pid as well, so the backends of
    one application name (the feeders') can be counted apart."""

    def __init__(self, pgdata: Path, admin: Engine) -> None:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        self._postmaster = psutil.Process(pid)
        self._admin = admin

    def read(self) -> tuple[float, dict[int, float]]:
        """The server's total, and each live backend's."""
        try:
            t = self._postmaster.cpu_times()
        except psutil.Error:
            return 0.0, {}
        total = float(t.user + t.system + t.children_user + t.children_system)
        per = {child.pid: _cpu_s(child) for child in self._postmaster.children()}
        return total + sum(per.values()), per

    def pids_of(self, application: str) -> set[int]:
        with self._admin.connect() as c:
            rows = c.execute(
                text("SELECT pid FROM pg_stat_activity WHERE application_name = :a"),
                {"a": application},
            ).all()
        return {int(r[0]) for r in rows}


class CpuMeter:
    """CPU seconds (user + system) of this process ("bench": the feeders, and the
    workers when they are threads), of the worker processes or bare clients, of each
    network's process and of the benchmark's own PostgreSQL server ("postgres"), with
    the feeders' backends' share of it ("pg_feeders"), so the figures can say where a
    DVP's CPU goes on the two shared cores."""

    def __init__(self, nodes: NodeProcesses, workers: Any, postgres: PostgresCpu | None) -> None:
        self._named = {
            "bench": psutil.Process(),
            "xrpl": psutil.Process(nodes.procs[0].pid),
            "stellar": psutil.Process(nodes.procs[1].pid),
        }
        #: WorkerProcesses or BareProcesses: anything with ``processes()``
        self._workers = workers
        self._postgres = postgres
        self._backends: dict[int, float] = {}

    def read(self) -> dict[str, float]:
        used = {name: _cpu_s(p) for name, p in self._named.items()}
        if self._workers is not None:
            used["workers"] = sum(_cpu_s(p) for p in self._workers.processes())
        if self._postgres is not None:
            used["postgres"], self._backends = self._postgres.read()
        return used

    def since(self, before: dict[str, float]) -> dict[str, float]:
        backends_before = self._backends
        now = self.read()
        used = {name: now[name] - before.get(name, 0.0) for name in now}
        if self._postgres is not None:
            feeders = self._postgres.pids_of(FEEDER_APP)
            used["pg_feeders"] = sum(
                self._backends.get(pid, 0.0) - backends_before.get(pid, 0.0) for pid in feeders
            )
        return used


class WorkerProcesses:
    """``settle worker --concurrency C`` processes, as an operator runs them: settings
    from the environment, the engine's keys in an encrypted keystore file, the sealing
    key shared with this process (which seals the hash-lock secrets when it instructs).
    They judge time by the system clock, as this process's world does against networks
    running elsewhere. ``start`` returns once every worker has connected and gone idle,
    so CPU clocks read afterwards leave out imports and start-up."""

    def __init__(
        self,
        world: LocalWorld,
        owner_url: str,
        workdir: Path,
        tickets: int,
        *,
        postgres: PostgresCpu | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.sealing_key = Fernet.generate_key()
        keystore_key = Fernet.generate_key()
        keystore = bootstrap.keystore_at(workdir / "keystore.fernet", keystore_key)
        for wallet in (world.seller_xrpl, world.agent_xrpl):
            assert wallet.seed is not None
            keystore.add_xrpl(wallet.seed)
        signers = (world.buyer_stellar, *world.extra_buyers, world.agent_stellar)
        for keypair in (*signers, *world.channels_stellar):
            keystore.add_stellar(keypair.secret)
        self.env = os.environ | {
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
            # libpq's application name: the server's CPU is split by it
            "PGAPPNAME": WORKER_APP,
        }
        self._command = command or [
            sys.executable,
            "-c",
            "from settlement.cli.main import app; app()",
            "worker",
        ]
        self._postgres = postgres
        self._procs: list[subprocess.Popen[bytes]] = []
        #: the largest peak RSS of one worker process
        self.peak_rss_mib = 0.0

    def start(self, count: int, concurrency: int) -> None:
        command = [*self._command, "--concurrency", str(concurrency), "--lease", "30"]
        self._procs = [
            subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL) for _ in range(count)
        ]
        self._wait_ready(count)

    def _wait_ready(self, count: int) -> None:
        """Until each worker has a database connection and none uses more than 2% of a
        core over half a second (imports done, connected, polling an empty queue)."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            failed = [p.returncode for p in self._procs if p.poll() is not None]
            if failed:
                self.stop()
                raise RuntimeError(f"settle worker exited at start: {failed}")
            connected = self._postgres is None or (len(self._postgres.pids_of(WORKER_APP)) >= count)
            before = [_cpu_s(p) for p in self.processes()]
            time.sleep(0.5)
            after = [_cpu_s(p) for p in self.processes()]
            if connected and max(b - a for a, b in zip(before, after, strict=True)) < 0.01:
                return
        print("         (workers not idle after 90 s; measuring anyway)", flush=True)

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in self._procs:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(proc.pid))
        return found

    def stop(self) -> None:
        self.peak_rss_mib = max([self.peak_rss_mib, *map(_peak_rss_mib, self._procs)])
        for proc in self._procs:
            proc.terminate()  # settle worker stops at its next step on SIGTERM
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._procs = []


class BareProcesses:
    """K bare clients (``bench/dvp_bare.py``), one process each, on the world's accounts:
    the XRPL tickets and the Stellar channel accounts shared out among them."""

    def __init__(self, world: LocalWorld, urls: NetworkUrls, tickets: int) -> None:
        assert world.seller_xrpl.seed is not None
        assert world.agent_xrpl.seed is not None
        self.config: dict[str, Any] = {
            "xrpl_url": urls.xrpl_url,
            "horizon_url": urls.horizon_url,
            "passphrase": urls.stellar_network_passphrase,
            "seller_seed": world.seller_xrpl.seed,
            "agent_seed": world.agent_xrpl.seed,
            "buyer_xrpl": world.buyer_xrpl.classic_address,
            "bond": [world.bond.code, world.bond.issuer],
            "bond_units": f"{BOND:f}",
            "usdc": [world.usdc.code, world.usdc.issuer],
            "price": f"{PRICE:f}",
            "buyers": [k.secret for k in (world.buyer_stellar, *world.extra_buyers)],
            "agent_stellar": world.agent_stellar.secret,
            "seller_stellar": world.seller_stellar.public_key,
            "channels": [k.secret for k in world.channels_stellar],
            "tickets": tickets,
        }
        self._procs: list[subprocess.Popen[str]] = []
        self.peak_rss_mib = 0.0

    def start(self, count: int, shape: RunShape) -> None:
        """Start ``count`` clients and return once each has set up (and said ready)."""
        for index in range(count):
            proc = subprocess.Popen(
                [sys.executable, str(BARE_CLIENT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            config = self.config | {
                "index": index,
                "count": count,
                "in_flight": shape.in_flight,
                "seconds": shape.seconds,
                "drain_s": shape.drain_s,
            }
            _say(proc, json.dumps(config))
            self._procs.append(proc)
        for proc in self._procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                self.stop()
                raise RuntimeError("a bare client did not start")

    def go(self) -> None:
        for proc in self._procs:
            _say(proc, "go")

    def results(
        self, cpu: CpuMeter, before: dict[str, float]
    ) -> tuple[list[Any], dict[str, float]]:
        """Each client's result, and the CPU used since ``before`` once all have
        answered (a client that answered waits idle for ``exit``)."""
        answers = []
        for proc in self._procs:
            assert proc.stdout is not None
            answers.append(json.loads(proc.stdout.readline()))
        used = cpu.since(before)
        self.peak_rss_mib = max([self.peak_rss_mib, *map(_peak_rss_mib, self._procs)])
        return answers, used

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in self._procs:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(proc.pid))
        return found

    def stop(self) -> None:
        for proc in self._procs:
            with contextlib.suppress(OSError, ValueError):
                _say(proc, "exit")
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._procs = []


def _say(proc: subprocess.Popen[str], line: str) -> None:
    stdin: IO[str] | None = proc.stdin
    assert stdin is not None
    stdin.write(line + "\n")
    stdin.flush()


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
        return [_peak_rss_mib(proc) for proc in self.procs]

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


@dataclass
class Bench:
    """What every run shares: the arguments, the server, the networks."""

    args: argparse.Namespace
    server: embedded.EmbeddedServer
    admin: Engine
    nodes: NodeProcesses
    postgres: PostgresCpu
    counter: SqlCounter
    results: list[dict[str, Any]] = field(default_factory=list)

    def fresh_database(self, k: int) -> str:
        """A migrated database per run, so no run inherits another's open settlements."""
        name = f"bench_dvp_{os.getpid()}_{k}"
        self.drop(name)
        with self.admin.connect() as c:
            c.execute(text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
        owner_url = self.server.url(name)
        migrate.upgrade(owner_url)
        seed(owner_url)
        return name

    def drop(self, name: str) -> None:
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def xact_commit(self, name: str) -> int:
        time.sleep(0.5)  # backends report their counts when idle, or as they exit
        with self.admin.connect() as c:
            return int(
                c.execute(
                    text("SELECT xact_commit FROM pg_stat_database WHERE datname = :d"),
                    {"d": name},
                ).scalar_one()
            )

    def world(self, tickets: int) -> LocalWorld:
        return bootstrap.local_world(
            bond_units=Decimal(1_000_000),
            usdc=Decimal(100_000_000),
            extra_buyers=7,
            stellar_channels=self.args.channels,
            xrpl_tickets=tickets,
            networks=self.nodes.urls,
        )


class HookReceiver:
    """A local webhook receiver for ``--webhook`` runs: answers 204 at once and keeps,
    per event id, the lag from the change (``occurred_at``) to its arrival. It does not
    verify signatures (``settlement.webhook_receiver`` does; here only the cost of
    delivering on the workers is measured)."""

    def __init__(self) -> None:
        self.lags_s: dict[str, float] = {}
        self.posts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                arrived = datetime.now(UTC)
                occurred = datetime.fromisoformat(body["occurred_at"].replace("Z", "+00:00"))
                receiver.posts += 1
                receiver.lags_s.setdefault(body["id"], (arrived - occurred).total_seconds())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/events"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def figures(self) -> dict[str, float]:
        lags = sorted(self.lags_s.values())
        return {
            "events": len(lags),
            "posts": self.posts,
            "lag_p50_s": _p(lags, 0.5) if lags else float("nan"),
            "lag_p99_s": _p(lags, 0.99) if lags else float("nan"),
        }

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def run_engine(
    bench: Bench, tickets: int, shape: RunShape, *, webhook: bool = False
) -> dict[str, Any]:
    """One engine run on a fresh database and a fresh world; its figures. With
    ``webhook``, an endpoint subscribed to every event of every party first, delivered
    by the workers (``settle worker`` runs the delivery worker) to a local receiver."""
    args, k = bench.args, shape.workers
    name = bench.fresh_database(k)
    owner_url = bench.server.url(name)
    world = bench.world(tickets)
    # each stepping thread holds two connections (its advisory lock's and its step's
    # own); the pool may grow to three times its size
    pool_size = max(10, -(-(2 * k * shape.concurrency + 8) // 3))
    engine = bootstrap.build(
        load_settings(database_url=owner_url, pool_size=pool_size),
        clock=world.clock,
        urls=DatabaseUrls(owner=owner_url, app=app_url_for(owner_url)),
    )
    receiver = HookReceiver() if webhook else None
    if receiver is not None:
        engine.webhooks.register(
            HOOK_ADMIN, url=receiver.url, event_types=list(EventType), party=None
        )
    workdir = tempfile.TemporaryDirectory(prefix="bench-dvp-")
    processes = (
        None
        if args.threads
        else WorkerProcesses(world, owner_url, Path(workdir.name), tickets, postgres=bench.postgres)
    )
    commits_before = bench.xact_commit(name)
    bench.counter.reset()
    bench.counter.database = name  # the feeders' own in this database, not the probes'
    try:
        cpu = CpuMeter(bench.nodes, processes, bench.postgres)
        r = EngineRun(world, engine, shape, cpu=cpu, processes=processes).run()
    finally:
        if processes is not None:
            processes.stop()
        if receiver is not None:
            r_hook = receiver.figures()
            receiver.close()
        engine.close()
        world.close()
        workdir.cleanup()
    commits = bench.xact_commit(name) - commits_before
    mine = bench.counter.snapshot()["transactions"]
    settled = r["settled"] or float("nan")
    if processes is None:  # threads: the workers' statements are this process's too
        r["xacts_per_dvp"], r["feeder_xacts_per_dvp"] = commits / settled, float("nan")
    else:
        r["xacts_per_dvp"] = (commits - mine) / settled
        r["feeder_xacts_per_dvp"] = mine / settled
    r["worker_rss_mib"] = r["rss_mib"] if processes is None else processes.peak_rss_mib
    if receiver is not None:
        r["webhook"] = r_hook
    bench.drop(name)
    return r


def run_bare(bench: Bench, tickets: int, shape: RunShape) -> dict[str, Any]:
    """One run of K bare clients on a fresh world; figures shaped as the engine's."""
    world = bench.world(tickets)
    clients = BareProcesses(world, bench.nodes.urls, tickets)
    try:
        clients.start(shape.workers, shape)
        cpu = CpuMeter(bench.nodes, clients, None)
        before = cpu.read()
        clients.go()
        answers, used = clients.results(cpu, before)
    finally:
        clients.stop()
        world.close()
    latencies = [x for a in answers for x in a["latencies"]]
    go = min(a["go"] for a in answers)
    last = max(a["last_done"] for a in answers)
    failures: Counter[str] = Counter()
    resigned: Counter[str] = Counter()
    for a in answers:
        failures.update(a["failures"])
        resigned.update(a["resigned"])
    settled = len(latencies)
    return {
        "settled": settled,
        "dvp_per_s": settled / (last - go) if settled else 0.0,
        "p50_s": _p(latencies, 0.5),
        "p99_s": _p(latencies, 0.99),
        "open": sum(a["open"] for a in answers),
        "failures": ", ".join(f"{k} x{n}" for k, n in failures.most_common()),
        "resigned": ", ".join(f"{k} x{n}" for k, n in resigned.most_common()),
        "worker_rss_mib": clients.peak_rss_mib,
        "cpu_ms_per_dvp": {
            name: 1000 * s / settled if settled else float("nan") for name, s in used.items()
        },
    }


def engine_cpu_ms(r: dict[str, Any]) -> float:
    """The engine's CPU per DVP: workers + its PostgreSQL server - the feeders' backends
    (threads mode: this whole process, feeders included)."""
    per = r["cpu_ms_per_dvp"]
    if "workers" not in per:  # threads: every backend is this process's
        return float(per["bench"] + per["postgres"])
    return float(per["workers"] + per["postgres"] - per["pg_feeders"])


def print_engine(tickets: int, shape: RunShape, r: dict[str, Any], nodes: NodeProcesses) -> None:
    xrpl_rss, stellar_rss = nodes.peak_rss_mib()
    rss = f"{r['worker_rss_mib']:.0f}/{xrpl_rss:.0f}/{stellar_rss:.0f}"
    print(
        f"engine {tickets:>4} {shape.workers:>3} {shape.in_flight:>4} {r['settled']:>8.0f}"
        f" {r['dvp_per_s']:>7.2f} {r['p50_s']:>10.2f}/{r['p99_s']:<7.2f}"
        f" {engine_cpu_ms(r):>13.1f}"
        f" {r['xrpl_tx_per_close']:>8.2f}/{r['xrpl_max']:<4.0f}"
        f" {r['stellar_tx_per_close']:>8.2f}/{r['stellar_max']:<4.0f}"
        f" {r['resigned_pct']:>6.1f} {rss:>14}",
        flush=True,
    )
    failed = r["step_failures"]
    print(
        f"         instructed {r['instructed']:.0f}, unwound {r['unwound']:.0f},"
        f" still open {r['open']:.0f}"
        + (f"; steps that failed (each waits out a lease): {failed}" if failed is not None else "")
        + (
            f"; database transactions per DVP: workers {r['xacts_per_dvp']:.1f},"
            f" feeders {r['feeder_xacts_per_dvp']:.1f}"
            if r["feeder_xacts_per_dvp"] == r["feeder_xacts_per_dvp"]  # not NaN
            else f"; database transactions per DVP, feeders and workers: {r['xacts_per_dvp']:.1f}"
        )
    )
    if r["causes"]:
        print(f"         signed again after: {r['causes']}")
    per = r["cpu_ms_per_dvp"]
    engine = (
        "workers + postgres - feeders' backends"
        if "workers" in per
        else "this process, feeders included, + postgres"
    )
    print(
        "         CPU ms per settled DVP: "
        + ", ".join(f"{name} {per[name]:.1f}" for name in per if name != "pg_feeders")
        + f" (of which feeders' backends {per.get('pg_feeders', float('nan')):.1f});"
        f" engine ({engine}) {engine_cpu_ms(r):.1f}",
        flush=True,
    )


def print_bare(tickets: int, shape: RunShape, r: dict[str, Any], nodes: NodeProcesses) -> None:
    xrpl_rss, stellar_rss = nodes.peak_rss_mib()
    rss = f"{r['worker_rss_mib']:.0f}/{xrpl_rss:.0f}/{stellar_rss:.0f}"
    per = r["cpu_ms_per_dvp"]
    print(
        f"bare   {tickets:>4} {shape.workers:>3} {shape.in_flight:>4} {r['settled']:>8.0f}"
        f" {r['dvp_per_s']:>7.2f} {r['p50_s']:>10.2f}/{r['p99_s']:<7.2f}"
        f" {per['workers']:>13.1f} {'':>13} {'':>13} {'':>6} {rss:>14}",
        flush=True,
    )
    print(
        f"         still open {r['open']}"
        + (f"; given up: {r['failures']}" if r["failures"] else "")
        + (f"; signed again: {r['resigned']}" if r["resigned"] else "")
    )
    print(
        "         CPU ms per settled DVP: "
        + ", ".join(f"{name} {per[name]:.1f}" for name in per)
        + f"; bare clients {per['workers']:.1f}",
        flush=True,
    )


def print_ratios(results: list[dict[str, Any]]) -> None:
    """Per (T, K, F) the side-by-side ratios, and per (T, K) the saturated throughput."""
    pairs: dict[tuple[int, int, int], dict[str, list[dict[str, Any]]]] = {}
    for r in results:
        key = (r["tickets"], r["workers"], r["in_flight"])
        pairs.setdefault(key, {"engine": [], "bare": []})[r["side"]].append(r)
    print("\nSide by side (medians over rounds where repeated); ratios engine / bare")
    header = (
        f"{'T':>4} {'K':>3} {'F':>4} {'DVP/s e/b':>13} {'p50 s e/b':>12} {'CPU ms/DVP e/b':>16}"
        f" {'CPU ratio':>9} {'p50 ratio':>9} {'DVP/s ratio':>11}"
    )
    print(header)
    print("-" * len(header))
    best: dict[tuple[int, int], dict[str, float]] = {}
    for (t, k, f), sides in sorted(pairs.items()):
        e, b = sides["engine"], sides["bare"]
        for side, rs in sides.items():
            top = max((r["dvp_per_s"] for r in rs), default=0.0)
            slot = best.setdefault((t, k), {})
            slot[side] = max(slot.get(side, 0.0), top)
        if not e or not b:
            continue
        e_rate = statistics.median(r["dvp_per_s"] for r in e)
        b_rate = statistics.median(r["dvp_per_s"] for r in b)
        e_p50 = statistics.median(r["p50_s"] for r in e)
        b_p50 = statistics.median(r["p50_s"] for r in b)
        e_cpu = statistics.median(engine_cpu_ms(r) for r in e)
        b_cpu = statistics.median(r["cpu_ms_per_dvp"]["workers"] for r in b)
        print(
            f"{t:>4} {k:>3} {f:>4} {e_rate:>6.2f}/{b_rate:<6.2f} {e_p50:>5.2f}/{b_p50:<6.2f}"
            f" {e_cpu:>7.1f}/{b_cpu:<8.1f} {e_cpu / b_cpu:>9.2f} {e_p50 / b_p50:>9.2f}"
            f" {e_rate / b_rate:>11.2f}"
        )
    print("\nSaturated throughput: the best DVP/s of each side over the numbers in flight")
    for (t, k), tops in sorted(best.items()):
        e_best, b_best = tops.get("engine", 0.0), tops.get("bare", 0.0)
        ratio = f"{e_best / b_best:.2f}" if b_best else "n/a"
        print(f"  T {t}, K {k}: engine {e_best:.2f}, bare {b_best:.2f}; engine / bare {ratio}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("engine", "bare", "both"), default="engine")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", default="1,4", help="workers (or bare clients), a list")
    parser.add_argument(
        "--in-flight", default="32", help="open settlements per worker or client, a list"
    )
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
        default=None,
        help="XRPL Tickets for the seller and the agent, one run per value (0: Sequence);"
        " default 0,200 for the engine alone, 200 with bare clients (they need tickets)",
    )
    parser.add_argument(
        "--threads",
        action="store_true",
        help="run the workers as threads of this process instead of `settle worker` processes",
    )
    parser.add_argument(
        "--feeders", type=int, default=FEEDERS, help="threads approving and instructing"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat every run, alternating which side goes first"
    )
    parser.add_argument(
        "--webhook",
        action="store_true",
        help="run the engine again with a webhook endpoint subscribed to every event",
    )
    args = parser.parse_args()
    if args.tickets is None:
        args.tickets = "0,200" if args.mode == "engine" else "200"
    return args


def open_bench(args: argparse.Namespace, nodes: NodeProcesses) -> Bench:
    # libpq's application name for this process's connections: the feeders' share of
    # the server's CPU is told apart by it
    os.environ["PGAPPNAME"] = FEEDER_APP
    data_dir = Path(os.environ.get("SETTLEMENT_DATA_DIR", ".settlement")).resolve()
    server = embedded.ensure_running(data_dir)
    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    postgres = PostgresCpu(server.pgdata, admin)
    return Bench(args, server, admin, nodes, postgres, SqlCounter().install())


def print_preamble(args: argparse.Namespace) -> None:
    print(
        f"{os.cpu_count()} cores, shared: figures are noisy, compare side by side; ledgers"
        f" close every {CLOSE_INTERVAL_S:.0f} s on both local networks, each a process of its"
        f" own; {args.seconds:.0f} s per run; F settlements in flight per worker or bare"
        f" client; {args.channels} Stellar channel accounts; each worker steps"
        f" {args.concurrency} settlement(s) at once; workers are"
        + (" threads of this process" if args.threads else " `settle worker` processes")
        + f"; {args.feeders} feeder threads approve and instruct in this process."
        " T: XRPL Tickets for the seller and the agent (0: each signs on its own Sequence)."
        " Latency: engine VERIFIED->SETTLED, bare first lock signed -> last commit validated."
        " CPU ms/DVP: engine workers + PostgreSQL - the feeders' backends; bare: its clients.\n"
    )
    header = (
        f"{'side':<6} {'T':>4} {'K':>3} {'F':>4} {'settled':>8} {'DVP/s':>7}"
        f" {'p50/p99 s':>18} {'CPU ms/DVP':>13} {'XRPL tx/close':>13}"
        f" {'XLM tx/close':>13} {'re-s%':>6} {'RSS MiB w/x/s':>14}"
    )
    print(header)
    print("-" * len(header))


def main() -> None:
    args = parse_args()
    sides = {"engine": ["engine"], "bare": ["bare"], "both": ["engine", "bare"]}[args.mode]
    if args.webhook:  # the engine again, subscribed: delivery must not slow settlement
        sides = [x for side in sides for x in ([side, "hooked"] if side == "engine" else [side])]
    nodes = NodeProcesses()
    bench = open_bench(args, nodes)
    print_preamble(args)
    try:
        for tickets in (int(t) for t in args.tickets.split(",")):
            for k in (int(k) for k in args.workers.split(",")):
                for f in (int(f) for f in args.in_flight.split(",")):
                    shape = RunShape(k, args.seconds, f, args.drain, args.concurrency, args.feeders)
                    for n in range(args.rounds):
                        for side in sides if n % 2 == 0 else sides[::-1]:
                            run_one(bench, side, tickets, shape)
    finally:
        nodes.stop()
    if args.mode == "both":
        print_ratios([r for r in bench.results if r["side"] != "hooked"])
    if args.webhook:
        print_webhook_ratios(bench.results)
    bench.admin.dispose()


def print_webhook_ratios(results: list[dict[str, Any]]) -> None:
    """The engine subscribed beside the engine alone, per (T, K, F)."""
    print("\nWith a webhook subscription beside without (medians over rounds)")
    runs: dict[tuple[int, int, int], dict[str, list[dict[str, Any]]]] = {}
    for r in results:
        if r["side"] in ("engine", "hooked"):
            key = (r["tickets"], r["workers"], r["in_flight"])
            runs.setdefault(key, {"engine": [], "hooked": []})[r["side"]].append(r)
    for (t, k, f), sides in runs.items():
        plain, hooked = sides["engine"], sides["hooked"]
        if not plain or not hooked:
            continue

        def med(rows: list[dict[str, Any]], name: str) -> float:
            return float(statistics.median(x[name] for x in rows))

        print(
            f"  T {t}, K {k}, F {f}: DVP/s {med(plain, 'dvp_per_s'):.2f} without,"
            f" {med(hooked, 'dvp_per_s'):.2f} with"
            f" (ratio {med(hooked, 'dvp_per_s') / med(plain, 'dvp_per_s'):.2f}); p50"
            f" {med(plain, 'p50_s'):.2f} s without, {med(hooked, 'p50_s'):.2f} s with"
        )


def run_one(bench: Bench, side: str, tickets: int, shape: RunShape) -> None:
    if side == "bare" and tickets == 0:
        print(f"bare   {tickets:>4} {shape.workers:>3}: skipped, the bare clients sign on Tickets")
        return
    if side in ("engine", "hooked"):
        r = run_engine(bench, tickets, shape, webhook=side == "hooked")
        print_engine(tickets, shape, r, bench.nodes)
        if "webhook" in r:
            hook = r["webhook"]
            print(
                f"         with a webhook subscription to every event: {hook['events']:.0f}"
                f" events delivered ({hook['posts']:.0f} POSTs), commit to delivery p50"
                f" {hook['lag_p50_s']:.2f} s, p99 {hook['lag_p99_s']:.2f} s",
                flush=True,
            )
    else:
        r = run_bare(bench, tickets, shape)
        print_bare(tickets, shape, r, bench.nodes)
    r |= {"side": side, "tickets": tickets, "workers": shape.workers}
    bench.results.append(r | {"in_flight": shape.in_flight})


if __name__ == "__main__":
    main()
