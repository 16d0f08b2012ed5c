"""Shared fixtures: a real PostgreSQL for every test that touches the database.

The server is the embedded one (data under SETTLEMENT_DATA_DIR, default ./.settlement)
unless SETTLEMENT_TEST_DATABASE_URL names a server whose role may create databases.
One database is migrated per test session and used as a template; tests that need a
database of their own (tampering, counting, stateful runs) get a fresh copy of it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from ledger import embedded, migrate
from ledger.database import app_url_for, normalise_url
from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.clock import ManualClock
from settlement.settings import load_settings

_counter = itertools.count()


@dataclass(frozen=True)
class TestServer:
    maintenance_url: str

    def url_for(self, database: str) -> str:
        return (
            make_url(self.maintenance_url)
            .set(database=database)
            .render_as_string(hide_password=False)
        )

    def admin(self) -> Engine:
        return create_engine(self.maintenance_url, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TestServer]:
    external = os.environ.get("SETTLEMENT_TEST_DATABASE_URL")
    if external:
        yield TestServer(normalise_url(external))
        return
    data_dir = Path(os.environ.get("SETTLEMENT_DATA_DIR", ".settlement")).resolve()
    was_running = embedded.is_running(data_dir)
    server = embedded.ensure_running(data_dir)
    yield TestServer(server.url())
    if not was_running:
        embedded.stop(data_dir)


@pytest.fixture(scope="session")
def template_db(pg_server: TestServer) -> Iterator[str]:
    name = f"settlement_test_tpl_{os.getpid()}"
    admin = pg_server.admin()
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
    migrate.upgrade(pg_server.url_for(name))
    yield name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _clone(pg_server: TestServer, template: str) -> str:
    name = f"settlement_test_{os.getpid()}_{next(_counter)}"
    admin = pg_server.admin()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return name


def _drop(pg_server: TestServer, name: str) -> None:
    admin = pg_server.admin()
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def shared_urls(pg_server: TestServer, template_db: str) -> Iterator[DatabaseUrls]:
    """One migrated database shared by tests that only add their own commitments."""
    name = _clone(pg_server, template_db)
    owner = pg_server.url_for(name)
    yield DatabaseUrls(owner=owner, app=app_url_for(owner))
    _drop(pg_server, name)


@pytest.fixture
def fresh_urls(pg_server: TestServer, template_db: str) -> Iterator[DatabaseUrls]:
    """A migrated database of this test's own."""
    name = _clone(pg_server, template_db)
    owner = pg_server.url_for(name)
    yield DatabaseUrls(owner=owner, app=app_url_for(owner))
    _drop(pg_server, name)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 22, 9, 0, tzinfo=UTC))


def _engine(urls: DatabaseUrls, clock: ManualClock) -> bootstrap.Services:
    settings = load_settings(database_url=urls.owner, pool_size=40)
    return bootstrap.build(settings, clock=clock, urls=urls)


@pytest.fixture
def engine(shared_urls: DatabaseUrls, clock: ManualClock) -> Iterator[bootstrap.Services]:
    built = _engine(shared_urls, clock)
    yield built
    built.close()


@pytest.fixture
def fresh_engine(fresh_urls: DatabaseUrls, clock: ManualClock) -> Iterator[bootstrap.Services]:
    built = _engine(fresh_urls, clock)
    yield built
    built.close()


@pytest.fixture
def owner_engine(shared_urls: DatabaseUrls) -> Iterator[Engine]:
    eng = create_engine(shared_urls.owner, isolation_level="AUTOCOMMIT")
    yield eng
    eng.dispose()


@pytest.fixture
def app_engine(shared_urls: DatabaseUrls) -> Iterator[Engine]:
    """A raw connection as settlement_app, for proving what the database refuses."""
    eng = create_engine(shared_urls.app, isolation_level="AUTOCOMMIT")
    yield eng
    eng.dispose()


BROWSER_TESTS = "tests/settlement/console/test_browser.py"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Close with one line naming the browser tests that did not run, and the fix.

    A newcomer's `make test` installs Chromium when it can; where it could not (no root,
    not Debian), the skipped console tests must not pass unnoticed in the list above.
    """
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if getattr(report, "nodeid", "").startswith(BROWSER_TESTS)
    ]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} browser tests of the console did not run (Chromium is missing); "
            "enable them with: sudo .ci/install-browser",
            yellow=True,
        )
