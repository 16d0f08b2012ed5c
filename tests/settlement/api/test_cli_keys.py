"""`settle keys new|list|revoke` on a real database, then the key signing for real."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from settlement import signing
from settlement.bootstrap import DatabaseUrls
from settlement.cli.main import app


def settle(*args: str, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


@pytest.fixture
def env(fresh_urls: DatabaseUrls) -> dict[str, str]:
    return {"SETTLEMENT_DATABASE_URL": fresh_urls.owner, "SETTLEMENT_NETWORK": "local"}


def test_new_writes_a_private_key_only_its_owner_reads(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "alloc.pem"
    code, output = settle(
        "keys",
        "new",
        "--role",
        "allocator",
        "--party",
        "party-x",
        "--person",
        "alice",
        "--out",
        str(out),
        env=env,
    )
    assert code == 0, output
    key_id = output.strip().splitlines()[0]
    assert key_id.startswith("key-")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    private = signing.load_private_key(out.read_bytes())
    code, output = settle("keys", "list", "--json", env=env)
    assert code == 0, output
    (listed,) = json.loads(output)
    assert listed["key_id"] == key_id
    assert listed["role"] == "allocator"
    assert listed["party"] == "party-x"
    assert listed["person"] == "party-x/alice"
    assert listed["revoked_at"] is None
    assert bytes.fromhex(listed["public_key"]) == signing.public_key_bytes(private)


def test_new_refuses_to_overwrite_and_an_allocator_needs_a_party(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "k.pem"
    out.write_text("keep me")
    code, output = settle(
        "keys", "new", "--role", "auditor", "--person", "ann", "--out", str(out), env=env
    )
    assert code == 1
    assert "refusing to overwrite" in output
    assert out.read_text() == "keep me"
    code, output = settle("keys", "new", "--role", "allocator", "--person", "bo", env=env)
    assert code == 1
    assert "party is required" in output
    code, output = settle("keys", "new", "--role", "system", "--person", "bo", env=env)
    assert code == 1
    assert "cannot act as system" in output
    code, output = settle("keys", "new", "--role", "auditor", env=env)
    assert code == 2
    assert "--person" in output


def test_revoke_is_final_and_the_database_keeps_the_key(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "officer.pem"
    code, output = settle(
        "keys", "new", "--role", "auditor", "--person", "ann", "--out", str(out), env=env
    )
    assert code == 0, output
    key_id = output.strip().splitlines()[0]
    assert settle("keys", "revoke", key_id, env=env) == (0, f"revoked {key_id}\n")
    assert settle("keys", "revoke", key_id, env=env) == (0, f"{key_id} was already revoked\n")
    code, output = settle("keys", "revoke", "key-none", env=env)
    assert code == 1
    assert "no key 'key-none'" in output
    code, output = settle("keys", "list", env=env)
    assert key_id in output
    assert "revoked" in output
    # not even the owner can un-revoke or delete a key: the triggers of 0004 refuse it
    owner = create_engine(env["SETTLEMENT_DATABASE_URL"])
    with owner.begin() as c, pytest.raises(Exception, match="revocation is final"):
        c.execute(
            text("UPDATE api_keys SET revoked_at = NULL, revoked_by = NULL WHERE key_id = :k"),
            {"k": key_id},
        )
    with owner.begin() as c, pytest.raises(Exception, match="never deleted"):
        c.execute(text("DELETE FROM api_keys WHERE key_id = :k"), {"k": key_id})
    owner.dispose()
