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
from support import free_port, stop_process
from typer.testing import CliRunner

from settlement.bootstrap import DatabaseUrls
from settlement.cli import app
from settlement.client import ApiError, SettlementClient


def test_keys_then_serve_then_the_client(fresh_urls: DatabaseUrls, tmp_path: Path) -> None:
    env = {**os.environ, "SETTLEMENT_DATABASE_URL": fresh_urls.owner}
    key_file = tmp_path / "alloc.pem"
    result = CliRunner().invoke(
        app,
        [
            "keys",
            "new",
            "--role",
            "allocator",
            "--party",
            "party-northwind",
            "--out",
            str(key_file),
            "--key-id",
            "alloc-key-1",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "settlement.cli", "serve", "--port", str(port)],
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
