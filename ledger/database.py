"""Connections, the unit of work, and transaction retries.

``Database`` is built once by the composition root from two URLs: the owner URL (used
for migrations only) and the application URL (role ``settlement_app``) that every
engine path uses. All SQL errors leave this module translated (``ledger.errors``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout
from sqlalchemy import Connection, CursorResult, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from tenacity import (
    AsyncRetrying,
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from ledger.errors import DatabaseUnavailable, LedgerError, TransientConflict, translate

T = TypeVar("T")
log = logging.getLogger(__name__)

APP_ROLE = "settlement_app"
#: retries after the first attempt for 40001 / 40P01 (DESIGN section 4)
TRANSIENT_RETRIES = 3
#: how long a call waits for a free connection before the database counts as unavailable
_CHECKOUT_TIMEOUT_S = 30.0
#: driver connections in asyncio mode one event loop holds at most (``call_one_async``)
ASYNC_CONNECTIONS_PER_LOOP = 8


def app_url_for(owner_url: str, password: str | None = None) -> str:
    """The application-role URL on the same server and database as ``owner_url``."""
    url = make_url(owner_url).set(username=APP_ROLE, password=password)
    return url.render_as_string(hide_password=False)


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` URLs and select the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


_RETRY_POLICY: dict[str, Any] = {
    "wait": wait_exponential(multiplier=0.005, max=0.2) + wait_random(0, 0.005),
    "retry": retry_if_exception_type(TransientConflict),
    "before_sleep": before_sleep_log(log, logging.INFO),
    "reraise": True,
}


def _retrying(retries: int) -> Retrying:
    return Retrying(stop=stop_after_attempt(retries + 1), **_RETRY_POLICY)


def _once_then_retrying(retries: int, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, re-run on a transient conflict as ``_retrying`` says; the common
    case (no conflict) pays nothing for the retry machinery."""
    try:
        return call(*args)
    except TransientConflict:
        log.info("transient conflict; retrying %s", getattr(call, "__name__", call))
    result: T = _retrying(retries - 1)(call, *args)
    return result


async def _once_then_retrying_async(
    retries: int, call: Callable[..., Awaitable[T]], *args: Any
) -> T:
    """``_once_then_retrying`` for a coroutine function: the backoff sleeps on the loop."""
    try:
        return await call(*args)
    except TransientConflict:
        log.info("transient conflict; retrying %s", getattr(call, "__name__", call))
    result: T = await AsyncRetrying(stop=stop_after_attempt(retries), **_RETRY_POLICY)(call, *args)
    return result


class Rows(Protocol):
    """What a statement answered, as far as the record modules read it: rows are
    tuples (index them, or unpack them); ``rowcount`` counts what an UPDATE touched."""

    @property
    def rowcount(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def all(self) -> Sequence[Any]: ...

    def one(self) -> Any: ...

    def one_or_none(self) -> Any | None: ...

    def scalar_one(self) -> Any: ...


class Statements(Protocol):
    """Where plain SQL runs: a ``UnitOfWork`` or a ``DriverUnitOfWork``. ``sql`` names
    its parameters ``:name``, as SQLAlchemy's ``text()`` does."""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Rows: ...


class UnitOfWork:
    """One database transaction: rolled back unless ``commit()`` was called.

    ``execute`` raises translated ``LedgerError``s; ``savepoint()`` scopes a part of the
    work so its failure rolls back only that part.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None
        self._committed = False

    def __enter__(self) -> Self:
        try:
            self._connection = self._engine.connect()
            self._connection.begin()
        except SQLAlchemyError as exc:
            raise translate(exc) from exc
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection = self._require()
        try:
            if not self._committed:
                connection.rollback()
        finally:
            connection.close()
            self._connection = None

    @property
    def connection(self) -> Connection:
        return self._require()

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> CursorResult[Any]:
        try:
            return self._require().execute(text(sql), dict(params or {}))
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run a block in a SAVEPOINT; a ``LedgerError`` inside rolls back to it and re-raises."""
        connection = self._require()
        nested = connection.begin_nested()
        try:
            yield
        except SQLAlchemyError as exc:
            nested.rollback()
            raise translate(exc) from exc
        except BaseException:
            nested.rollback()
            raise
        else:
            try:
                nested.commit()
            except SQLAlchemyError as exc:
                raise translate(exc) from exc

    def commit(self) -> None:
        try:
            self._require().commit()
        except SQLAlchemyError as exc:
            raise translate(exc) from exc
        self._committed = True

    def _require(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._connection


#: a ``:name`` parameter as text() reads it: not part of a ``::type`` cast (so
#: ``:name::type`` is no parameter there either: write ``CAST(:name AS type)``), and
#: not escaped as ``\\:name``
_NAMED_PARAMETER = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


@functools.lru_cache(maxsize=512)
def driver_sql(sql: str) -> str:
    """``sql`` as text() would send it, in psycopg's placeholders: ``:name`` becomes
    ``%(name)s``, a literal ``%`` is doubled and an escaped ``\\:`` is a colon."""
    named = _NAMED_PARAMETER.sub(r"%(\1)s", sql.replace("%", "%%"))
    return named.replace("\\:", ":")


class _DriverRows:
    """A statement's answer read at once, so errors surface at ``execute``."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, cursor: psycopg.Cursor[tuple[Any, ...]]) -> None:
        self.rowcount = cursor.rowcount
        self._rows: list[tuple[Any, ...]] = (
            cursor.fetchall() if cursor.description is not None else []
        )

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)

    def all(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def one_or_none(self) -> tuple[Any, ...] | None:
        if len(self._rows) > 1:
            raise LedgerError(f"expected at most one row, got {len(self._rows)}")
        return self._rows[0] if self._rows else None

    def one(self) -> tuple[Any, ...]:
        row = self.one_or_none()
        if row is None:
            raise LedgerError("expected one row, got none")
        return row

    def scalar_one(self) -> Any:
        return self.one()[0]


class DriverUnitOfWork:
    """One transaction (or, not ``atomic``, a run of autocommitted statements) on a
    psycopg connection of the calls pool, without SQLAlchemy between: for the hot paths
    of the worker, whose statements are plain SQL. A one-statement transaction costs
    about a quarter of the client CPU it costs through ``UnitOfWork`` (some 50 against
    200 µs), and each statement is prepared once per connection.

    Only ``execute`` and ``savepoint`` are offered; rows are plain tuples."""

    def __init__(self, connection: psycopg.Connection[tuple[Any, ...]]) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> _DriverRows:
        try:
            with self._connection.cursor() as cursor:
                cursor.execute(driver_sql(sql), dict(params or {}))
                return _DriverRows(cursor)
        except psycopg.Error as exc:
            raise translate(exc) from exc

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run a block in a SAVEPOINT; a failure inside rolls back to it and re-raises."""
        try:
            with self._connection.transaction():
                yield
        except psycopg.Error as exc:
            raise translate(exc) from exc


class Database:
    """The application's access to PostgreSQL (as role ``settlement_app``).

    One way to run SQL per purpose; the record modules (``ledger.*``,
    ``compliance.records``) hold the statements, callers pick the way:

    - one statement that is a whole transaction (a server-side function such as
      ``commitment_transition``, an API key or console session call): ``call_one``,
      one round trip; ``call_one_async`` is the same from a coroutine (the API's
      request path), without a worker thread;
    - several statements that commit together, through record functions that take a
      ``UnitOfWork`` or its SQLAlchemy ``Connection`` (services, compliance records):
      ``transaction``, re-run whole on a serialization failure or deadlock;
    - the same on the worker's hot paths, whose record functions run plain SQL only
      (``Statements``): ``statements``, on a driver connection at a quarter of the
      client CPU; with ``atomic=False`` for reads that need no common snapshot;
    - reads through record functions that take a ``Connection`` or ``UnitOfWork``:
      ``unit_of_work()`` in a ``with`` block, left uncommitted (rolled back at its
      end; also what tests use to look at rows);
    - work that must never run twice at once (stepping one settlement): ``exclusive``;
    - asking whether the server answers (health checks): ``ping``.

    Errors leave every method translated (``LedgerError``, ``ledger.errors``); a record
    function that uses a unit of work's ``connection`` directly translates its own.
    ``dispose`` closes every connection.
    """

    def __init__(self, app_url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = normalise_url(app_url)
        self.engine = create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size * 2,
            pool_pre_ping=False,
            echo=echo,
            # timestamps come back in UTC whatever the server's default zone is
            connect_args={"options": "-c timezone=UTC", "prepare_threshold": 2},
        )
        # A second pool (psycopg's own, the lightest checkout there is) whose connections
        # are in autocommit from birth, for one-statement calls of server-side functions:
        # no BEGIN/COMMIT round trips, and each statement prepared once per connection.
        self._conninfo = (
            make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self._calls = ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=pool_size * 3,
            kwargs={"autocommit": True, "prepare_threshold": 0, "options": "-c timezone=UTC"},
            open=False,
            name="settlement-calls",
        )
        self._calls_opened = False
        self._open_lock = threading.Lock()
        # the connection holding this thread's advisory lock (``exclusive``), lent to
        # the thread's own driver work meanwhile
        self._lent = threading.local()
        # ``call_one_async``'s connections: an asyncio connection belongs to the loop
        # that opened it, so each loop has its own; ``_async_open`` holds every one not
        # closed yet, whatever its loop, for ``dispose`` (which has no loop to await on)
        self._loops: dict[asyncio.AbstractEventLoop, _LoopConnections] = {}
        self._async_open: set[psycopg.AsyncConnection[tuple[Any, ...]]] = set()
        self._async_lock = threading.Lock()

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.engine)

    def transaction(
        self, work: Callable[[UnitOfWork], T], *, retries: int = TRANSIENT_RETRIES
    ) -> T:
        """Run ``work`` in a fresh unit of work and commit it.

        Serialization failures and deadlocks re-run the whole of ``work`` (at most
        ``retries`` more times, exponential backoff with jitter); ``work`` must therefore
        have no effects outside the database.
        """
        for attempt in _retrying(retries):
            with attempt, self.unit_of_work() as uow:
                result = work(uow)
                uow.commit()
                return result
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def statements(
        self,
        work: Callable[[DriverUnitOfWork], T],
        *,
        atomic: bool = True,
        retries: int = TRANSIENT_RETRIES,
    ) -> T:
        """Run ``work`` as ``transaction`` does (committed if it returns, rolled back if
        it raises, re-run whole on 40001 / 40P01), but on a driver connection: for work
        that only runs plain SQL through ``execute``. Not ``atomic``, each statement
        commits by itself: for reads that need no common snapshot (under READ COMMITTED
        the statements of one transaction each see their own anyway), saving the BEGIN
        and COMMIT round trips."""
        result: T = _once_then_retrying(retries, self._statements_once, work, atomic)
        return result

    def _statements_once(self, work: Callable[[DriverUnitOfWork], T], atomic: bool) -> T:
        with self._driver_connection() as connection:
            if not atomic:
                return work(DriverUnitOfWork(connection))
            with connection.transaction():
                return work(DriverUnitOfWork(connection))

    @contextmanager
    def _driver_connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """The connection this thread's advisory lock lives on, while ``exclusive`` holds
        one and no other work of this thread is using it; else one from the calls pool.
        Lending it keeps a worker's lane at one connection, not two, and a statement
        committed on it is committed like any other (the lock is the session's, not a
        transaction's). Driver errors of the block (a COMMIT refused, the connection
        lost) leave translated."""
        try:
            lent = getattr(self._lent, "connection", None)
            if lent is not None and not getattr(self._lent, "busy", False):
                self._lent.busy = True
                try:
                    yield lent
                finally:
                    self._lent.busy = False
                return
            if not self._calls_opened:
                self._open_calls()
            with self._calls.connection(timeout=_CHECKOUT_TIMEOUT_S) as connection:
                yield connection
        except PoolTimeout as exc:
            raise DatabaseUnavailable(
                f"no database connection free within {_CHECKOUT_TIMEOUT_S} s"
            ) from exc
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def call_one(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """Run one statement as its own transaction (one round trip); return its one row.

        ``sql`` uses psycopg placeholders (``%(name)s``) and goes to the driver as is,
        prepared on the server. For server-side functions that do all their work
        atomically; transient conflicts are retried like ``transaction``.
        """
        return _once_then_retrying(TRANSIENT_RETRIES, self._call_once, sql, params)

    def ping(self) -> None:
        """Ask the server whether it answers: one round trip on the calls pool. Raises
        what ``call_one`` raises (``DatabaseUnavailable`` when no connection can be had,
        other ``LedgerError``s translated); returns nothing when the server answered."""
        self.call_one("SELECT 1", {})

    def _call_once(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...]:
        with self._driver_connection() as connection:
            row = connection.execute(sql, params).fetchone()
        assert row is not None, "a server-side call returns one row"
        return tuple(row)

    async def call_one_async(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """``call_one`` on the running event loop, without a worker thread: the statement
        goes out on a driver connection in asyncio mode and the loop serves other work
        until the answer is in. Same placeholders, retries and translated errors.

        Each event loop has connections of its own, at most
        ``ASYNC_CONNECTIONS_PER_LOOP`` at once (a caller beyond waits for one), kept
        between calls; ``dispose`` closes them all. A call cancelled while its statement
        runs closes that connection rather than reuse it in an unknown state.
        """
        return await _once_then_retrying_async(
            TRANSIENT_RETRIES, self._call_async_once, sql, params
        )

    async def _call_async_once(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...]:
        connections = self._loop_connections()
        async with connections.slots:
            connection = connections.idle.pop() if connections.idle else await self._connect()
            try:
                cursor = await connection.execute(sql, params)
                row = await cursor.fetchone()
            except psycopg.Error as exc:
                self._keep_or_close(connection, connections)
                raise translate(exc) from exc
            except BaseException:
                self._close_async(connection)
                raise
            connections.idle.append(connection)
        assert row is not None, "a server-side call returns one row"
        return tuple(row)

    def _loop_connections(self) -> _LoopConnections:
        loop = asyncio.get_running_loop()
        connections = self._loops.get(loop)
        if connections is not None:
            return connections
        with self._async_lock:
            # a loop seen before and closed since cannot use its connections again
            for gone in [other for other in self._loops if other.is_closed()]:
                for connection in self._loops.pop(gone).idle:
                    self._close_async(connection, locked=True)
            connections = self._loops[loop] = _LoopConnections(ASYNC_CONNECTIONS_PER_LOOP)
        return connections

    async def _connect(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        try:
            connection = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                prepare_threshold=0,
                options="-c timezone=UTC",
                connect_timeout=int(_CHECKOUT_TIMEOUT_S),
            )
        except psycopg.Error as exc:
            raise translate(exc) from exc
        with self._async_lock:
            self._async_open.add(connection)
        return connection

    def _keep_or_close(
        self, connection: psycopg.AsyncConnection[tuple[Any, ...]], connections: _LoopConnections
    ) -> None:
        """After a statement failed: a connection that is still sound and idle (the
        statement was refused) is kept, any other closed."""
        if not connection.closed and connection.info.transaction_status is TransactionStatus.IDLE:
            connections.idle.append(connection)
        else:
            self._close_async(connection)

    def _close_async(
        self, connection: psycopg.AsyncConnection[tuple[Any, ...]], *, locked: bool = False
    ) -> None:
        # finishing the libpq connection is all an (unpooled) asyncio connection's close
        # does, and it needs no loop: the one the connection belongs to may be gone
        connection.pgconn.finish()
        if locked:
            self._async_open.discard(connection)
            return
        with self._async_lock:
            self._async_open.discard(connection)

    def _open_calls(self) -> None:
        with self._open_lock:
            if not self._calls_opened:
                try:
                    self._calls.open(wait=True, timeout=_CHECKOUT_TIMEOUT_S)
                except PoolTimeout as exc:
                    raise DatabaseUnavailable(f"cannot connect to {self._calls.conninfo}") from exc
                self._calls_opened = True

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Hold a session-level advisory lock named ``name`` while the block runs; yields
        False (and holds nothing) when another session holds it.

        The lock lives on a connection of its own, so PostgreSQL releases it by itself
        if the holding process dies: it guards work, such as stepping one settlement,
        that must never run twice at once, whatever the clocks or leases say. While it
        is held, the block's ``statements`` and ``call_one`` run on that connection
        (one at a time; a nested one takes another from the pool).
        """
        if getattr(self._lent, "connection", None) is not None:
            raise RuntimeError("exclusive() does not nest within one thread")
        if not self._calls_opened:
            self._open_calls()
        try:
            with self._calls.connection(timeout=_CHECKOUT_TIMEOUT_S) as connection:
                row = connection.execute(
                    "SELECT pg_try_advisory_lock(hashtextextended(%(name)s, 1121))",
                    {"name": name},
                ).fetchone()
                held = bool(row and row[0])
                if held:
                    self._lent.connection = connection
                try:
                    yield held
                finally:
                    self._lent.connection = None
                    if held:
                        connection.execute(
                            "SELECT pg_advisory_unlock(hashtextextended(%(name)s, 1121))",
                            {"name": name},
                        )
        except PoolTimeout as exc:
            raise DatabaseUnavailable(
                f"no database connection free within {_CHECKOUT_TIMEOUT_S} s"
            ) from exc
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def dispose(self) -> None:
        self.engine.dispose()
        if self._calls_opened:
            self._calls.close()
        with self._async_lock:
            for connection in list(self._async_open):
                self._close_async(connection, locked=True)
            self._loops.clear()


class _LoopConnections:
    """The idle ``call_one_async`` connections of one event loop, and how many more
    may be opened; touched only on that loop."""

    def __init__(self, limit: int) -> None:
        self.idle: list[psycopg.AsyncConnection[tuple[Any, ...]]] = []
        self.slots = asyncio.Semaphore(limit)


__all__ = [
    "APP_ROLE",
    "Database",
    "DriverUnitOfWork",
    "LedgerError",
    "Rows",
    "Statements",
    "UnitOfWork",
    "app_url_for",
    "normalise_url",
]
