"""The `settle` command line against real databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from ledger import embedded, migrate
from settlement.bootstrap import DatabaseUrls
from settlement.cli.main import app


def settle(*args: str, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


@pytest.fixture
def env(fresh_urls: DatabaseUrls) -> dict[str, str]:
    return {"SETTLEMENT_DATABASE_URL": fresh_urls.owner, "SETTLEMENT_NETWORK": "local"}


def test_demo_then_audit_verify(env: dict[str, str]) -> None:
    code, out = settle("demo", env=env)
    assert code == 0, out
    assert "PENDING_REVIEW -> DRAFT          request_info" in out
    assert "approval by officer-ada recorded" in out
    assert "PENDING_REVIEW -> VERIFIED       approve       by officer-grace" in out
    assert "Audit log verified by the server: 1 chains, 4 entries recomputed" in out
    assert "commitment " in out and ": SETTLED (v5)" in out
    assert "tx_failed: op_underfunded" in out
    assert "balances moved on the ledgers: none (every lock undone)" in out
    assert "VERIFIED -> CANCELLED      withdraw" in out
    assert "Audit log verified by the server: 3 chains, 30 entries recomputed" in out
    assert "Ledger references of this run verified: 11 checked" in out
    code, out = settle("audit", "verify", "--direct", "--json", env=env)
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True and report["entries"] == 30


def test_audit_verify_fails_and_names_the_broken_entry(env: dict[str, str]) -> None:
    assert settle("demo", env=env)[0] == 0
    owner = create_engine(env["SETTLEMENT_DATABASE_URL"])
    with owner.begin() as c:
        victim = c.execute(
            text("SELECT commitment_id FROM audit_log WHERE action = 'request_info'")
        ).scalar_one()
        c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        c.execute(
            text(
                'UPDATE audit_log SET payload = \'{"reason":"all fine"}\''
                " WHERE action = 'request_info'"
            )
        )
        c.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))
    owner.dispose()
    code, out = settle("audit", "verify", "--direct", env=env)
    assert code == 1
    assert f"commitment {victim} entry 3: entry_hash does not match its contents (edited)" in out
    code, out = settle("audit", "verify", "--direct", "--json", env=env)
    assert code == 1
    assert json.loads(out)["breaks"] == [
        {
            "commitment_id": str(victim),
            "seq": 3,
            "problem": "entry_hash does not match its contents (edited)",
        }
    ]


def test_engine_refuses_an_unmigrated_database(env: dict[str, str]) -> None:
    migrate.downgrade(env["SETTLEMENT_DATABASE_URL"], "base")
    code, out = settle("audit", "verify", "--direct", env=env)
    assert code == 1
    assert "run `settle db migrate`" in out
    code, out = settle("db", "migrate", env=env)
    assert code == 0 and f"database at revision {migrate.head_revision()}" in out
    assert settle("audit", "verify", "--direct", env=env)[0] == 0


def test_bad_setting_exits_2_naming_it(env: dict[str, str]) -> None:
    code, out = settle("audit", "verify", "--direct", env={**env, "SETTLEMENT_POOL_SIZE": "lots"})
    assert code == 2
    assert "SETTLEMENT_POOL_SIZE" in out


def test_embedded_db_up_reuse_and_down(tmp_path: Path) -> None:
    env = {"SETTLEMENT_DATA_DIR": str(tmp_path / "data"), "SETTLEMENT_DATABASE_URL": ""}
    try:
        code, first = settle("db", "up", env=env)
        assert code == 0, first
        assert first.startswith("postgresql+psycopg://postgres@/settlement?host=")
        assert embedded.is_running(tmp_path / "data")
        code, second = settle("db", "up", env=env)
        assert (code, second) == (0, first), "a second `db up` reuses the running server"
        code, out = settle("db", "migrate", env=env)
        assert code == 0 and migrate.head_revision() in out
    finally:
        code, out = settle("db", "down", env=env)
    assert (code, out.strip()) == (0, "stopped")
    assert not embedded.is_running(tmp_path / "data")
    assert settle("db", "down", env=env)[1].strip() == "not running"
