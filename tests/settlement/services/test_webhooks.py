"""Webhook delivery against a real HTTP receiver on 127.0.0.1: signed and verified with
the receiver example, in order per commitment, at least once through a receiver that
is down, slow, failing or answering twice, a worker that dies after sending, and dead
letters that a replay brings back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID

import pytest

from ledger import webhooks as records
from settlement import bootstrap, signing
from settlement.bootstrap import DatabaseUrls, Services
from settlement.clock import ManualClock, SystemClock
from settlement.domain.states import Event, State
from settlement.services.webhooks import (
    DeliveryPolicy,
    DeliveryWorker,
    WebhookKey,
    key_from_text,
    key_text,
)
from settlement.webhook_receiver import Refused, WebhookReceiver, handler_for, parse_keys
from tests.support import ALLOCATOR, ENTITLED, new_commitment, reason_for

KEY = key_from_text(key_text(signing.new_private_key()))
POLICY = DeliveryPolicy(
    timeout_s=0.5,
    quick_tries=2,
    backoff_base_s=1.0,
    backoff_max_s=4.0,
    give_up_after_s=30.0,
    client_error_attempts=2,
    idle_s=0.05,
)


@dataclass
class Behaviour:
    """What the receiver answers: a status (after verifying), after a delay."""

    status: int = 204
    delay_s: float = 0.0
    posts: int = 0
    refused: list[str] = field(default_factory=list)


@dataclass
class Receiver:
    url: str
    receiver: WebhookReceiver
    behaviour: Behaviour


@contextmanager
def receiving(clock: ManualClock, key: WebhookKey = KEY, port: int = 0) -> Iterator[Receiver]:
    receiver = WebhookReceiver(parse_keys(key.public_document()), now=clock.now)
    behaviour = Behaviour()
    base: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            behaviour.posts += 1
            status = behaviour.status
            try:
                receiver.receive("POST", base[0] + self.path, list(self.headers.items()), body)
            except Refused as exc:
                behaviour.refused.append(str(exc))
                status = 401
            if behaviour.delay_s:
                time.sleep(behaviour.delay_s)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("location", "http://127.0.0.1:9/elsewhere")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    base.append(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(base[0] + "/hook", receiver, behaviour)
    finally:
        server.shutdown()
        server.server_close()


def _worker(engine: Services, clock: ManualClock, key: WebhookKey = KEY) -> DeliveryWorker:
    return DeliveryWorker(engine.db, clock, key, policy=POLICY)


def _subscribe(engine: Services, url: str, types: list[str] | None = None) -> UUID:
    endpoint = engine.webhooks.register(
        ALLOCATOR, url=url, event_types=types or list(records.EventType), party=None
    )
    return endpoint.id


def _drain(worker: DeliveryWorker) -> None:
    while worker.run_once():
        pass


def _deliveries(engine: Services, endpoint: UUID) -> list[records.DeliveryRecord]:
    return engine.webhooks.deliveries(ALLOCATOR, endpoint, limit=200)


def test_signed_deliveries_in_order(fresh_engine: Services, clock: ManualClock) -> None:
    with receiving(clock) as r:
        endpoint = _subscribe(fresh_engine, r.url)
        first = new_commitment(fresh_engine.commitments, State.VERIFIED)
        second = new_commitment(fresh_engine.commitments, State.PENDING_REVIEW)
        fresh_engine.commitments.apply(
            ENTITLED[Event.REQUEST_INFO], second, Event.REQUEST_INFO,
            reason=reason_for(Event.REQUEST_INFO),
        )  # fmt: skip
        worker = _worker(fresh_engine, clock)
        _drain(worker)
    assert r.behaviour.refused == []
    by_commitment: dict[str, list[tuple[int, str]]] = {}
    for event in r.receiver.events:
        by_commitment.setdefault(event["commitment_id"], []).append(
            (event["sequence"], event["type"])
        )
    assert [t for _, t in by_commitment[str(first)]] == [
        "commitment.created",
        "commitment.submitted",
        "review.approved",
    ]
    assert [t for _, t in by_commitment[str(second)]] == [
        "commitment.created",
        "commitment.submitted",
        "review.info_requested",
    ]
    (info,) = [e for e in r.receiver.events if e["type"] == "review.info_requested"]
    assert info["data"]["reason"] == reason_for(Event.REQUEST_INFO)
    assert info["data"]["from_state"] == "PENDING_REVIEW" and info["data"]["to_state"] == "DRAFT"
    assert {d.status for d in _deliveries(fresh_engine, endpoint)} == {"delivered"}


def test_another_key_is_refused(fresh_engine: Services, clock: ManualClock) -> None:
    """A delivery signed by a key the receiver does not hold does not verify."""
    stranger = key_from_text(key_text(signing.new_private_key()))
    with receiving(clock) as r:
        endpoint = _subscribe(fresh_engine, r.url, ["commitment.created"])
        new_commitment(fresh_engine.commitments, State.DRAFT)
        _worker(fresh_engine, clock, stranger).run_once()
    assert r.receiver.events == [] and len(r.behaviour.refused) == 1
    (delivery,) = _deliveries(fresh_engine, endpoint)
    assert (delivery.status, delivery.last_status) == ("pending", 401)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_receiver_down_then_up(fresh_engine: Services, clock: ManualClock) -> None:
    port = _free_port()
    endpoint = _subscribe(fresh_engine, f"http://127.0.0.1:{port}/hook", ["commitment.created"])
    new_commitment(fresh_engine.commitments, State.DRAFT)
    worker = _worker(fresh_engine, clock)
    assert worker.run_once() == 1
    (failed,) = _deliveries(fresh_engine, endpoint)
    assert failed.status == "pending" and failed.last_status is None and failed.last_error
    assert failed.next_attempt_at == clock.now() + timedelta(seconds=1)
    assert worker.run_once() == 0  # not due before its backoff
    with receiving(clock, port=port) as r:
        clock.advance(timedelta(seconds=1))
        _drain(worker)
    assert [e["type"] for e in r.receiver.events] == ["commitment.created"]
    (delivered,) = _deliveries(fresh_engine, endpoint)
    assert (delivered.status, delivered.attempts) == ("delivered", 2)


def test_slow_answer_is_redelivered_as_a_duplicate(
    fresh_engine: Services, clock: ManualClock
) -> None:
    """A receiver that answers after the timeout got the event; the retry brings the
    same event id again, recognisable as a duplicate."""
    with receiving(clock) as r:
        endpoint = _subscribe(fresh_engine, r.url, ["commitment.created"])
        new_commitment(fresh_engine.commitments, State.DRAFT)
        worker = _worker(fresh_engine, clock)
        r.behaviour.delay_s = 0.8
        worker.run_once()
        r.behaviour.delay_s = 0.0
        clock.advance(timedelta(seconds=5))
        _drain(worker)
    assert len(r.receiver.events) == 1
    assert r.receiver.duplicates and set(r.receiver.duplicates) == {r.receiver.events[0]["id"]}
    assert _deliveries(fresh_engine, endpoint)[0].status == "delivered"


def test_500_is_retried_quickly_then_later(fresh_engine: Services, clock: ManualClock) -> None:
    with receiving(clock) as r:
        endpoint = _subscribe(fresh_engine, r.url, ["commitment.created"])
        new_commitment(fresh_engine.commitments, State.DRAFT)
        worker = _worker(fresh_engine, clock)
        r.behaviour.status = 500
        worker.run_once()
        assert r.behaviour.posts == POLICY.quick_tries
        (failed,) = _deliveries(fresh_engine, endpoint)
        assert (failed.status, failed.last_status, failed.attempts) == ("pending", 500, 1)
        r.behaviour.status = 200
        clock.advance(timedelta(seconds=1))
        _drain(worker)
    assert _deliveries(fresh_engine, endpoint)[0].status == "delivered"
    # the receiver saw the event on every post; the 500s were answers it gave itself
    assert len(r.receiver.events) == 1 and len(r.receiver.duplicates) == POLICY.quick_tries


def test_a_redirect_is_not_followed(fresh_engine: Services, clock: ManualClock) -> None:
    with receiving(clock) as r:
        endpoint = _subscribe(fresh_engine, r.url, ["commitment.created"])
        new_commitment(fresh_engine.commitments, State.DRAFT)
        r.behaviour.status = 302
        _worker(fresh_engine, clock).run_once()
    assert r.behaviour.posts == 1
    (failed,) = _deliveries(fresh_engine, endpoint)
    assert failed.last_status == 302 and "redirect" in (failed.last_error or "")


def test_outside_the_local_network_a_name_that_resolves_inside_is_not_posted(
    fresh_engine: Services, clock: ManualClock
) -> None:
    """Registration checks literal addresses; a name is resolved before each POST, and
    one that resolves to a loopback address is refused there, nothing sent."""
    with receiving(clock) as r:
        by_name = r.url.replace("127.0.0.1", "localhost")
        endpoint = _subscribe(fresh_engine, by_name, ["commitment.created"])
        new_commitment(fresh_engine.commitments, State.DRAFT)
        worker = DeliveryWorker(fresh_engine.db, clock, KEY, policy=POLICY, local_network=False)
        worker.run_once()
        assert r.behaviour.posts == 0
        (held,) = _deliveries(fresh_engine, endpoint)
        assert held.status == "pending" and "loopback" in (held.last_error or "")
        clock.advance(timedelta(hours=1))  # past its next attempt
        _worker(fresh_engine, clock).run_once()  # the local network's worker sends it
        assert r.behaviour.posts == 1


def test_worker_dies_after_sending(fresh_engine: Services, clock: ManualClock) -> None:
    """The claim outlives a worker that sent and never recorded: when its lease runs out
    the event is sent again (at least once), with the same id."""
    with receiving(clock) as r:
        endpoint = _subscribe(fresh_engine, r.url, ["commitment.created"])
        new_commitment(fresh_engine.commitments, State.DRAFT)
        dying = _worker(fresh_engine, clock)
        (claim,) = dying.claim()
        assert dying.send(claim).delivered  # ... and the process is gone before recording
        survivor = _worker(fresh_engine, clock)
        assert survivor.run_once() == 0  # the lease still holds
        clock.advance(timedelta(seconds=POLICY.lease_s + 1))
        _drain(survivor)
    assert len(r.receiver.events) == 1 and r.receiver.duplicates == [str(claim.event_id)]
    (delivered,) = _deliveries(fresh_engine, endpoint)
    assert (delivered.status, delivered.attempts) == ("delivered", 2)


def test_dead_letter_holds_the_commitment_back_until_replayed(
    fresh_engine: Services, clock: ManualClock
) -> None:
    with receiving(clock) as r:
        endpoint = _subscribe(fresh_engine, r.url)
        commitment = new_commitment(fresh_engine.commitments, State.DRAFT)
        worker = _worker(fresh_engine, clock)
        r.behaviour.status = 503
        for _ in range(int(POLICY.give_up_after_s / POLICY.backoff_max_s) + 2):
            worker.run_once()
            if any(d.status == "dead" for d in _deliveries(fresh_engine, endpoint)):
                break
            clock.advance(timedelta(seconds=POLICY.backoff_max_s))
        (dead,) = _deliveries(fresh_engine, endpoint)
        assert dead.status == "dead"
        # a later event of the same commitment waits behind the dead one
        fresh_engine.commitments.apply(ALLOCATOR, commitment, Event.SUBMIT)
        r.behaviour.status = 204
        _drain(worker)
        assert [d.status for d in _deliveries(fresh_engine, endpoint)] == ["pending", "dead"]
        assert fresh_engine.webhooks.replay(ALLOCATOR, endpoint) == [dead.id]
        _drain(worker)
    assert [e["type"] for e in r.receiver.events] == [
        "commitment.created",
        "commitment.submitted",
    ]
    assert {d.status for d in _deliveries(fresh_engine, endpoint)} == {"delivered"}


def test_a_refusing_receiver_goes_dead_sooner(fresh_engine: Services, clock: ManualClock) -> None:
    with receiving(clock) as r:
        endpoint = _subscribe(fresh_engine, r.url, ["commitment.created"])
        new_commitment(fresh_engine.commitments, State.DRAFT)
        worker = _worker(fresh_engine, clock)
        r.behaviour.status = 410
        for _ in range(POLICY.client_error_attempts):
            worker.run_once()
            clock.advance(timedelta(seconds=POLICY.backoff_max_s))
    (dead,) = _deliveries(fresh_engine, endpoint)
    assert (dead.status, dead.attempts, dead.last_status) == (
        "dead",
        POLICY.client_error_attempts,
        410,
    )


@pytest.mark.parametrize("status", [408, 429])
def test_busy_answers_are_retried_not_dead(
    fresh_engine: Services, clock: ManualClock, status: int
) -> None:
    with receiving(clock) as r:
        endpoint = _subscribe(fresh_engine, r.url, ["commitment.created"])
        new_commitment(fresh_engine.commitments, State.DRAFT)
        worker = _worker(fresh_engine, clock)
        r.behaviour.status = status
        for _ in range(POLICY.client_error_attempts + 1):
            worker.run_once()
            clock.advance(timedelta(seconds=POLICY.backoff_max_s))
    (pending,) = _deliveries(fresh_engine, endpoint)
    assert pending.status == "pending"


def test_the_worker_thread_delivers(fresh_engine: Services, clock: ManualClock) -> None:
    with receiving(clock) as r:
        _subscribe(fresh_engine, r.url, ["commitment.created"])
        worker = _worker(fresh_engine, clock)
        worker.start()
        try:
            new_commitment(fresh_engine.commitments, State.DRAFT)
            deadline = time.monotonic() + 10
            while not r.receiver.events and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            worker.stop()
            worker.close()
    assert [e["type"] for e in r.receiver.events] == ["commitment.created"]
    assert worker.counts() == {"pending": 0, "dead": 0}


def test_a_trickle_gathers_between_rounds_a_backlog_does_not(
    fresh_engine: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's pauses: after a round short of a batch it waits ``gather_s`` (events
    then go a few at a time, not one round each); after a full round none (a backlog
    drains round after round); after an empty one ``idle_s``."""
    policy = replace(POLICY, batch=4, gather_s=0.25)
    worker = DeliveryWorker(fresh_engine.db, clock, KEY, policy=policy)
    rounds = iter([4, 1, 0])
    waits: list[float] = []

    def run_once() -> int:
        claimed = next(rounds, None)
        if claimed is None:
            worker.stop()
            return 0
        return claimed

    monkeypatch.setattr(worker, "run_once", run_once)
    monkeypatch.setattr(worker._stop, "wait", waits.append)
    worker.run()
    worker.close()
    assert waits == [policy.gather_s, policy.idle_s, policy.idle_s]


def test_a_killed_deliver_process_leaves_the_event_to_be_sent_again(
    fresh_engine: Services, fresh_urls: DatabaseUrls
) -> None:
    """`settle webhooks deliver` is killed (SIGKILL) while its POST is at the receiver,
    before it can record the delivery: the event is delivered again once the claim's
    lease has run out, with the same id (at least once)."""
    real = SystemClock()
    key = bootstrap.webhook_key(fresh_engine.settings)  # the one the process signs with
    received = threading.Event()
    release = threading.Event()
    receiver = WebhookReceiver(parse_keys(key.public_document()), now=real.now)
    base: list[str] = []

    def hold_first(event: dict[str, Any], duplicate: bool) -> None:
        if not received.is_set():
            received.set()
            release.wait(30)  # the worker is killed meanwhile

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0),
        handler_for(receiver, public_url=lambda path: base[0] + path, on_event=hold_first),
    )
    base.append(f"http://127.0.0.1:{server.server_address[1]}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = _subscribe(fresh_engine, base[0] + "/hook", ["commitment.created"])
    new_commitment(fresh_engine.commitments, State.DRAFT)
    env = {**os.environ, "SETTLEMENT_DATABASE_URL": fresh_urls.owner}
    proc = subprocess.Popen(
        [sys.executable, "-m", "settlement.cli.main", "webhooks", "deliver"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert received.wait(60), "the deliver process never posted"
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        release.set()
    (claimed,) = _deliveries(fresh_engine, endpoint)
    assert (claimed.status, claimed.attempts) == ("pending", 1)
    # a worker that comes along after the lease ran out sends it again
    later = ManualClock(real.now() + timedelta(seconds=bootstrap.webhook_policy(
        fresh_engine.settings).lease_s + 1))  # fmt: skip
    receiver.now = later.now
    survivor = DeliveryWorker(fresh_engine.db, later, key, policy=POLICY)
    try:
        _drain(survivor)
    finally:
        survivor.close()
        server.shutdown()
        server.server_close()
    assert len(receiver.events) == 1
    assert receiver.duplicates == [receiver.events[0]["id"]]
    (delivered,) = _deliveries(fresh_engine, endpoint)
    assert (delivered.status, delivered.attempts) == ("delivered", 2)
