"""The signed API through uvicorn on loopback: signed against unsigned, and a fixed rate.

Three apps are built from one engine (one database, one connection pool) and served
by one uvicorn process on three ports:

- signed: ``create_app(engine)`` as deployed;
- unsigned: the same app with the ``Guard`` middleware removed and a tiny middleware
  in its place that sets ``scope["state"]["actor"]`` to the same allocator. The routes,
  their validation, the service call (with its own idempotency record in the engine's
  transaction), serialisation and any other middleware are identical. What the
  unsigned app skips is exactly the guard's work: the body size check, the RFC 9421
  verification on the event loop (parsing Signature-Input, the public key the guard
  holds in memory, the Content-Digest hash and the Ed25519 check), the check that the
  key is not revoked and the recording of the nonce, the periodic nonce prune (in the
  background), and for POST the HTTP idempotency claim and completion (holding the
  response until it is stored). The guard group-commits its database calls: a GET's
  key and nonce check goes in one statement (committed asynchronously) with those of
  the GETs arriving while the previous statement ran; a POST's check goes in the
  statement that claims its Idempotency-Key, shared likewise, and its completion in
  another. At exit the server prints how many requests those statements carried;
- idem-only (POST only): the guard with its signature work taken out
  (``IdempotencyOnly``): a write still claims its Idempotency-Key and stores its
  response, which the API needs whatever authenticates a request (400, 409, 422 and
  replays are idempotency rules, not signature rules). Against it, a signed POST shows
  what its signature costs; against the unsigned app, what the whole guard costs. Its
  claim statement still records a nonce (it is the same statement), so it keeps a
  little of the signature's cost: its ratio errs low by that much.

Routes: GET /v1/commitments/{id} (one commitment) and POST /v1/commitments (create a
DRAFT, a fresh Idempotency-Key each). For each route and each app, a closed loop of 50
concurrent clients sends ``--requests`` requests, in ``--rounds`` turns that alternate
between the apps (signed first, then unsigned first, ...): the machine is shared, and
a drift in its other load over the run would otherwise fall on whichever app ran
later. Throughput is each app's requests over its summed run time; latencies are
pooled over its rounds. Then a fixed-rate run sends signed
GETs at ``--rate`` per second for ``--rate-seconds`` (open loop: latency counts from
the moment a request was due, so a slow server cannot hide its queueing).

Cores: the machine has two. The server (one uvicorn process: its event loop, which
runs the guard's statements and the GET's read, and the thread pool that runs the
sync routes, POST among them), PostgreSQL's
backends and the load generator (a separate process: one asyncio loop, one
``httpx.AsyncClient`` with one keep-alive connection per simulated client, since a
single pool of 50 cost the generator more CPU than the server used) all share them;
nothing is pinned.
The load generator is itself a Python HTTP client, so absolute requests/s are a floor
for the server. Its own CPU per request is printed too: where it costs about as much
as the server, it holds a core's share of the machine whichever app it loads, so the
throughput ratio shows what a signature costs a client on this machine, and the
server CPU per request what it costs the server alone.

Client-side signing is excluded from the timed runs: every request is built and signed
(its own nonce and ``created``) before its run starts, and the signing cost per
request is printed separately. The load generator's garbage collector is paused over
each timed run (its heap frozen first): holding a run's prepared requests, it
otherwise stopped for a full collection of 150-180 ms now and then, which the
fixed-rate run charged to the server as a p99 of 100-160 ms. The unsigned app gets the
same requests without the signature headers. Beside throughput and latency, each
closed-loop run prints the server process's CPU time per request (user + system),
which other load on the machine moves less than it moves throughput: signed minus
unsigned is roughly what the guard costs the server. PostgreSQL's CPU per request
(every process of the embedded server) is printed beside it: the guard's statements
cost the database too, on the same cores.

Last, the guard's steps are timed one by one in this process (no HTTP), to show where
a signed request's extra time goes: the RFC 9421 verification (CPU; and of it the bare
Ed25519 check as the server makes it, which no parsing change can remove), the CPU the
event loop spends on the statement that checks the key and records the nonce (the
async call the guard awaits), alone and shared by 20 requests, and the key read a
process does once per key. Each run also prints the server's garbage collector time
and how many requests a guard statement carried (``--young-threshold 700`` serves at
CPython's default threshold instead of the one ``settle serve`` sets, to compare).

    python bench/api.py [--requests 2000] [--clients 50] [--rounds 4] [--rate 200]
                        [--rate-seconds 10] [--young-threshold N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine, text
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ledger import embedded, migrate
from ledger.database import app_url_for
from settlement import bootstrap, signing
from settlement.api.app import create_app
from settlement.api.guard import Guard
from settlement.api.server import freeze_startup_heap
from settlement.bootstrap import DatabaseUrls
from settlement.clock import SystemClock
from settlement.domain.values import Actor, Role
from settlement.services.keys import KeyService, actor_of
from settlement.settings import load_settings

PARTY = "bench-party"
CLOCK = SystemClock()
#: the apps each route runs on; POST also on the guard without its signature work
MODES = ("signed", "unsigned")
POST_MODES = ("signed", "unsigned", "idem-only")
#: what the idem-only app's requests carry instead of a signature: the guard refuses a
#: request with no Signature field before it reads the body
PLACEHOLDER_SIGNATURE = {"Signature": "not-checked"}


def build(owner_url: str, pool_size: int) -> bootstrap.Services:
    urls = DatabaseUrls(owner=owner_url, app=app_url_for(owner_url))
    return bootstrap.build(load_settings(database_url=owner_url, pool_size=pool_size), urls=urls)


# -- the server process -----------------------------------------------------------


class FixedActor:
    """Stands in for the guard in the unsigned app: every request acts as one actor."""

    def __init__(self, app: ASGIApp, *, actor: Actor) -> None:
        self.app = app
        self._actor = actor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["actor"] = self._actor
        await self.app(scope, receive, send)


class IdempotencyOnly(Guard):
    """The guard with its signature work taken out, for the idem-only app: no RFC 9421
    verification and no nonce statement for a read; a write still claims its
    Idempotency-Key and stores its response, as an unsigned API would have to (the
    issue asks for those whatever authenticates a request). The claim is one statement
    with the key check and the nonce (migration 0010), so this app still records a
    nonce per write: a little of the signature's cost stays in this baseline."""

    def __init__(self, app: ASGIApp, *, actor: Actor, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._fixed_actor = actor

    async def _verified(
        self, request: signing.IncomingRequest, body: bytes, now: datetime
    ) -> tuple[signing.Verified, Actor]:
        nonce = uuid.uuid4().hex
        return signing.Verified(self._fixed_actor.id, nonce, now), self._fixed_actor

    async def _accept_nonce(self, verified: signing.Verified, now: datetime) -> None:
        return None


def serve(owner_url: str, key_id: str, young_threshold: int | None = None) -> None:
    """Serve the three apps and the ``Counters`` port until stdin closes; print their
    ports on one line first."""
    engine = build(owner_url, pool_size=20)
    record = KeyService(engine.db, CLOCK).active_public_key(key_id)[0]
    actor = actor_of(record)
    signed = create_app(engine)
    unsigned = create_app(engine)
    unsigned.user_middleware = [
        m for m in unsigned.user_middleware if getattr(m, "cls", None) is not Guard
    ]
    assert len(unsigned.user_middleware) == len(signed.user_middleware) - 1
    unsigned.add_middleware(FixedActor, actor=actor)
    idem_only = create_app(engine)
    idem_only.user_middleware = [
        Middleware(IdempotencyOnly, *m.args, actor=actor, **m.kwargs)
        if getattr(m, "cls", None) is Guard
        else m
        for m in idem_only.user_middleware
    ]
    collector = CollectorTime()
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=0,
                log_level="warning",
                access_log=False,
                lifespan="off",
                server_header=False,
            )
        )
        for app in (signed, unsigned, idem_only, Counters(signed, collector))
    ]

    async def run() -> None:
        tasks = [asyncio.create_task(s.serve()) for s in servers]
        while not all(s.started for s in servers):
            await asyncio.sleep(0.01)
        ports = [s.servers[0].sockets[0].getsockname()[1] for s in servers]
        print("READY", *ports, flush=True)
        await asyncio.gather(*tasks)

    def stop_on_eof() -> None:
        sys.stdin.read()
        for s in servers:
            s.should_exit = True

    threading.Thread(target=stop_on_eof, daemon=True).start()
    freeze_startup_heap()  # as `settle serve` does
    if young_threshold is not None:
        gc.set_threshold(young_threshold, *gc.get_threshold()[1:])
    gc.callbacks.append(collector.observe)
    try:
        # the event loop uvicorn itself picks for `settle serve` (uvloop where installed)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run())
    finally:
        engine.close()


def _guard_of(app: ASGIApp) -> Guard | None:
    """The guard in a built app's middleware stack (None before its first request)."""
    layer = getattr(app, "middleware_stack", None)
    while layer is not None and not isinstance(layer, Guard):
        layer = getattr(layer, "app", None)
    return layer


class Counters:
    """The fourth port: the server's counters as JSON, which the load generator reads
    before and after each run (outside its timing) to tell what happened during it:
    the signed app's key and nonce checks (GET) and claims (POST), each as statements
    and the requests they carried, and the garbage collector's passes and time."""

    def __init__(self, signed: ASGIApp, collector: CollectorTime) -> None:
        self._signed = signed
        self._collector = collector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        guard = _guard_of(self._signed)
        counts: dict[str, Any] = {
            "gc_seconds": self._collector.seconds,
            "gc_passes": sum(self._collector.passes),
        }
        for name in ("nonces", "claims"):
            stats = getattr(guard, name).stats if guard is not None else None
            counts[name] = [stats.statements, stats.items] if stats is not None else [0, 0]
        body = json.dumps(counts).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class CollectorTime:
    """The garbage collector's passes in this process and the time they took."""

    def __init__(self) -> None:
        self.passes = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0

    def observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.passes[info["generation"]] += 1


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


# -- the load generator -----------------------------------------------------------


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * q) - 1)]


def prepare(
    base: str,
    method: str,
    path: str,
    count: int,
    key: tuple[str, Ed25519PrivateKey] | None,
    extra_headers: dict[str, str] | None = None,
) -> tuple[list[httpx.Request], float]:
    """``count`` requests, each signed with its own nonce if ``key``; and the signing
    cost in microseconds per request."""
    requests: list[httpx.Request] = []
    signing_s = 0.0
    for _ in range(count):
        if method == "POST":
            request = httpx.Request(
                "POST",
                f"{base}{path}",
                json={"deal_ref": "BENCH-API", "amount": "1000.25", "currency": "USD"},
                headers={"Idempotency-Key": uuid.uuid4().hex, **(extra_headers or {})},
            )
        else:
            request = httpx.Request(method, f"{base}{path}", headers=extra_headers)
        if key is not None:
            t0 = time.perf_counter()
            signing.sign_request(request, key_id=key[0], private_key=key[1], created=CLOCK.now())
            signing_s += time.perf_counter() - t0
        requests.append(request)
    return requests, signing_s / count * 1e6


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection in this process (the load generator) meanwhile: what it
    holds now is frozen out of later collections and none runs until the end, so its
    pauses do not count as the server's latency. A run's reference cycles wait until
    then (a few MB over a run of thousands of requests)."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def _send(
    client: httpx.AsyncClient, request: httpx.Request, expect: int, failures: list[str]
) -> None:
    response = await client.send(request)
    await response.aread()
    if response.status_code != expect:
        failures.append(f"{response.status_code} {response.text[:200]}")


async def closed_loop(
    requests: list[httpx.Request],
    clients: int,
    expect: int,
    server: psutil.Process | None = None,
    database: psutil.Process | None = None,
) -> tuple[float, list[float], float, float, float]:
    """``clients`` workers send the requests back to back; requests/s, latencies (ms),
    and the CPU seconds of this process, of ``server`` and of the PostgreSQL server
    whose postmaster is ``database`` over the timed part only (not building the
    clients nor opening their connections)."""
    latencies_ms: list[float] = []
    failures: list[str] = []
    pending = iter(requests)
    # one client (one keep-alive connection) per worker: httpx checks every pooled
    # connection on each request, so one pool of 50 costs the load generator more CPU
    # than the server spends, on a machine where both share two cores
    async with contextlib.AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                httpx.AsyncClient(limits=httpx.Limits(max_connections=1), timeout=30)
            )
            for _ in range(clients)
        ]

        async def worker(client: httpx.AsyncClient) -> None:
            for request in pending:
                t0 = time.perf_counter()
                await _send(client, request, expect, failures)
                latencies_ms.append((time.perf_counter() - t0) * 1000)

        # open every connection before the clock starts
        await asyncio.gather(*(c.get(str(requests[0].url.join("/health"))) for c in pool))
        with _collector_paused():
            server_started = _cpu_s(server) if server is not None else 0.0
            database_started = _postgres_cpu_s(database) if database is not None else 0.0
            started, cpu_started = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker(c) for c in pool))
            elapsed = time.perf_counter() - started
            cpu_s = time.process_time() - cpu_started
            server_s = _cpu_s(server) - server_started if server is not None else 0.0
            database_s = (
                _postgres_cpu_s(database) - database_started if database is not None else 0.0
            )
    if failures:
        raise RuntimeError(f"{len(failures)} unexpected responses, e.g. {failures[0]}")
    return len(requests) / elapsed, latencies_ms, cpu_s, server_s, database_s


async def fixed_rate(requests: list[httpx.Request], rate: float, expect: int) -> list[float]:
    """Send request i at start + i/rate regardless of earlier answers; latencies (ms)
    from each request's due time."""
    latencies_ms: list[float] = []
    failures: list[str] = []
    # small pools, used in turn, for the reason closed_loop gives
    async with contextlib.AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                httpx.AsyncClient(limits=httpx.Limits(max_connections=4), timeout=30)
            )
            for _ in range(25)
        ]

        async def one(client: httpx.AsyncClient, request: httpx.Request, due: float) -> None:
            await _send(client, request, expect, failures)
            latencies_ms.append((time.perf_counter() - due) * 1000)

        await asyncio.gather(*(c.get(str(requests[0].url.join("/health"))) for c in pool))
        with _collector_paused():
            start = time.perf_counter() + 0.1
            tasks: list[asyncio.Task[None]] = []
            for i, request in enumerate(requests):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(pool[i % len(pool)], request, due)))
            await asyncio.gather(*tasks)
    if failures:
        raise RuntimeError(f"{len(failures)} unexpected responses, e.g. {failures[0]}")
    return latencies_ms


def guard_steps(owner_url: str, signer: tuple[str, Ed25519PrivateKey], count: int = 300) -> None:
    """Time the guard's steps for a signed GET one at a time, in this process."""
    engine = build(owner_url, pool_size=2)
    keys = KeyService(engine.db, CLOCK)
    key_id = signer[0]
    requests, _ = prepare("http://127.0.0.1:1", "GET", "/v1/commitments/x", count, signer)
    incoming = [
        signing.IncomingRequest(
            "GET", str(r.url), [(n.decode(), v.decode()) for n, v in r.headers.raw]
        )
        for r in requests
    ]
    public = keys.active_public_key(key_id)[1]

    def per_call_us(call: Callable[[int], object]) -> float:
        t0 = time.perf_counter()
        for i in range(count):
            call(i)
        return (time.perf_counter() - t0) / count * 1e6

    verify_us = per_call_us(
        lambda i: signing.verify_request(incoming[i], b"", lookup=lambda _: public, now=CLOCK.now())
    )
    # the same size of message as a signature base of these requests, checked as the
    # server checks it (libsodium, through the library's algorithm class)
    base = b"x" * 250
    signature = signer[1].sign(base)
    check = signing._Ed25519(public_key=public)
    ed25519_us = per_call_us(lambda _: check.verify(signature, base))
    lookup_us = per_call_us(lambda _: keys.active_public_key(key_id))  # a cache miss
    shared = 20

    async def nonce_statements() -> tuple[float, float]:
        """The async statement the guard awaits on its loop: loop CPU per request."""
        prefix = uuid.uuid4().hex
        t0 = time.thread_time()
        for i in range(count):
            await keys.accept_nonces_async([(key_id, f"{prefix}-{i}", CLOCK.now())])
        alone = (time.thread_time() - t0) / count * 1e6
        t0 = time.thread_time()
        for i in range(count):
            await keys.accept_nonces_async(
                [(key_id, f"{prefix}-b{i}-{j}", CLOCK.now()) for j in range(shared)]
            )
        return alone, (time.thread_time() - t0) / count / shared * 1e6

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        nonce_us, batched_us = runner.run(nonce_statements())
    engine.close()
    print(
        f"\nguard steps, {count} calls each, microseconds per request: verify (CPU)"
        f" {verify_us:.0f}, of which the Ed25519 check alone {ed25519_us:.0f};"
        f" key check + nonce (CPU on the event loop): a statement of its own"
        f" {nonce_us:.0f}, one shared by {shared} requests {batched_us:.0f} each;"
        f" key read on a cache miss only {lookup_us:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per route and app")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4, help="turns each app takes per route")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument(
        "--young-threshold",
        type=int,
        help="the server's first garbage collector threshold, instead of the one"
        " `settle serve` sets (700 is CPython's default)",
    )
    parser.add_argument("--serve", nargs=2, metavar=("OWNER_URL", "KEY_ID"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        owner_url, key_id = args.serve
        serve(owner_url, key_id, young_threshold=args.young_threshold)
        return

    data_dir = Path(os.environ.get("SETTLEMENT_DATA_DIR", ".settlement")).resolve()
    pg = embedded.ensure_running(data_dir)
    # a database of this run only, so a concurrent benchmark cannot migrate it under us
    name = f"bench_api_{os.getpid()}"
    admin = create_engine(pg.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
    owner_url = pg.url(name)
    migrate.upgrade(owner_url)
    setup = build(owner_url, pool_size=2)
    key = KeyService(setup.db, CLOCK).create(
        role=Role.ALLOCATOR, party=PARTY, person="bench", created_by="bench"
    )
    setup.close()
    signer = (key.record.key_id, key.private_key)

    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            owner_url,
            key.record.key_id,
            *(
                ["--young-threshold", str(args.young_threshold)]
                if args.young_threshold is not None
                else []
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().split()
        if not ready or ready[0] != "READY":
            raise RuntimeError(f"the server did not start: {ready}")
        bases = {
            "signed": f"http://127.0.0.1:{ready[1]}",
            "unsigned": f"http://127.0.0.1:{ready[2]}",
            "idem-only": f"http://127.0.0.1:{ready[3]}",
            "counters": f"http://127.0.0.1:{ready[4]}",
        }
        postmaster = int((pg.pgdata / "postmaster.pid").read_text().split()[0])
        report(args, bases, signer, psutil.Process(server.pid), psutil.Process(postmaster))
        guard_steps(owner_url, signer)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _counters(base: str) -> dict[str, Any]:
    """What the server's ``Counters`` port answers now."""
    counts: dict[str, Any] = httpx.get(base, timeout=30).json()
    return counts


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _postgres_cpu_s(postmaster: psutil.Process) -> float:
    """The CPU seconds of a PostgreSQL server: its postmaster, the backends and helpers
    running now, and those that have exited (their time is the postmaster's
    children's). The other databases of the embedded server are idle meanwhile."""
    times = postmaster.cpu_times()
    total = float(times.user + times.system + times.children_user + times.children_system)
    for child in postmaster.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            total += _cpu_s(child)
    return total


def report(
    args: argparse.Namespace,
    bases: dict[str, str],
    signer: tuple[str, Ed25519PrivateKey],
    server: psutil.Process,
    database: psutil.Process,
) -> None:
    # the commitment every GET reads, created through the signed app
    created_requests, _ = prepare(bases["signed"], "POST", "/v1/commitments", 1, signer)
    with httpx.Client(timeout=30) as http:
        created = http.send(created_requests[0])
    assert created.status_code == 201, created.text
    get_path = f"/v1/commitments/{created.json()['commitment_id']}"

    print(f"{os.cpu_count()} cores shared by server, PostgreSQL and load generator")
    print("CPU per request (us): server, PostgreSQL (all its processes), load generator")
    print(
        f"closed loop: {args.clients} clients, {args.requests} requests per route and app"
        f" in {args.rounds} rounds, the apps taking turns; latencies in ms; client-side"
        " signing excluded (shown separately)\n"
    )
    header = (
        f"{'route':<26} {'app':<9} {'req/s':>8} {'p50':>7} {'p99':>7}"
        f" {'server CPU':>10} {'of it GC':>8} {'PG CPU':>7} {'client CPU':>10}"
        f" {'sign us/req':>12}"
    )
    print(header)
    print("-" * len(header))
    routes = [
        ("GET", get_path, 200, "GET /v1/commitments/{id}"),
        ("POST", "/v1/commitments", 201, "POST /v1/commitments"),
    ]

    def requests_for(
        mode: str, method: str, path: str, count: int
    ) -> tuple[list[httpx.Request], float]:
        if mode == "signed":
            return prepare(bases[mode], method, path, count, signer)
        extra = PLACEHOLDER_SIGNATURE if mode == "idem-only" else None
        return prepare(bases[mode], method, path, count, None, extra)

    for method, path, expect, label in routes:
        modes = POST_MODES if method == "POST" else MODES
        # a short warm-up of each app (imports, prepared statements, connections)
        for mode in modes:
            warm, _ = requests_for(mode, method, path, 200)
            asyncio.run(closed_loop(warm, args.clients, expect))
        # in rounds, the apps taking turns (the order reversed every other round), so
        # a change in the machine's other load during the run falls on each alike
        elapsed_s = dict.fromkeys(modes, 0.0)
        cpu_s = dict.fromkeys(modes, 0.0)
        client_cpu_s = dict.fromkeys(modes, 0.0)
        database_cpu_s = dict.fromkeys(modes, 0.0)
        gc_s = dict.fromkeys(modes, 0.0)
        # the signed app's guard statements during its runs: [statements, items]
        carried = [0, 0]
        guard_call = "nonces" if method == "GET" else "claims"
        latencies: dict[str, list[float]] = {mode: [] for mode in modes}
        sign_us = 0.0
        per_round = max(1, args.requests // args.rounds)
        for turn in range(args.rounds):
            for mode in modes if turn % 2 == 0 else modes[::-1]:
                requests, signing_us = requests_for(mode, method, path, per_round)
                sign_us += signing_us / args.rounds
                before = _counters(bases["counters"])
                rps, run_latencies, client_s, server_s, database_s = asyncio.run(
                    closed_loop(requests, args.clients, expect, server, database)
                )
                after = _counters(bases["counters"])
                gc_s[mode] += after["gc_seconds"] - before["gc_seconds"]
                if mode == "signed":
                    for i in (0, 1):
                        carried[i] += after[guard_call][i] - before[guard_call][i]
                cpu_s[mode] += server_s
                database_cpu_s[mode] += database_s
                client_cpu_s[mode] += client_s
                elapsed_s[mode] += per_round / rps
                latencies[mode] += run_latencies
        count = per_round * args.rounds
        rps_of = {mode: count / elapsed_s[mode] for mode in modes}
        cpu_us = {mode: cpu_s[mode] / count * 1e6 for mode in modes}
        client_us = {mode: client_cpu_s[mode] / count * 1e6 for mode in modes}
        database_us = {mode: database_cpu_s[mode] / count * 1e6 for mode in modes}
        gc_us = {mode: gc_s[mode] / count * 1e6 for mode in modes}
        for mode in modes:
            sign = f"{sign_us:>12.0f}" if mode == "signed" else f"{'-':>12}"
            print(
                f"{label:<26} {mode:<9} {rps_of[mode]:>8.0f} {_p(latencies[mode], 0.5):>7.2f}"
                f" {_p(latencies[mode], 0.99):>7.2f} {cpu_us[mode]:>10.0f} {gc_us[mode]:>8.0f}"
                f" {database_us[mode]:>7.0f} {client_us[mode]:>10.0f} {sign}",
                flush=True,
            )
        # the extra server time a signed request costs, relative to an unsigned one:
        # for a write, against the unsigned app with the HTTP idempotency it needs
        # anyway (the signature's overhead) and against the bare app (the whole guard's)
        if "idem-only" in modes:
            baselines = [
                ("idem-only", "signing overhead", " (target < 20%)"),
                ("unsigned", "guard overhead (signature and HTTP idempotency)", ""),
            ]
        else:
            baselines = [("unsigned", "signing overhead", " (target < 20%)")]
        for baseline, what, target in baselines:
            ratio = rps_of[baseline] / rps_of["signed"]
            print(
                f"{'':<26} {baseline}/signed throughput {ratio:.2f}:"
                f" {what} {ratio - 1:.0%}{target};"
                f" server CPU per request +{cpu_us['signed'] - cpu_us[baseline]:.0f} us"
                f" ({cpu_us['signed'] / cpu_us[baseline] - 1:.0%}),"
                f" PostgreSQL's {database_us['signed'] - database_us[baseline]:+.0f} us",
                flush=True,
            )
        statements, items = carried
        if statements:
            what = "key and nonce check" if method == "GET" else "nonce and idempotency claim"
            print(
                f"{'':<26} signed: a {what} statement carried {items / statements:.1f}"
                f" requests ({items} in {statements})",
                flush=True,
            )

    count = int(args.rate * args.rate_seconds)
    requests, _ = prepare(bases["signed"], "GET", get_path, count, signer)
    before = _counters(bases["counters"])
    result = asyncio.run(fixed_rate(requests, args.rate, 200))
    after = _counters(bases["counters"])
    statements = after["nonces"][0] - before["nonces"][0]
    items = after["nonces"][1] - before["nonces"][1]
    print(
        f"\nfixed rate: signed GET at {args.rate:.0f} req/s for {args.rate_seconds:.0f} s"
        f" ({count} requests): p50 {_p(result, 0.5):.2f} ms, p99 {_p(result, 0.99):.2f} ms,"
        f" max {max(result):.2f} ms (target p99 < 25 ms); a key and nonce check statement"
        f" carried {items / max(statements, 1):.1f} requests;"
        f" the server's garbage collector {after['gc_passes'] - before['gc_passes']} passes,"
        f" {(after['gc_seconds'] - before['gc_seconds']) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
