"""Group commit of the guard's database calls (``settlement.api.batching``, migration
0010), on a real database: what one statement decides for many requests is what one
statement per request would have decided.

Over HTTP, requests are made to share a statement by holding ``api_nonces`` locked
from another session: the first request's statement waits on the lock, and the
requests sent meanwhile queue behind it and go together in the next statement."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, create_engine, text

from ledger import api_keys
from ledger.api_keys import ClaimRequest, Completion, StoredResponse
from settlement import bootstrap
from settlement.api.batching import GroupCall
from settlement.api.guard import Guard
from settlement.bootstrap import DatabaseUrls
from settlement.clock import ManualClock
from settlement.domain.values import Role
from settlement.services.keys import KeyService

from .conftest import Api, Key, problem_of, register, running_api

BODY = {"deal_ref": "DEAL-BATCH", "amount": "10.00", "currency": "USD"}


def guard_of(api: Api) -> Guard:
    layer: Any = api.app.middleware_stack
    while not isinstance(layer, Guard):
        layer = layer.app
    return layer


def nonces_of(api: Api, key: Key) -> set[str]:
    with api.engine.db.unit_of_work() as uow:
        rows = uow.execute("SELECT nonce FROM api_nonces WHERE key_id = :k", {"k": key.key_id})
        return {nonce for (nonce,) in rows}


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.01)


@pytest.fixture
def api(fresh_engine: bootstrap.Services, clock: ManualClock) -> Iterator[Api]:
    """The API over a database of this test's own (the tests lock its tables)."""
    with running_api(fresh_engine, clock) as running:
        # one request, so the app has built its middleware stack (and its guard); it
        # also starts the first prune of old nonces, which must not meet the lock
        assert running.send(running.allocator, "GET", "/v1/commitments").status_code == 200
        pruning = guard_of(running)._pruning
        eventually(lambda: pruning is None or pruning.done(), "the first prune finished")
        yield running


@pytest.fixture
def owner(fresh_urls: DatabaseUrls) -> Iterator[Connection]:
    engine = create_engine(fresh_urls.owner, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        yield connection
    engine.dispose()


class NoncesLocked:
    """``api_nonces`` held locked by the owner's session: statements that record
    nonces wait for it."""

    def __init__(self, owner: Connection) -> None:
        self._owner = owner
        self._terminated: set[int] = set()

    def blocked_backends(self) -> list[int]:
        rows = self._owner.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
                " AND (query LIKE '%api_nonces%' OR query LIKE '%api_request_claims%')"
                " ORDER BY pid"
            )
        )
        return [pid for (pid,) in rows]

    def wait_for_blocked(self, count: int = 1) -> list[int]:
        """The ``count`` statements waiting on the lock (not those terminated already)."""
        found: list[int] = []

        def blocked() -> bool:
            found[:] = [p for p in self.blocked_backends() if p not in self._terminated]
            return len(found) == count

        eventually(blocked, f"{count} statements waiting on the lock")
        return list(found)

    def occupy(
        self,
        pool: ThreadPoolExecutor,
        calls: GroupCall[Any, Any],
        make: Callable[[int], Callable[[], httpx.Response]],
    ) -> list[Future[httpx.Response]]:
        """Send requests one by one until ``calls`` runs as many statements as it may,
        each waiting on the lock: requests sent next queue for the statement after."""
        sent = []
        for i in range(calls.max_running):
            sent.append(pool.submit(make(i)))
            self.wait_for_blocked(i + 1)
        return sent

    def terminate(self, pid: int) -> None:
        self._owner.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        self._terminated.add(pid)


@contextmanager
def nonces_locked(owner: Connection) -> Iterator[NoncesLocked]:
    # a second session does the locking, so the first stays free to look and terminate
    with owner.engine.connect() as locker:
        locker.execute(text("BEGIN"))
        locker.execute(text("LOCK TABLE api_nonces IN ACCESS EXCLUSIVE MODE"))
        try:
            yield NoncesLocked(owner)
        finally:
            locker.execute(text("ROLLBACK"))


def read(api: Api, key: Key, nonce: str) -> Callable[[], httpx.Response]:
    return lambda: api.send(key, "GET", "/v1/commitments", nonce=nonce)


def create(api: Api, key: Key, nonce: str, idempotency_key: str) -> Callable[[], httpx.Response]:
    return lambda: api.send(
        key,
        "POST",
        "/v1/commitments",
        json=BODY,
        nonce=nonce,
        headers={"Idempotency-Key": idempotency_key},
    )


# -- over HTTP ----------------------------------------------------------------------


def test_two_reads_with_one_nonce_in_one_batch_exactly_one_is_accepted(
    api: Api, owner: Connection
) -> None:
    nonces = guard_of(api).nonces
    with ThreadPoolExecutor(6) as pool, nonces_locked(owner) as lock:
        firsts = lock.occupy(pool, nonces, lambda i: read(api, api.allocator, f"first-{i}"))
        twins = [pool.submit(read(api, api.allocator, "twin")) for _ in range(2)]
        eventually(lambda: nonces.stats.queued == 2, "both twins queued")
        before = nonces.stats.statements
    assert [f.result(timeout=15).status_code for f in firsts] == [200] * len(firsts)
    statuses = sorted(f.result(timeout=15).status_code for f in twins)
    assert statuses == [200, 401]
    refused = next(f.result() for f in twins if f.result().status_code == 401)
    problem_of(refused, 401, "nonce_reused")
    # the twins went in one statement
    assert nonces.stats.statements == before + 1
    assert nonces.stats.last == 2
    assert {"first-0", "twin"} <= nonces_of(api, api.allocator)


def test_two_writes_with_one_nonce_in_one_batch_exactly_one_is_accepted(
    api: Api, owner: Connection
) -> None:
    claims = guard_of(api).claims
    with ThreadPoolExecutor(6) as pool, nonces_locked(owner) as lock:
        firsts = lock.occupy(
            pool, claims, lambda i: create(api, api.allocator, f"w-first-{i}", f"idem-first-{i}")
        )
        twins = [
            pool.submit(create(api, api.allocator, "w-twin", f"idem-twin-{i}")) for i in range(2)
        ]
        eventually(lambda: claims.stats.queued == 2, "both twins queued")
        before = claims.stats.statements
    assert [f.result(timeout=15).status_code for f in firsts] == [201] * len(firsts)
    responses = [f.result(timeout=15) for f in twins]
    assert sorted(r.status_code for r in responses) == [201, 401]
    problem_of(next(r for r in responses if r.status_code == 401), 401, "nonce_reused")
    assert claims.stats.statements == before + 1
    assert claims.stats.last == 2
    # the refused one claimed nothing: its Idempotency-Key is still unused
    refused_key = next(f"idem-twin-{i}" for i, r in enumerate(responses) if r.status_code == 401)
    with api.engine.db.unit_of_work() as uow:
        held = uow.execute(
            "SELECT count(*) FROM api_idempotency WHERE key_id = :k AND idempotency_key = :i",
            {"k": api.allocator.key_id, "i": refused_key},
        ).scalar_one()
    assert held == 0


def test_two_writes_with_one_idempotency_key_in_one_batch_one_acts(
    api: Api, owner: Connection
) -> None:
    claims = guard_of(api).claims
    with ThreadPoolExecutor(6) as pool, nonces_locked(owner) as lock:
        firsts = lock.occupy(
            pool, claims, lambda i: create(api, api.allocator, f"k-first-{i}", f"idem-k-{i}")
        )
        twins = [
            pool.submit(create(api, api.allocator, f"k-twin-{i}", "idem-shared")) for i in range(2)
        ]
        eventually(lambda: claims.stats.queued == 2, "both twins queued")
    assert [f.result(timeout=15).status_code for f in firsts] == [201] * len(firsts)
    responses = [f.result(timeout=15) for f in twins]
    assert claims.stats.last == 2
    assert sorted(r.status_code for r in responses) == [201, 409]
    problem_of(next(r for r in responses if r.status_code == 409), 409, "request_in_flight")


def test_a_read_queued_after_its_key_was_revoked_is_refused(api: Api, owner: Connection) -> None:
    nonces = guard_of(api).nonces
    with ThreadPoolExecutor(4) as pool, nonces_locked(owner) as lock:
        firsts = lock.occupy(pool, nonces, lambda i: read(api, api.auditor, f"rv-first-{i}"))
        assert api.keys.revoke(api.allocator.key_id, revoked_by="test") is True
        after = pool.submit(read(api, api.allocator, "rv-after"))
        eventually(lambda: nonces.stats.queued == 1, "the later read queued")
    assert [f.result(timeout=15).status_code for f in firsts] == [200] * len(firsts)
    problem_of(after.result(timeout=15), 401, "key_revoked")
    assert "rv-after" not in nonces_of(api, api.allocator)


def test_a_killed_batch_answers_every_waiting_request_with_503(api: Api, owner: Connection) -> None:
    nonces = guard_of(api).nonces
    with ThreadPoolExecutor(8) as pool, nonces_locked(owner) as lock:
        firsts = lock.occupy(pool, nonces, lambda i: read(api, api.allocator, f"f-first-{i}"))
        for pid in lock.wait_for_blocked(len(firsts)):
            lock.terminate(pid)
        failed_firsts = [f.result(timeout=15) for f in firsts]
        # statements that fail while three more reads wait: those go in one statement
        lones = lock.occupy(pool, nonces, lambda i: read(api, api.allocator, f"f-lone-{i}"))
        waiting = [pool.submit(read(api, api.allocator, f"f-{i}")) for i in range(3)]
        eventually(lambda: nonces.stats.queued == 3, "three reads queued")
        for pid in lock.wait_for_blocked(len(lones)):
            lock.terminate(pid)
        failed_lones = [f.result(timeout=15) for f in lones]
        (pid,) = lock.wait_for_blocked()
        assert nonces.stats.last == 3
        lock.terminate(pid)
        failed = [f.result(timeout=15) for f in waiting]
    for response in [*failed_firsts, *failed_lones, *failed]:
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
    # nothing was recorded for them, and the next request goes through
    recorded = nonces_of(api, api.allocator)
    assert not {n for n in recorded if n.startswith("f-")}
    assert read(api, api.allocator, "f-after")().status_code == 200


# -- the statements themselves --------------------------------------------------------


def test_one_nonce_batch_decides_each_request_as_one_after_another(
    api: Api, clock: ManualClock
) -> None:
    assert api.keys.revoke(api.auditor.key_id, revoked_by="test") is True
    keys = KeyService(api.engine.db, clock)
    calls = GroupCall(keys.accept_nonces_async)
    me, other, revoked = api.allocator.key_id, api.other_allocator.key_id, api.auditor.key_id
    checks = [
        (me, "x"),
        (revoked, "y"),
        ("key-nobody", "z"),
        (me, "x"),
        (other, "x"),
        (me, "w"),
        (other, "x"),
    ]

    async def all_at_once() -> list[api_keys.NonceOutcome]:
        return list(await asyncio.gather(*(calls((k, n, clock.now())) for k, n in checks)))

    outcomes = asyncio.run(all_at_once())
    assert calls.stats.statements == 1
    assert outcomes == [
        "accepted",
        "revoked",
        "unknown",
        "replayed",
        "accepted",
        "accepted",
        "replayed",
    ]
    assert nonces_of(api, api.allocator) >= {"x", "w"}
    assert nonces_of(api, api.auditor) == set()
    # the next batch finds them all
    again = asyncio.run(all_at_once())
    assert again == [
        "replayed",
        "revoked",
        "unknown",
        "replayed",
        "replayed",
        "replayed",
        "replayed",
    ]


def test_revocation_between_batches_refuses_the_next_one(api: Api, clock: ManualClock) -> None:
    calls = GroupCall(KeyService(api.engine.db, clock).accept_nonces_async)
    me = api.allocator.key_id

    async def check(nonce: str) -> api_keys.NonceOutcome:
        return await calls((me, nonce, clock.now()))

    assert asyncio.run(check("before")) == "accepted"
    api_keys.revoke_key(api.engine.db, me, at=clock.now(), revoked_by="test")
    assert asyncio.run(check("after")) == "revoked"
    assert calls.stats.statements == 2
    assert "after" not in nonces_of(api, api.allocator)


def test_requests_wait_for_the_running_statement_and_then_go_together() -> None:
    started: list[list[int]] = []

    async def scenario() -> list[int]:
        release = asyncio.Event()

        async def decide(items: Any) -> list[int]:
            started.append(list(items))
            if len(started) == 1:
                # the first statement runs until the test lets it finish
                await release.wait()
            return [i * 10 for i in items]

        calls = GroupCall(decide, max_running=1)
        first = asyncio.create_task(calls(1))
        while not started:
            await asyncio.sleep(0.001)
        later = [asyncio.create_task(calls(i)) for i in (2, 3, 4)]
        await asyncio.sleep(0.01)
        assert calls.stats.queued == 3
        release.set()
        return [await first, *[await t for t in later]]

    assert asyncio.run(scenario()) == [10, 20, 30, 40]
    assert started == [[1], [2, 3, 4]]


def test_a_second_statement_starts_while_the_first_runs_and_a_third_waits() -> None:
    started: list[list[int]] = []

    async def scenario() -> list[int]:
        release = asyncio.Event()

        async def decide(items: Any) -> list[int]:
            started.append(list(items))
            if len(started) <= 2:
                await release.wait()
            return list(items)

        calls = GroupCall(decide, max_running=2)
        tasks = [asyncio.create_task(calls(1))]
        while len(started) < 1:
            await asyncio.sleep(0.001)
        tasks.append(asyncio.create_task(calls(2)))
        while len(started) < 2:
            await asyncio.sleep(0.001)
        tasks += [asyncio.create_task(calls(i)) for i in (3, 4)]
        await asyncio.sleep(0.01)
        assert calls.stats.queued == 2
        release.set()
        return [await t for t in tasks]

    assert asyncio.run(scenario()) == [1, 2, 3, 4]
    assert started == [[1], [2], [3, 4]]


def test_a_failing_decision_fails_its_batch_only() -> None:
    async def scenario() -> list[object]:
        async def decide(items: Any) -> list[int]:
            if 13 in items:
                raise RuntimeError("the database said no")
            return list(items)

        calls = GroupCall(decide, max_running=1)
        doomed = await asyncio.gather(calls(13), calls(1), return_exceptions=True)
        fine = await asyncio.gather(calls(2), calls(3))
        return [*doomed, *fine]

    outcome = asyncio.run(scenario())
    assert [type(x) for x in outcome[:2]] == [RuntimeError, RuntimeError]
    assert outcome[2:] == [2, 3]


def test_under_load_a_statement_lingers_and_carries_what_was_queued_meanwhile() -> None:
    started: list[list[int]] = []
    busy = False

    async def scenario() -> tuple[int, list[int]]:
        nonlocal busy

        async def decide(items: Any) -> list[int]:
            started.append(list(items))
            return list(items)

        calls = GroupCall(decide, max_running=1, linger_s=0.5, busy=lambda: busy)
        # not busy: the statement starts at once (a lone request waits for no timer)
        assert await calls(1) == 1
        lingered_quiet = calls.stats.lingered
        busy = True
        first = asyncio.create_task(calls(2))
        await asyncio.sleep(0.05)  # well inside the linger
        later = [asyncio.create_task(calls(i)) for i in (3, 4)]
        answers = [await first, *[await t for t in later]]
        assert calls.stats.lingered == 1
        return lingered_quiet, answers

    lingered_quiet, answers = asyncio.run(scenario())
    assert lingered_quiet == 0
    assert answers == [2, 3, 4]
    # without the linger, 2 would have gone alone before 3 and 4 were queued
    assert started == [[1], [2, 3, 4]]


def test_a_full_batch_does_not_linger() -> None:
    async def scenario() -> tuple[list[int], int]:
        async def decide(items: Any) -> list[int]:
            return list(items)

        calls = GroupCall(decide, max_batch=2, max_running=1, linger_s=60, busy=lambda: True)
        answers = await asyncio.wait_for(asyncio.gather(calls(1), calls(2)), timeout=10)
        return list(answers), calls.stats.lingered

    assert asyncio.run(scenario()) == ([1, 2], 0)


def test_lingering_needs_a_busy_signal() -> None:
    async def decide(items: Any) -> list[int]:
        return list(items)

    with pytest.raises(ValueError, match="busy"):
        GroupCall(decide, linger_s=0.01)
    with pytest.raises(ValueError, match="negative"):
        GroupCall(decide, linger_s=-1, busy=lambda: True)


def test_the_guard_counts_requests_in_progress_back_to_zero_whatever_they_met(
    api: Api,
) -> None:
    guard = guard_of(api)
    assert api.send(api.allocator, "GET", "/v1/commitments").status_code == 200
    assert api.send(api.allocator, "GET", "/v1/commitments", nonce="twice").status_code == 200
    replay = api.send(api.allocator, "GET", "/v1/commitments", nonce="twice")
    problem_of(replay, 401, "nonce_reused")
    unsigned = api.send(None, "GET", "/v1/commitments")
    problem_of(unsigned, 401, "signature_missing")
    no_key = api.send(api.allocator, "POST", "/v1/commitments", json=BODY)
    problem_of(no_key, 400, "idempotency_key_required")
    assert guard._in_progress == 0
    assert not guard._busy()


def test_claim_requests_in_one_statement(api: Api, clock: ManualClock) -> None:
    assert api.keys.revoke(api.auditor.key_id, revoked_by="test") is True
    me = api.allocator.key_id
    now = clock.now()
    lease = now + timedelta(seconds=60)

    def request(key_id: str, nonce: str, idem: str, fp: str = "a" * 64) -> ClaimRequest:
        return ClaimRequest(key_id, nonce, idem, fp, uuid.uuid4(), now, lease)

    batch = [
        request(me, "c1", "i1"),
        request(me, "c1", "i2"),  # the nonce again
        request(me, "c2", "i1"),  # the idempotency key again: in flight
        request(api.auditor.key_id, "c3", "i3"),
        request("key-nobody", "c4", "i4"),
        request(me, "c5", "i5"),
    ]
    answers = api_keys.claim_requests(api.engine.db, batch)
    assert [(n, c.outcome if c else None) for n, c in answers] == [
        ("accepted", "claimed"),
        ("replayed", None),
        ("accepted", "in_flight"),
        ("revoked", None),
        ("unknown", None),
        ("accepted", "claimed"),
    ]
    assert nonces_of(api, api.auditor) == set()
    stored = StoredResponse(201, "application/json", '"1"', "/v1/x", b'{"ok":true}')
    lost = Completion(me, "i5", uuid.uuid4(), stored, now)  # not the claim's id
    done = api_keys.complete_many(
        api.engine.db, [Completion(me, "i1", batch[0].claim_id, stored, now), lost]
    )
    assert done == [True, False]
    # a retry of i1 with the same fingerprint replays; another fingerprint is a mismatch
    (replayed, mismatched) = api_keys.claim_requests(
        api.engine.db, [request(me, "c6", "i1"), request(me, "c7", "i1", fp="b" * 64)]
    )
    assert replayed[1] is not None and replayed[1].outcome == "replay"
    assert replayed[1].response == stored
    assert mismatched[1] is not None and mismatched[1].outcome == "mismatch"


def test_a_killed_claim_batch_is_503_and_leaves_the_idempotency_key_unused(
    api: Api, owner: Connection
) -> None:
    with ThreadPoolExecutor(2) as pool, nonces_locked(owner) as lock:
        write = pool.submit(create(api, api.allocator, "cf-first", "idem-cf"))
        (pid,) = lock.wait_for_blocked()
        lock.terminate(pid)
        failed = write.result(timeout=15)
    assert failed.status_code == 503, failed.text
    assert failed.headers["content-type"] == "application/problem+json"
    # nothing was recorded: the same nonce and key go through once the database answers
    retried = create(api, api.allocator, "cf-first", "idem-cf")()
    assert retried.status_code == 201, retried.text


def test_nonces_and_idempotency_keys_of_writes_are_per_signing_key(api: Api) -> None:
    # a colleague of the allocator's party: another person with another key
    colleague = register(
        api.keys, Role.ALLOCATOR, f"{api.allocator.person}-colleague", "party-northwind"
    )
    made = []
    for key in (api.allocator, colleague):
        response = create(api, key, "shared-nonce", "shared-idem")()
        assert response.status_code == 201, response.text
        made.append(response.json()["commitment_id"])
    assert made[0] != made[1]
    problem_of(create(api, colleague, "shared-nonce", "other-idem")(), 401, "nonce_reused")


def test_a_retry_signed_with_the_same_persons_other_key_replays(api: Api) -> None:
    """The HTTP record is the key's, but the engine's is the person's: a retry of a
    write signed with the person's new key (a rotation between the two) acts once."""
    first = create(api, api.allocator, "n-old-key", "idem-rotated")()
    assert first.status_code == 201, first.text
    rotated = api.keys.rotate(api.allocator.key_id, created_by="test")
    new_key = Key(rotated.record.key_id, rotated.private_key, rotated.record.person)
    assert new_key.person == api.allocator.person
    retried = create(api, new_key, "n-new-key", "idem-rotated")()
    assert retried.status_code == 201, retried.text
    assert retried.json() == first.json()
    with api.engine.db.unit_of_work() as uow:
        made = uow.execute(
            "SELECT id FROM commitments WHERE created_by = :p", {"p": api.allocator.person}
        ).scalars()
        assert [str(c) for c in made] == [first.json()["commitment_id"]]
