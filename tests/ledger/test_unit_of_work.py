"""The unit of work: rollback by default, savepoints, and bounded retries."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from ledger.database import Database, DriverUnitOfWork, UnitOfWork
from ledger.errors import (
    ConstraintViolation,
    DatabaseUnavailable,
    DeadlockDetected,
    SerializationFailure,
)
from settlement.bootstrap import DatabaseUrls


@pytest.fixture
def scratch(shared_urls: DatabaseUrls, owner_engine: Engine) -> Iterator[Database]:
    """A scratch table and a Database on the owner URL (infrastructure tests only)."""
    with owner_engine.connect() as c:
        c.execute(text("DROP TABLE IF EXISTS uow_scratch"))
        c.execute(
            text("CREATE TABLE uow_scratch (id int PRIMARY KEY, n int NOT NULL CHECK (n >= 0))")
        )
        c.execute(text("INSERT INTO uow_scratch VALUES (1, 0), (2, 0)"))
    db = Database(shared_urls.owner)
    yield db
    db.dispose()


def _count(db: Database, row: int) -> int:
    with db.unit_of_work() as uow:
        return int(
            uow.execute("SELECT n FROM uow_scratch WHERE id = :id", {"id": row}).scalar_one()
        )


def test_rolled_back_unless_committed(scratch: Database) -> None:
    with scratch.unit_of_work() as uow:
        uow.execute("UPDATE uow_scratch SET n = 5 WHERE id = 1")
    assert _count(scratch, 1) == 0


def test_savepoint_rolls_back_only_its_part(scratch: Database) -> None:
    def work(uow: UnitOfWork) -> None:
        uow.execute("UPDATE uow_scratch SET n = 1 WHERE id = 1")

        def violate() -> None:
            with uow.savepoint():
                uow.execute("UPDATE uow_scratch SET n = 7 WHERE id = 2")
                uow.execute("UPDATE uow_scratch SET n = -1 WHERE id = 2")  # CHECK fails

        with pytest.raises(ConstraintViolation):
            violate()
        with uow.savepoint():
            uow.execute("UPDATE uow_scratch SET n = n + 2 WHERE id = 1")

    scratch.transaction(work)
    assert (_count(scratch, 1), _count(scratch, 2)) == (3, 0)


def test_serialization_failure_retried_then_succeeds(scratch: Database) -> None:
    attempts: list[int] = []

    def work(uow: UnitOfWork) -> int:
        attempts.append(1)
        uow.execute("UPDATE uow_scratch SET n = n + 1 WHERE id = 1")
        if len(attempts) < 3:
            uow.execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
        return len(attempts)

    assert scratch.transaction(work) == 3
    assert _count(scratch, 1) == 1, "the failed attempts left nothing behind"


def test_gives_up_after_three_retries(scratch: Database) -> None:
    attempts: list[int] = []

    def work(uow: UnitOfWork) -> None:
        attempts.append(1)
        uow.execute("UPDATE uow_scratch SET n = n + 1 WHERE id = 1")
        uow.execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")

    with pytest.raises(SerializationFailure):
        scratch.transaction(work)
    assert len(attempts) == 4
    assert _count(scratch, 1) == 0


def test_real_deadlock_is_retried_and_both_transactions_land(scratch: Database) -> None:
    """Two transactions lock the rows in opposite orders; PostgreSQL kills one (40P01)."""
    both_hold_first_lock = threading.Barrier(2, timeout=10)
    deadlocks: list[str] = []
    errors: list[BaseException] = []

    def transfer(first: int, second: int) -> None:
        def work(uow: UnitOfWork) -> None:
            uow.execute("UPDATE uow_scratch SET n = n + 1 WHERE id = :id", {"id": first})
            # on the retry the barrier is broken: the other side has finished; go ahead
            with contextlib.suppress(threading.BrokenBarrierError):
                both_hold_first_lock.wait()
            try:
                uow.execute("UPDATE uow_scratch SET n = n + 1 WHERE id = :id", {"id": second})
            except DeadlockDetected:
                deadlocks.append(f"{first}->{second}")
                both_hold_first_lock.abort()
                raise

        try:
            scratch.transaction(work)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=transfer, args=p) for p in ((1, 2), (2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(deadlocks) == 1, "PostgreSQL chose exactly one victim"
    assert (_count(scratch, 1), _count(scratch, 2)) == (2, 2)


def test_one_statement_call_retried_on_serialization_failure(
    scratch: Database, owner_engine: Engine
) -> None:
    with owner_engine.connect() as c:
        c.execute(text("DROP SEQUENCE IF EXISTS flaky_calls"))
        c.execute(text("CREATE SEQUENCE flaky_calls"))
        # sequences are not rolled back, so they count attempts across the retries
        c.execute(
            text(
                "CREATE OR REPLACE FUNCTION flaky(fail_times int) RETURNS TABLE (attempt bigint)"
                " LANGUAGE plpgsql AS $$ BEGIN attempt := nextval('flaky_calls');"
                " UPDATE uow_scratch SET n = n + 1 WHERE id = 1;"
                " IF attempt <= fail_times THEN RAISE EXCEPTION 'busy' USING ERRCODE = '40001';"
                " END IF; RETURN NEXT; END $$"
            )
        )
    assert scratch.call_one("SELECT attempt FROM flaky(%(n)s)", {"n": 3}) == (4,)
    assert _count(scratch, 1) == 1, "only the attempt that succeeded left its update"
    with owner_engine.connect() as c:
        c.execute(text("SELECT setval('flaky_calls', 1, false)"))
    with pytest.raises(SerializationFailure):
        scratch.call_one("SELECT attempt FROM flaky(%(n)s)", {"n": 4})
    with owner_engine.connect() as c:
        assert c.execute(text("SELECT last_value FROM flaky_calls")).scalar_one() == 4


# -- on the driver ---------------------------------------------------------------------


def test_driver_sql_reads_parameters_as_text_does(scratch: Database) -> None:
    from ledger.database import driver_sql

    sql = "SELECT CAST(:a AS int), x::int, 'x%' LIKE :b, '\\:c'"
    assert driver_sql(sql) == "SELECT CAST(%(a)s AS int), x::int, 'x%%' LIKE %(b)s, ':c'"
    assert driver_sql("make_interval(secs => :lease_s)") == "make_interval(secs => %(lease_s)s)"
    # and both send the same statement: the same answer
    query = "SELECT CAST(:a AS int) + 1, 'x%' LIKE 'x%', '\\:c'"
    with scratch.unit_of_work() as uow:
        through_text = tuple(uow.execute(query, {"a": 1}).one())
    through_driver = scratch.statements(lambda uow: uow.execute(query, {"a": 1}).one())
    assert through_text == through_driver == (2, True, ":c")


def test_statements_commit_together_or_not_at_all(scratch: Database) -> None:
    def both(uow: DriverUnitOfWork) -> int:
        uow.execute("UPDATE uow_scratch SET n = n + 1 WHERE id = :id", {"id": 1})
        return uow.execute("UPDATE uow_scratch SET n = n + 1 WHERE id = :id", {"id": 2}).rowcount

    assert scratch.statements(both) == 1
    assert (_count(scratch, 1), _count(scratch, 2)) == (1, 1)

    def second_fails(uow: DriverUnitOfWork) -> None:
        uow.execute("UPDATE uow_scratch SET n = n + 1 WHERE id = 1")
        uow.execute("UPDATE uow_scratch SET n = -1 WHERE id = 2")

    with pytest.raises(ConstraintViolation):
        scratch.statements(second_fails)
    assert (_count(scratch, 1), _count(scratch, 2)) == (1, 1), "the first update went back too"
    # not atomic: what ran before the failure stays
    with pytest.raises(ConstraintViolation):
        scratch.statements(second_fails, atomic=False)
    assert (_count(scratch, 1), _count(scratch, 2)) == (2, 1)


def test_statements_read_rows_as_tuples(scratch: Database) -> None:
    def read(uow: DriverUnitOfWork) -> tuple[object, ...]:
        rows = uow.execute("SELECT id, n FROM uow_scratch ORDER BY id").all()
        one = uow.execute("SELECT n FROM uow_scratch WHERE id = :id", {"id": 2}).one()
        none = uow.execute("SELECT n FROM uow_scratch WHERE id = 3").one_or_none()
        return rows, one, none

    assert scratch.statements(read, atomic=False) == ([(1, 0), (2, 0)], (0,), None)


def test_statements_savepoint_rolls_back_only_its_part(scratch: Database) -> None:
    def work(uow: DriverUnitOfWork) -> None:
        uow.execute("UPDATE uow_scratch SET n = 7 WHERE id = 1")
        with pytest.raises(ConstraintViolation), uow.savepoint():
            uow.execute("UPDATE uow_scratch SET n = -1 WHERE id = 2")

    scratch.statements(work)
    assert (_count(scratch, 1), _count(scratch, 2)) == (7, 0)


def test_statements_retried_on_serialization_failure(
    scratch: Database, owner_engine: Engine
) -> None:
    with owner_engine.connect() as c:
        c.execute(text("DROP SEQUENCE IF EXISTS flaky_statements"))
        c.execute(text("CREATE SEQUENCE flaky_statements"))
    attempts: list[int] = []

    def work(uow: DriverUnitOfWork) -> None:
        uow.execute("UPDATE uow_scratch SET n = n + 1 WHERE id = 1")
        attempt = int(uow.execute("SELECT nextval('flaky_statements')").scalar_one())
        attempts.append(attempt)
        if attempt <= 2:
            uow.execute("DO $$ BEGIN RAISE EXCEPTION 'busy' USING ERRCODE = '40001'; END $$")

    scratch.statements(work)
    assert attempts == [1, 2, 3]
    assert _count(scratch, 1) == 1, "only the attempt that succeeded left its update"


def _backend(uow: DriverUnitOfWork) -> int:
    return int(uow.execute("SELECT pg_backend_pid()").scalar_one())


def test_the_advisory_locks_connection_is_lent_to_its_threads_statements(
    scratch: Database, owner_engine: Engine
) -> None:
    """One connection per worker lane: the step's statements run where its lock lives,
    the lock outlives a failed transaction there, and only one use at a time."""
    with scratch.exclusive("lent-test") as held:
        assert held
        with owner_engine.connect() as c:
            (holder,) = c.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND objid = (hashtextextended('lent-test', 1121) & 4294967295)::oid"
                )
            ).one()
        assert scratch.statements(_backend) == holder
        assert scratch.call_one("SELECT pg_backend_pid()", {}) == (holder,)

        def fails(uow: DriverUnitOfWork) -> None:
            uow.execute("UPDATE uow_scratch SET n = -1 WHERE id = 1")

        with pytest.raises(ConstraintViolation):
            scratch.statements(fails)
        # nested work cannot share the connection in use: it gets one of its own
        outer, inner = scratch.statements(lambda uow: (_backend(uow), scratch.statements(_backend)))
        assert outer == holder and inner != holder
        with pytest.raises(RuntimeError, match="does not nest"), scratch.exclusive("other"):
            pass
        # another thread does not borrow it
        other: list[int] = []
        worker = threading.Thread(target=lambda: other.append(scratch.statements(_backend)))
        worker.start()
        worker.join()
        assert other and other[0] != holder
        # still held after all that: another session cannot take it
        with owner_engine.connect() as c:
            taken = c.execute(
                text("SELECT pg_try_advisory_lock(hashtextextended('lent-test', 1121))")
            ).scalar_one()
            assert taken is False
    # released at the end of the block
    with scratch.exclusive("lent-test") as again:
        assert again


# -- on the event loop -----------------------------------------------------------------


def test_async_calls_retry_keep_sound_connections_and_drop_broken_ones(
    scratch: Database, owner_engine: Engine
) -> None:
    with owner_engine.connect() as c:
        c.execute(text("DROP SEQUENCE IF EXISTS flaky_async"))
        c.execute(text("CREATE SEQUENCE flaky_async"))
        c.execute(
            text(
                "CREATE OR REPLACE FUNCTION flaky_async(fail_times int)"
                " RETURNS TABLE (attempt bigint) LANGUAGE plpgsql AS $$"
                " BEGIN attempt := nextval('flaky_async');"
                " IF attempt <= fail_times THEN RAISE EXCEPTION 'busy' USING ERRCODE = '40001';"
                " END IF; RETURN NEXT; END $$"
            )
        )

    async def scenario() -> tuple[int, int, int]:
        # refused twice, then answered: the retries reuse the one connection
        assert await scratch.call_one_async("SELECT attempt FROM flaky_async(2)", {}) == (3,)
        (first,) = await scratch.call_one_async("SELECT pg_backend_pid()", {})
        with pytest.raises(ConstraintViolation):
            await scratch.call_one_async("INSERT INTO uow_scratch VALUES (1, 0) RETURNING 1", {})
        (same,) = await scratch.call_one_async("SELECT pg_backend_pid()", {})
        # a connection the server ends is not used again
        with owner_engine.connect() as c:
            c.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        with pytest.raises(DatabaseUnavailable):
            await scratch.call_one_async("SELECT 1", {})
        (fresh,) = await scratch.call_one_async("SELECT pg_backend_pid()", {})
        return first, same, fresh

    first, same, fresh = asyncio.run(scenario())
    assert same == first, "a refused statement leaves its connection in use"
    assert fresh != first


def test_each_event_loop_has_its_own_connections_and_dispose_closes_them(
    scratch: Database, owner_engine: Engine
) -> None:
    def backend() -> int:
        async def pid() -> int:
            (value,) = await scratch.call_one_async("SELECT pg_backend_pid()", {})
            return int(value)

        return asyncio.run(pid())

    one, two = backend(), backend()
    assert one != two, "a connection of a closed loop is not lent to another"

    def alive() -> set[int]:
        with owner_engine.connect() as c:
            rows = c.execute(
                text("SELECT pid FROM pg_stat_activity WHERE pid IN (:a, :b)"), {"a": one, "b": two}
            )
            return {int(pid) for (pid,) in rows}

    # the first loop's connection was closed when the second loop came
    assert alive() == {two}
    scratch.dispose()
    deadline = time.monotonic() + 10
    while alive():
        assert time.monotonic() < deadline, "dispose left an asyncio connection open"
        time.sleep(0.02)


# -- the liveness probe ----------------------------------------------------------------


def test_ping_answers_and_fails_as_call_one_fails(scratch: Database, owner_engine: Engine) -> None:
    scratch.ping()
    (pid,) = scratch.call_one("SELECT pg_backend_pid()", {})
    with owner_engine.connect() as c:
        c.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with pytest.raises(DatabaseUnavailable):
        scratch.ping()
    scratch.ping()  # the pool replaced the connection the server ended
