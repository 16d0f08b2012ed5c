"""Where one engine worker's CPU goes per DVP: a profile by area, and its database work.

Figures, not a test. Sets up what ``bench/dvp.py`` sets up (local networks closing
every 1 s, a fresh database, a world with T Tickets and the channel accounts), starts
ONE ``settle worker --concurrency C`` process under cProfile (every thread of it that
steps settlements, each timed by its own CPU clock, ``time.thread_time``), has the
feeders of this process instruct exactly ``--dvps`` settlements with ``--in-flight``
open at a time, waits for all to close, stops the worker and prints:

- CPU ms per settled DVP by area, from the functions' own time (a built-in's, or a
  standard-library function's outside the named areas, goes to the areas of its
  callers, in the shares it spent under each): xrpl-py's binary codec,
  signing and hashing, the rest of xrpl-py, stellar-sdk, HTTP (httpx, requests,
  urllib3, sockets), SQLAlchemy + psycopg (the client side), JSON, logging, threads and
  waits, the engine's own code (settlement, adapters, ledger, compliance), and the
  share that is libraries' own code;
- the functions with the most own time;
- statements and database transactions per DVP made by the worker (counted in psycopg
  inside it: a COMMIT or an autocommitted statement each), beside the server's
  ``pg_stat_database.xact_commit`` delta less what the feeders made.

The profiler slows the worker (each call is timed). Its cost per call is measured in
the worker at start and taken out, which leaves the figures still above an unprofiled
worker's (``bench/dvp.py`` measures that; cache effects are not taken out): read the
shares, and scale them to the unprofiled CPU per DVP.
Counting starts when the feeding starts, after the worker has imported and connected.
The machine's two cores are shared: figures are noisy.

    python bench/dvp_profile.py [--dvps 150] [--in-flight 16] [--concurrency 8]
                                [--tickets 200] [--channels 32] [--top 25]
                                [--save worker.pstats]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dvp import (
    Bench,
    CpuMeter,
    EngineRun,
    NodeProcesses,
    RunShape,
    WorkerProcesses,
    open_bench,
)
from sqlcount import SqlCounter

ROOT = Path(__file__).resolve().parents[1]
ENGINE_PACKAGES = ("settlement", "adapters", "ledger", "compliance")
#: (area, path fragments of the files whose functions belong to it), first match wins
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("xrpl-py binary codec", ("/xrpl/core/binarycodec/",)),
    (
        "signing and hashing",
        ("/xrpl/core/keypairs/", "/ecpy/", "/nacl/", "/ecdsa/", "/Crypto/", "/hashlib.py"),
    ),
    ("xrpl-py other (models, address codec)", ("/xrpl/",)),
    ("stellar-sdk (XDR, builder, keys)", ("/stellar_sdk/",)),
    (
        "HTTP (httpx, requests, urllib3, sockets)",
        (
            "/httpx/",
            "/httpcore/",
            "/h11/",
            "/requests/",
            "/urllib3/",
            "/http/",
            "/socket.py",
            "/ssl.py",
            "/idna/",
            "/email/",
            "/urllib/",
            "/charset_normalizer/",
            "/anyio/",
        ),
    ),
    ("SQLAlchemy + psycopg (client)", ("/sqlalchemy/", "/psycopg/", "/psycopg_pool/")),
    ("JSON", ("/json/",)),
    ("logging", ("/logging/", "/structlog/")),
    ("cryptography (Fernet, keys)", ("/cryptography/",)),
    ("pydantic", ("/pydantic/", "/pydantic_core/")),
    (
        "threads, locks, waits",
        ("/threading.py", "/concurrent/", "/queue.py", "/selectors.py", "/contextlib.py"),
    ),
    ("benchmark's own counters", ("/bench/",)),
)
ENGINE_AREA = "engine's own code ({})"


def named_area(filename: str) -> str | None:
    """The area of a function defined in ``filename``; None for built-ins and the parts
    of the standard library no area names (their time goes to their callers)."""
    if filename == "~":
        return None
    path = Path(filename).resolve()
    if ROOT in path.parents:
        top = path.relative_to(ROOT).parts[0]
        if top in ENGINE_PACKAGES:
            return ENGINE_AREA.format(top)
    text = "/" + filename.replace(os.sep, "/")
    for area, fragments in AREAS:
        if any(f in text for f in fragments):
            return area
    return "other libraries" if "/site-packages/" in text else None


class Areas:
    """Own time by area. A built-in or an unnamed standard-library function counts
    toward its callers' areas, shared as the time it spent under each caller.

    The profiler's cost per call and return (``per_call_s``, measured in the worker) is
    taken out of each function's own time: half for each call it received, half for
    each call it made (cProfile charges the time around an event to the function that
    runs next)."""

    def __init__(self, stats: pstats.Stats, per_call_s: float) -> None:
        self._raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
        self._memo: dict[Any, Counter[str]] = {}
        made: Counter[Any] = Counter()
        for row in self._raw.values():
            for caller, v in row[4].items():
                made[caller] += v[1]
        half = per_call_s / 2
        #: own CPU seconds of each function, the profiler's cost taken out
        self.own = {
            func: max(0.0, row[2] - half * (row[1] + made[func])) for func, row in self._raw.items()
        }

    def totals(self) -> Counter[str]:
        seconds: Counter[str] = Counter()
        for func, own in self.own.items():
            for area, share in self._mix(func, 0).items():
                seconds[area] += share * own
        return seconds

    def _mix(self, func: Any, depth: int) -> Counter[str]:
        filename = func[0]
        area = named_area(filename)
        if area is not None:
            return Counter({area: 1.0})
        if func in self._memo:
            return self._memo[func]
        callers = self._raw.get(func, (0, 0, 0, 0, {}))[4]
        weights = {c: v[2] for c, v in callers.items()}
        total = sum(weights.values())
        if depth > 12 or total <= 0:
            return Counter({"built-ins" if filename == "~" else "standard library": 1.0})
        mix: Counter[str] = Counter()
        for caller, weight in weights.items():
            for a, share in self._mix(caller, depth + 1).items():
                mix[a] += share * weight / total
        self._memo[func] = mix
        return mix


# --- the worker's side ----------------------------------------------------------------


class Tracer:
    """cProfile in every thread started once armed (and the main thread from then on),
    each timed by its own CPU clock. The profiler's own cost per call, measured here
    at start (``calibrate``), is taken out of the figures afterwards."""

    def __init__(self) -> None:
        self._profiles: list[cProfile.Profile] = []
        self._armed = threading.Event()
        self._main = cProfile.Profile(time.thread_time)
        threading.setprofile(self._hook)

    def _hook(self, frame: FrameType, event: str, arg: Any) -> None:
        sys.setprofile(None)
        if self._armed.is_set():
            profile = cProfile.Profile(time.thread_time)
            self._profiles.append(profile)
            profile.enable()

    def arm(self) -> None:
        self._armed.set()
        self._main.enable()

    @staticmethod
    def calibrate(calls: int = 200_000) -> float:
        """CPU seconds the profiler adds per call and return of a Python function."""

        def nothing() -> None:
            return None

        def loop() -> float:
            started = time.thread_time()
            for _ in range(calls):
                nothing()
            return time.thread_time() - started

        bare = min(loop() for _ in range(3))
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        traced = min(loop() for _ in range(3))
        profile.disable()
        return max(0.0, (traced - bare) / calls)

    def finish(self, out_dir: Path) -> None:
        self._main.disable()
        stats = pstats.Stats(self._main)
        for profile in self._profiles:
            profile.disable()
            stats.add(profile)
        stats.dump_stats(str(out_dir / "worker.pstats"))


def child(out_dir: Path, worker_args: list[str]) -> None:
    """Run ``settle worker`` profiled and counted from SIGUSR1 on; on exit write the
    profile, the profiler's cost per call and the counts into ``out_dir``."""
    counter = SqlCounter().install()
    per_call_s = Tracer.calibrate()
    profiler = Tracer()

    def arm(*_: Any) -> None:
        counter.reset()
        profiler.arm()

    signal.signal(signal.SIGUSR1, arm)
    from settlement.cli.main import app

    sys.argv = ["settle", "worker", *worker_args]
    try:
        app()
    except SystemExit:
        pass
    finally:
        profiler.finish(out_dir)
        (out_dir / "counts.json").write_text(
            json.dumps(counter.snapshot() | {"per_call_s": per_call_s})
        )


# --- the parent's side ----------------------------------------------------------------


class ProfiledWorker(WorkerProcesses):
    """One worker under ``child``; armed (profiling, counting) once it is idle."""

    def start(self, count: int, concurrency: int) -> None:
        super().start(count, concurrency)
        for process in self.processes():
            process.send_signal(signal.SIGUSR1)
        time.sleep(0.2)


@dataclass
class Profile:
    """CPU seconds by area, and by function: (label, own seconds, calls)."""

    areas: Counter[str]
    functions: list[tuple[str, float, int | None]]

    @classmethod
    def read(cls, out_dir: Path, per_call_s: float) -> Profile:
        stats = pstats.Stats(str(out_dir / "worker.pstats"))
        areas = Areas(stats, per_call_s)
        rows = stats.stats.items()  # type: ignore[attr-defined]
        functions: list[tuple[str, float, int | None]] = [
            (f"{name}  ({f if f == '~' else f'{_short(f)}:{line}'})", areas.own[key], int(row[1]))
            for key, row in rows
            for f, line, name in [key]
        ]
        return cls(areas.totals(), functions)

    def print(self, dvps: int, top: int) -> None:
        total = 1000.0 * sum(self.areas.values()) / dvps
        engine_ms = sum(
            1000 * s / dvps for a, s in self.areas.items() if a.startswith("engine's own")
        )
        print(
            f"\nProfiled CPU per settled DVP by area, the profiler's cost taken out"
            f" ({total:.1f} ms in all):"
        )
        for area, seconds in self.areas.most_common():
            ms = 1000 * seconds / dvps
            print(f"  {area:<45} {ms:>7.2f} ms  {100 * ms / total:>5.1f} %")
        print(
            f"  {'= libraries and the standard library':<45} {total - engine_ms:>7.2f} ms"
            f"  {100 * (total - engine_ms) / total:>5.1f} %"
        )
        print(f"\nThe {top} functions with the most own CPU time (ms per DVP):")
        for label, own_s, calls in sorted(self.functions, key=lambda r: -r[1])[:top]:
            count = f"{calls:>8} calls  " if calls is not None else ""
            print(f"  {1000 * own_s / dvps:>7.2f}  {count}{label}")


def _short(filename: str) -> str:
    text = filename.replace(os.sep, "/")
    for marker in ("/site-packages/", "/lib/python3.11/"):
        if marker in text:
            return text.split(marker, 1)[1]
    path = Path(filename).resolve()
    return str(path.relative_to(ROOT)) if ROOT in path.parents else text


def profile_run(bench: Bench, args: argparse.Namespace) -> None:
    from ledger.database import app_url_for
    from settlement import bootstrap
    from settlement.bootstrap import DatabaseUrls
    from settlement.settings import load_settings

    name = bench.fresh_database(1)
    owner_url = bench.server.url(name)
    world = bench.world(args.tickets)
    engine = bootstrap.build(
        load_settings(database_url=owner_url, pool_size=12),
        clock=world.clock,
        urls=DatabaseUrls(owner=owner_url, app=app_url_for(owner_url)),
    )
    out = tempfile.TemporaryDirectory(prefix="bench-dvp-profile-")
    out_dir = Path(out.name)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(out_dir)]
    worker = ProfiledWorker(
        world, owner_url, out_dir, args.tickets, postgres=bench.postgres, command=command
    )
    shape = RunShape(1, 3600.0, args.in_flight, 300.0, args.concurrency, limit=args.dvps)
    before = bench.xact_commit(name)
    bench.counter.reset()
    bench.counter.database = name
    try:
        cpu = CpuMeter(bench.nodes, worker, bench.postgres)
        r = EngineRun(world, engine, shape, cpu=cpu, processes=worker).run()
    finally:
        worker.stop()
        engine.close()
        world.close()
    commits = bench.xact_commit(name) - before - bench.counter.snapshot()["transactions"]
    bench.drop(name)
    settled = r["settled"]
    counts = json.loads((out_dir / "counts.json").read_text())
    per = r["cpu_ms_per_dvp"]
    print(
        f"{settled} of {r['instructed']} settled ({r['unwound']} unwound, {r['open']} open),"
        f" {r['dvp_per_s']:.2f} DVP/s, VERIFIED->SETTLED p50 {r['p50_s']:.2f} s;"
        f" profiled worker CPU {per['workers']:.1f} ms/DVP (with the profiler's overhead),"
        f" PostgreSQL {per['postgres']:.1f} (feeders' backends {per['pg_feeders']:.1f})"
    )
    print(
        f"The worker per DVP: {counts['statements'] / settled:.1f} statements,"
        f" {counts['transactions'] / settled:.1f} database transactions (counted in it);"
        f" the server's xact_commit less the feeders': {commits / settled:.1f}"
        f" (COMMITs {counts['commits'] / settled:.1f},"
        f" autocommitted statements {counts['autocommitted'] / settled:.1f})"
    )
    print(
        f"The profiler's cost per call, taken out of the figures:"
        f" {1e6 * counts['per_call_s']:.2f} us"
    )
    Profile.read(out_dir, counts["per_call_s"]).print(settled, args.top)
    if args.save:
        shutil.copyfile(out_dir / "worker.pstats", args.save)
        print(f"\nThe raw profile (pstats, profiler's cost included): {args.save}")
    out.cleanup()


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dvps", type=int, default=150)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--save", help="also write the raw profile (pstats) to this file")
    args = parser.parse_args()
    nodes = NodeProcesses()
    try:
        bench = open_bench(args, nodes)
        print(
            f"One profiled worker (--concurrency {args.concurrency}), {args.dvps} DVPs,"
            f" {args.in_flight} in flight, T {args.tickets} tickets, {args.channels} channels,"
            " 1 s closes; 2 shared cores: noisy figures.",
            flush=True,
        )
        profile_run(bench, args)
    finally:
        nodes.stop()


if __name__ == "__main__":
    main()
