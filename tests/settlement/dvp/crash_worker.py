"""The worker process the crash test starts and kills (``test_crash``).

    python tests/settlement/dvp/crash_worker.py CONFIG.json              run a Worker until killed
    python tests/settlement/dvp/crash_worker.py CONFIG.json --until-done  run until every settlement
                                                               of the database is closed
    python tests/settlement/dvp/crash_worker.py CONFIG.json --zygote      fork server, see below

It builds everything itself, through ``settlement.bootstrap``, from the JSON file the
parent wrote (node URLs, the Stellar network passphrase, database URLs, the keys as XRPL
seeds / Stellar secrets, agents' addresses, the Stellar channel accounts if any, the
Fernet sealing key): the adapters, an in-memory keystore, the engine, a
``DvpCoordinator`` and a ``Worker``, as a deployed worker would, and shares nothing with
the parent but the networks and the database.

The engine's clock is the wall clock plus an offset the parent keeps in a file
(``clock_offset_file``): the parent moves the ledgers' clocks with
``LocalWorld.advance_time`` and writes the same offset there, so child and ledgers agree.

``--zygote``: importing the engine, xrpl-py and stellar-sdk takes over a second, which
would dominate a test that kills a worker fifty times. The zygote imports once, then for
every ``spawn`` line on stdin forks a fresh worker process and answers its pid; the test
SIGKILLs that pid. Each forked worker opens its own database connections and HTTP
clients after the fork, like a new process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stellar_sdk import Keypair  # noqa: E402
from xrpl.wallet import Wallet  # noqa: E402

from adapters.resilience import ResiliencePolicy  # noqa: E402
from settlement import bootstrap  # noqa: E402
from settlement.bootstrap import DatabaseUrls  # noqa: E402
from settlement.dvp import DvpPolicy  # noqa: E402
from settlement.dvp.worker import Worker, WorkerPolicy  # noqa: E402
from settlement.sealing import Sealer  # noqa: E402
from settlement.settings import load_settings  # noqa: E402


class FileOffsetClock:
    """The wall clock plus the offset (seconds) the parent writes to a file."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def now(self) -> datetime:
        try:
            offset_s = float(self._path.read_text() or 0)
        except (OSError, ValueError):
            offset_s = 0.0  # caught mid-write: the previous value is at most a step old
        return datetime.now(UTC) + timedelta(seconds=offset_s)


def build_worker(config: dict[str, Any]) -> tuple[Worker, bootstrap.Services]:
    policy = ResiliencePolicy(fail_max=3, reset_timeout_s=0.5, attempts=2, backoff_initial_s=0.01)
    keystore = bootstrap.keystore_holding(
        [Wallet.from_seed(seed) for seed in config["xrpl_seeds"]],
        [Keypair.from_secret(secret) for secret in config["stellar_secrets"]],
    )
    chains = bootstrap.chains_on(
        config["xrpl_url"],
        config["horizon_url"],
        config["network_passphrase"],
        xrpl_agent=config["xrpl_agent"],
        stellar_agent=config["stellar_agent"],
        signer=keystore,
        guards=bootstrap.chain_guards(policy),
        # none: every transaction of an account takes that account's own sequence
        stellar_channels=config.get("stellar_channels", []),
    )
    clock = FileOffsetClock(Path(config["clock_offset_file"]))
    urls = DatabaseUrls(owner=config["database_owner_url"], app=config["database_app_url"])
    engine = bootstrap.build(
        load_settings(database_url=urls.owner, pool_size=4), clock=clock, urls=urls
    )
    coordinator = bootstrap.build_coordinator(
        engine,
        chains,
        clock=clock,
        policy=DvpPolicy(
            safety_margin_s=120, commit_send_margin_s=30, min_window_s=5, retry_after_s=0.02
        ),
        sealed_with=Sealer(config["sealing_key"].encode()),
        # the test's accounts are registered to nobody
        check_owners=False,
    )
    worker = bootstrap.build_stepping_worker(
        engine,
        coordinator,
        clock=clock,
        name=f"crash-worker-{os.getpid()}",
        policy=WorkerPolicy(lease_s=config["lease_s"], batch=8, idle_s=0.02),
    )
    return worker, engine


def run(config: dict[str, Any], *, until_done: bool) -> int:
    worker, engine = build_worker(config)
    if not until_done:
        worker.run()
        return 0
    deadline = time.monotonic() + config.get("until_done_timeout_s", 120)
    while time.monotonic() < deadline:
        worker.run_once()
        open_count = engine.db.transaction(
            lambda uow: uow.execute(
                "SELECT count(*) FROM settlements"
                " WHERE status IN ('LOCKING', 'COMMITTING', 'UNWINDING')"
            ).scalar_one()
        )
        if open_count == 0:
            engine.close()
            return 0
        time.sleep(0.02)
    return 3


def zygote(config: dict[str, Any]) -> int:
    # forked workers are reaped by the kernel; the test kills them by pid
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    log_path = config["log_file"]
    for line in sys.stdin:
        if line.strip() != "spawn":
            continue
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            logging.basicConfig(level=logging.WARNING, force=True)
            try:
                run(config, until_done=False)
            finally:
                os._exit(0)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    if "--zygote" in argv:
        return zygote(config)
    logging.basicConfig(level=logging.WARNING)
    return run(config, until_done="--until-done" in argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
