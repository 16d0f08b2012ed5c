"""Races: many threads, one commitment or one idempotency key, one effect."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine as SqlEngine
from sqlalchemy import text

from ledger.commitments import WriteResult
from settlement.bootstrap import Services
from settlement.domain import errors
from settlement.domain.states import State
from tests.support import ALLOCATOR, OFFICER, new_commitment

T = TypeVar("T")


def race(n: int, call: Callable[[], T]) -> list[T | BaseException]:
    """Start ``n`` threads that all call at once; return each one's result or error."""
    start = threading.Barrier(n, timeout=30)
    results: list[T | BaseException] = [RuntimeError("did not run")] * n

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = call()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_32_threads_race_one_transition(engine: Services, app_engine: SqlEngine) -> None:
    cid = new_commitment(engine.commitments, State.PENDING_REVIEW)
    results = race(32, lambda: engine.commitments.approve(OFFICER, cid, expected_version=2))
    winners = [r for r in results if isinstance(r, WriteResult)]
    losers = Counter(type(r).__name__ for r in results if not isinstance(r, WriteResult))
    assert len(winners) == 1
    assert losers == Counter({"StaleVersion": 31})
    record = engine.commitments.get(cid)
    assert (record.state, record.version) == ("VERIFIED", 3)
    assert len(engine.commitments.history(cid)) == 3
    assert len(engine.commitments.audit_trail(cid)) == 3


def test_32_threads_race_without_a_version(engine: Services) -> None:
    """Without a version the row lock still serialises them: the rest find it moved on."""
    cid = new_commitment(engine.commitments, State.DRAFT)
    results = race(32, lambda: engine.commitments.submit(ALLOCATOR, cid))
    assert sum(isinstance(r, WriteResult) for r in results) == 1
    assert all(isinstance(r, WriteResult | errors.TransitionNotAllowed) for r in results)
    assert len(engine.commitments.audit_trail(cid)) == 2


def test_64_requests_with_one_idempotency_key(engine: Services, app_engine: SqlEngine) -> None:
    """One effect; every caller, retrying on 'in flight' as a client does, sees it."""

    def client() -> WriteResult:
        for _ in range(200):
            try:
                return engine.commitments.create(
                    ALLOCATOR,
                    deal_ref="RACE-64",
                    amount="64.00",
                    currency="USD",
                    idempotency_key="race-64-key",
                )
            except errors.RequestInFlight:
                time.sleep(0.005)
        raise AssertionError("still in flight after 200 tries")

    results = race(64, client)
    assert all(isinstance(r, WriteResult) for r in results), [
        r for r in results if not isinstance(r, WriteResult)
    ]
    written = [r for r in results if isinstance(r, WriteResult)]
    assert len({(r.commitment_id, r.entry_hash, r.version) for r in written}) == 1
    assert sum(not r.replayed for r in written) == 1
    with app_engine.connect() as c:
        assert (
            c.execute(
                text("SELECT count(*) FROM commitments WHERE deal_ref = 'RACE-64'")
            ).scalar_one()
            == 1
        )
