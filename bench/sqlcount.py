"""Statements and database transactions a process makes, counted in psycopg itself.

The engine reaches PostgreSQL two ways: SQLAlchemy (units of work) and a psycopg pool
of its own (one-statement calls and advisory locks, in autocommit). Both end in
psycopg's ``Cursor.execute``, so that is where this counts, once installed in the
process: every statement, and every database transaction as the server counts them in
``pg_stat_database.xact_commit`` (a COMMIT, or a statement run in autocommit).
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg


class SqlCounter:
    """Counts in every database, or in ``database`` alone once it is set."""

    def __init__(self) -> None:
        self.database: str | None = None
        self._lock = threading.Lock()
        self.statements = 0
        self.commits = 0
        self.autocommitted = 0

    def install(self) -> SqlCounter:
        """Wrap psycopg's ``Cursor.execute``/``executemany`` and ``Connection.commit``."""
        counter = self
        execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
        commit = psycopg.Connection.commit

        def counted_execute(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            counter.count(cursor)
            return execute(cursor, *args, **kwargs)

        def counted_executemany(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            counter.count(cursor)
            return executemany(cursor, *args, **kwargs)

        def counted_commit(connection: Any) -> None:
            # in autocommit, or with nothing begun, no transaction ends on the server
            begun = connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
            if begun and counter.counts(connection):
                with counter._lock:
                    counter.commits += 1
            commit(connection)

        psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign,assignment]
        psycopg.Cursor.executemany = counted_executemany  # type: ignore[method-assign,assignment]
        psycopg.Connection.commit = counted_commit  # type: ignore[method-assign,assignment]
        return self

    def counts(self, connection: Any) -> bool:
        return self.database is None or connection.info.dbname == self.database

    def count(self, cursor: Any) -> None:
        if not self.counts(cursor.connection):
            return
        autocommit = bool(getattr(cursor.connection, "autocommit", False))
        with self._lock:
            self.statements += 1
            if autocommit:
                self.autocommitted += 1

    def reset(self) -> None:
        with self._lock:
            self.statements = self.commits = self.autocommitted = 0

    def snapshot(self) -> dict[str, int]:
        """Statements, and committed database transactions as the server counts them."""
        with self._lock:
            return {
                "statements": self.statements,
                "transactions": self.commits + self.autocommitted,
                "commits": self.commits,
                "autocommitted": self.autocommitted,
            }
