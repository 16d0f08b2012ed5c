"""`settle node xrpl|stellar` run the local networks as processes of their own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.support import free_port, stop_process


@contextmanager
def node(kind: str, *extra: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "settlement.cli.main", "node", kind, "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"node exited: {proc.stdout.read() if proc.stdout else ''}")
                time.sleep(0.05)
        yield url
    finally:
        stop_process(proc)


def test_xrpl_node_answers_rippled_json_rpc() -> None:
    with node("xrpl", "--close-interval", "0.2") as url:
        answer = httpx.post(url, json={"method": "server_info", "params": [{}]}).json()
        assert answer["result"]["status"] == "success"
        genesis = httpx.post(
            url,
            json={
                "method": "account_info",
                "params": [
                    {"account": "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh", "ledger_index": "validated"}
                ],
            },
        )
        assert int(genesis.json()["result"]["account_data"]["Balance"]) > 0


def test_stellar_node_answers_horizon_rest() -> None:
    with node("stellar", "--close-interval", "0.2") as url:
        root = httpx.get(url).json()
        assert root["network_passphrase"] == "Standalone Network ; February 2017"
        assert httpx.get(f"{url}/ledgers", params={"order": "desc", "limit": 1}).status_code == 200
