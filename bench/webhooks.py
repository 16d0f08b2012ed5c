"""Webhook delivery: events per second and commit-to-delivery lag, beside the signed
API's request rate and the transitions rate with and without a subscription.

One run, on one database of its own:

1. transitions per second (``bench/transitions.py``'s lifecycles, K client processes)
   with no webhook endpoint: the outbox trigger stops at its first probe;
2. the same with one active endpoint subscribed to every event type, nothing being
   delivered: what writing the outbox costs the transitions;
3. that backlog drained by a delivery process alone (the worker and a local receiver
   on 127.0.0.1 that verifies every signature, as ``settlement.webhook_receiver``
   does): the delivery rate, events over the time from the first to the last arrival;
4. transitions again while a delivery process delivers them as they come, with K
   clients and with ``--lag-clients`` (1: a load one delivery process keeps up with):
   the rate beside the bare one (K only), and the lag of each event, its arrival at
   the receiver minus its ``occurred_at`` (the time of the change, taken just before
   its transaction commits), p50 and p99;
5. the signed API's rate on this machine: closed-loop signed GETs of one commitment
   through uvicorn on loopback (``bench/api.py`` measures the API in depth).

Figures, not a pass/fail test: the machine is shared and noisy, and the receiver, the
worker, the load and PostgreSQL share its cores.

    python bench/webhooks.py [--seconds 8] [--clients 4] [--lag-clients 1] [--api-seconds 5]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transitions import ALLOCATOR, build, run_engine, seed

from ledger import embedded, migrate
from ledger.webhooks import EventType
from settlement import bootstrap
from settlement.services.webhooks import DeliveryPolicy
from settlement.webhook_receiver import WebhookReceiver, handler_for, parse_keys


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def deliver(owner_url: str, port_queue: Any, go: Any, stop: Any, results: Any) -> None:
    """The delivery process: a receiver on a free loopback port (its URL sent back),
    and, once ``go`` is set, a delivery worker, until ``stop`` is set and nothing is
    due; then the arrivals (occurred_at, received_at in epoch seconds) go back on
    ``results``."""
    engine = build(owner_url)
    key = bootstrap.webhook_key(engine.settings)
    receiver = WebhookReceiver(parse_keys(key.public_document()))
    arrivals: list[tuple[float, float]] = []
    lock = threading.Lock()

    def on_event(event: dict[str, Any], duplicate: bool) -> None:
        occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
        with lock:
            arrivals.append((occurred.timestamp(), time.time()))

    base: list[str] = []
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0),
        handler_for(receiver, public_url=lambda path: base[0] + path, on_event=on_event),
    )
    base.append(f"http://127.0.0.1:{server.server_address[1]}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port_queue.put(base[0] + "/events")
    go.wait()
    worker = bootstrap.build_delivery_worker(
        engine, policy=DeliveryPolicy(timeout_s=5, batch=200, idle_s=0.02, gather_s=0.02)
    )
    while True:
        busy = worker.run_once()
        if not busy:
            if stop.is_set() and worker.counts()["pending"] == 0:
                break
            time.sleep(0.02)
    worker.close()
    server.shutdown()
    results.put((arrivals, len(receiver.duplicates)))
    engine.close()


def api_rate(owner_url: str, seconds: float, clients: int = 8) -> float:
    """Signed GETs of one commitment per second through uvicorn on loopback."""
    import uvicorn

    from settlement.api.app import create_app
    from settlement.client import SettlementClient
    from settlement.domain.values import Role
    from settlement.services.keys import KeyService

    engine = build(owner_url)
    created = KeyService(engine.db, engine.clock).create(
        role=Role.ALLOCATOR, party="bench-party", person="bench-api", created_by="bench"
    )
    commitment = engine.commitments.create(
        ALLOCATOR, deal_ref="BENCH-API", amount="1.00", currency="USD"
    ).commitment_id
    config = uvicorn.Config(create_app(engine), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    counts = [0] * clients
    deadline = time.perf_counter() + seconds

    def loop(n: int) -> None:
        with SettlementClient(url, created.record.key_id, created.private_key) as client:
            while time.perf_counter() < deadline:
                client.get_commitment(commitment)
                counts[n] += 1

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.should_exit = True
    engine.close()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--api-seconds", type=float, default=5.0)
    # a load the delivery keeps up with, so its lag is the delivery's, not a queue's
    parser.add_argument("--lag-clients", type=int, default=1)
    args = parser.parse_args()

    data_dir = Path(os.environ.get("SETTLEMENT_DATA_DIR", ".settlement")).resolve()
    server = embedded.ensure_running(data_dir)
    name = f"bench_webhooks_{os.getpid()}"
    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
    owner_url = server.url(name)
    try:
        migrate.upgrade(owner_url)
        seed(owner_url)
        report(owner_url, args)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _delivering(owner_url: str) -> tuple[Any, Any, Any, Any]:
    """A delivery process (waiting for its go), and an endpoint of its receiver that
    replaces the one before; (process, results, go, stop)."""
    ctx = mp.get_context("spawn")
    port_queue, results, go, stop = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Event()
    process = ctx.Process(target=deliver, args=(owner_url, port_queue, go, stop, results))
    process.start()
    url = port_queue.get(timeout=60)
    engine = build(owner_url)
    for old in engine.webhooks.endpoints(ALLOCATOR):
        if old.active:
            engine.webhooks.disable(ALLOCATOR, old.id)
    engine.webhooks.register(ALLOCATOR, url=url, event_types=list(EventType), party=None)
    engine.close()
    return process, results, go, stop


def _lags(arrivals: list[tuple[float, float]]) -> str:
    lags_ms = [(received - occurred) * 1000 for occurred, received in arrivals]
    return (
        f"lag p50 {_p(lags_ms, 0.5):.0f} ms, p99 {_p(lags_ms, 0.99):.0f} ms,"
        f" mean {statistics.fmean(lags_ms):.0f} ms"
    )


def _rate(arrivals: list[tuple[float, float]]) -> float:
    span = max(r for _, r in arrivals) - min(r for _, r in arrivals)
    return len(arrivals) / span if span > 0 else float("nan")


def _while_delivering(owner_url: str, clients: int, seconds: float, bare_tps: float | None) -> None:
    """Transitions of ``clients`` processes while their events are delivered as they
    come: the rate, and each event's lag."""
    process, results, go, stop = _delivering(owner_url)
    go.set()
    both = run_engine(owner_url, clients, seconds)
    share = f" ({both['tps'] / bare_tps:.2f} of the bare rate)" if bare_tps else ""
    print(f"K={clients}: transitions, subscribed + delivering: {both['tps']:6.0f} tx/s{share}")
    stop.set()
    arrivals, duplicates = results.get(timeout=900)
    process.join()
    print(
        f"K={clients}: delivered while settling: {len(arrivals)} events ({duplicates}"
        f" duplicates) at {_rate(arrivals):.0f} events/s; {_lags(arrivals)}",
        flush=True,
    )


def report(owner_url: str, args: argparse.Namespace) -> None:
    print(f"{os.cpu_count()} cores; {args.clients} client processes; {args.seconds:.0f} s runs")
    bare = run_engine(owner_url, args.clients, args.seconds)
    print(f"transitions, no endpoint:              {bare['tps']:8.0f} tx/s", flush=True)

    # subscribed, the receiver up but the worker not started: the outbox fills
    process, results, go, stop = _delivering(owner_url)
    outbox = run_engine(owner_url, args.clients, args.seconds)
    print(
        f"transitions, subscribed (no delivery):  {outbox['tps']:8.0f} tx/s"
        f" ({outbox['tps'] / bare['tps']:.2f} of the bare rate: the outbox's cost)",
        flush=True,
    )
    # the backlog, drained by the delivery process alone: the delivery rate
    stop.set()
    go.set()
    arrivals, duplicates = results.get(timeout=900)
    process.join()
    print(
        f"backlog delivered alone: {len(arrivals)} events ({duplicates} duplicates) at"
        f" {_rate(arrivals):.0f} events/s",
        flush=True,
    )

    for clients in dict.fromkeys((args.clients, args.lag_clients)):
        same_load = bare["tps"] if clients == args.clients else None
        _while_delivering(owner_url, clients, args.seconds, same_load)
    rate = api_rate(owner_url, args.api_seconds)
    print(f"signed API GETs (8 clients):            {rate:8.0f} req/s")
    print(f"finished {datetime.now(UTC).isoformat(timespec='seconds')}")


if __name__ == "__main__":
    main()
