"""A key belongs to a person: what it signs is recorded as that person's act with the
key beside it, and a rotated key leaves the person who they were (migration 0012)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.cli.main import app
from settlement.clock import ManualClock, SystemClock
from settlement.services.compliance import ComplianceService
from settlement.services.keys import actor_of
from settlement.settings import load_settings
from tests.support import ADMIN

from .conftest import Api, Key, create_draft, problem_of


def test_a_rotated_key_leaves_the_person_who_they_are(api: Api) -> None:
    cid = create_draft(api)
    old = api.allocator
    rotated = api.keys.rotate(old.key_id, created_by="test")
    new = Key(rotated.record.key_id, rotated.private_key, rotated.record.person)
    assert (new.person, new.key_id != old.key_id) == (old.person, True)
    # the old key signs nothing any more
    problem_of(api.send(old, "GET", f"/v1/commitments/{cid}"), 401, "key_revoked")
    with api.client(new) as allocator, api.client(api.auditor) as auditor:
        allocator.submit(cid, expected_version=1)
        trail = auditor.audit_trail(cid)
    assert [(e["action"], e["actor"], e["key_id"]) for e in trail] == [
        ("create", old.person, old.key_id),
        ("submit", old.person, new.key_id),
    ]
    with api.client(api.officer) as officer:
        history = officer.review_detail(cid)["history"]
        assert officer.get_commitment(cid)["submitted_by"] == old.person
    assert [(h["actor"], h["key_id"]) for h in history] == [
        (old.person, old.key_id),
        (old.person, new.key_id),
    ]


def test_the_engines_own_act_names_no_key(api: Api, clock: ManualClock) -> None:
    record = api.keys.get(api.allocator.key_id)
    assert record is not None
    created = api.engine.commitments.create(
        actor_of(record),
        deal_ref="DEAL-EXPIRES",
        amount="10",
        currency="USD",
        expires_at=clock.now() + timedelta(hours=1),
    )
    clock.advance(timedelta(hours=2))
    api.engine.commitments.expire_due()
    with api.client(api.auditor) as auditor:
        trail = auditor.audit_trail(str(created.commitment_id))
    assert [(e["action"], e["actor"], e["key_id"]) for e in trail] == [
        ("create", api.allocator.person, api.allocator.key_id),
        ("expire", "system", None),
    ]


def settle(*args: str, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


@pytest.fixture
def env(fresh_urls: DatabaseUrls) -> dict[str, str]:
    return {"SETTLEMENT_DATABASE_URL": fresh_urls.owner, "SETTLEMENT_NETWORK": "local"}


def test_settle_keys_new_names_a_person_and_rotate_keeps_them(
    env: dict[str, str], fresh_urls: DatabaseUrls, tmp_path: Path
) -> None:
    first = tmp_path / "ada-1.pem"
    code, output = settle(
        "keys", "new", "--role", "compliance_officer", "--person", "officer-ada",
        "--out", str(first), env=env,
    )  # fmt: skip
    assert code == 1
    assert "officer-ada is not a registered compliance officer" in output
    assert not first.exists()
    engine = bootstrap.build(load_settings(database_url=fresh_urls.owner), urls=fresh_urls)
    try:
        ComplianceService(engine.db, SystemClock()).register_officer(
            ADMIN, "officer-ada", display_name="Ada Lovelace"
        )
    finally:
        engine.close()
    code, output = settle(
        "keys", "new", "--role", "compliance_officer", "--person", "officer-ada",
        "--out", str(first), env=env,
    )  # fmt: skip
    assert code == 0, output
    old_key = output.strip().splitlines()[0]
    second = tmp_path / "ada-2.pem"
    code, output = settle("keys", "rotate", old_key, "--out", str(second), "--json", env=env)
    assert code == 0, output
    rotated = json.loads(output)
    assert (rotated["person"], rotated["role"]) == ("officer-ada", "compliance_officer")
    assert rotated["key_id"] != old_key and second.exists()
    code, output = settle("keys", "list", "--json", env=env)
    listed = {k["key_id"]: k for k in json.loads(output)}
    assert listed[old_key]["revoked_at"] is not None
    assert listed[rotated["key_id"]]["revoked_at"] is None
    assert {k["person"] for k in listed.values()} == {"officer-ada"}
    code, output = settle("keys", "list", env=env)
    assert "PERSON" in output.splitlines()[0]
    code, output = settle("keys", "rotate", "key-none", env=env)
    assert code == 1
    assert "no key 'key-none'" in output
