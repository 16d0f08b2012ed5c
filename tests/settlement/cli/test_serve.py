"""`settle serve` as a process of its own, reached over HTTP by the signing client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from settlement import signing
from settlement.bootstrap import DatabaseUrls
from settlement.cli.main import app
from settlement.client import ApiError, SettlementClient
from tests.support import free_port, stop_process


def _new_allocator_key(env: dict[str, str], tmp_path: Path, key_id: str) -> Path:
    """``settle keys new`` for an allocator of party-northwind; the private key's file."""
    key_file = tmp_path / f"{key_id}.pem"
    result = CliRunner().invoke(
        app,
        [
            *("keys", "new", "--role", "allocator", "--party", "party-northwind"),
            *("--person", "alice", "--out", str(key_file), "--key-id", key_id),
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    return key_file


def test_keys_then_serve_then_the_client(fresh_urls: DatabaseUrls, tmp_path: Path) -> None:
    env = {**os.environ, "SETTLEMENT_DATABASE_URL": fresh_urls.owner}
    key_file = _new_allocator_key(env, tmp_path, "alloc-key-1")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "settlement.cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.1)
        with SettlementClient.from_key_file(url, "alloc-key-1", key_file) as client:
            created = client.create_commitment(deal_ref="HTTP-1", amount="250.00", currency="USD")
            assert (created["to_state"], created["version"]) == ("DRAFT", 1)
            commitment = client.get_commitment(created["commitment_id"])
            assert isinstance(commitment["amount"], str), "money travels as a string"
            assert Decimal(commitment["amount"]) == Decimal("250.00")
            assert commitment["state"] == "DRAFT"
        unsigned = httpx.post(f"{url}/v1/commitments", json={})
        assert unsigned.status_code == 401
        assert unsigned.headers["content-type"].startswith("application/problem+json")
        with (
            SettlementClient.from_key_file(url, "alloc-key-1", key_file) as client,
            pytest.raises(ApiError) as refused,
        ):
            client.review_queue()
        assert refused.value.status == 403, "an allocator may not read the review queue"
    finally:
        stop_process(proc)


def _requests_counted(url: str, route: str) -> float:
    """``settlement_http_requests_total`` for GET ``route`` answered 200, as one scrape
    (on a connection of its own, so any worker may answer it) reports it."""
    metrics = httpx.get(f"{url}/metrics", headers={"Connection": "close"}).text
    wanted = f'settlement_http_requests_total{{method="GET",route="{route}",status="200"}} '
    values = [
        float(line[len(wanted) :]) for line in metrics.splitlines() if line.startswith(wanted)
    ]
    assert len(values) == 1, metrics
    return values[0]


def test_serve_with_workers_shares_nonces_and_counts_every_worker(
    fresh_urls: DatabaseUrls, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # the metrics directory serve makes goes under TMPDIR, where the test can look
    env = {**os.environ, "SETTLEMENT_DATABASE_URL": fresh_urls.owner, "TMPDIR": str(run_dir)}
    key_file = _new_allocator_key(env, tmp_path, "alloc-key-2")
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "settlement.cli.main", "serve", "--port", str(port)),
            *("--workers", "2", "--no-ledgers", "--no-console"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    answered = 0  # /healthz requests answered 200
    try:
        deadline = time.monotonic() + 60
        workers_seen: set[str] = set()
        # each request on a new connection, until both workers have answered some
        while len(workers_seen) < 2:
            assert time.monotonic() < deadline, f"one worker answered everything: {workers_seen}"
            try:
                probe = httpx.get(f"{url}/healthz", headers={"Connection": "close"})
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.1)
                continue
            answered += probe.status_code == 200
            workers_seen = {p.name.split("_")[1] for p in run_dir.glob("*/counter_*.db")}
        # a scrape of either worker counts the requests of both
        for _ in range(8):
            assert _requests_counted(url, "/healthz") == answered

        # a nonce one worker accepted is refused by the other (the database decides)
        with SettlementClient.from_key_file(url, "alloc-key-2", key_file) as client:
            created = client.create_commitment(deal_ref="WORKERS-1", amount="1.00", currency="USD")
        request = httpx.Request(
            "GET",
            f"{url}/v1/commitments/{created['commitment_id']}",
            headers={"Connection": "close"},
        )
        private_key = signing.load_private_key(key_file.read_bytes())
        signing.sign_request(request, key_id="alloc-key-2", private_key=private_key)
        statuses = []
        with httpx.Client() as http:
            for _ in range(6):
                statuses.append(http.send(request).status_code)
        assert statuses == [200] + [401] * 5
    finally:
        stop_process(proc)
    assert proc.returncode is not None
    assert not list(run_dir.glob("settlement-metrics-*")), "the metrics directory is removed"
