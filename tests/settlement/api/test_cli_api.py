"""The `settle commitments|review|audit` commands against a real API server.

The commands run in process (Typer's runner) and call a real uvicorn server over
loopback with a real database; each signs with a key file as `settle keys new` writes
it (``KEYID.pem``). The server's engine runs on the wall clock, because the commands
sign with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from settlement import bootstrap, signing
from settlement.bootstrap import DatabaseUrls, Ledgers
from settlement.cli.main import app
from settlement.clock import SystemClock
from settlement.demo.settlements import leg_json
from settlement.demo.world import LocalWorld
from settlement.dvp import DvpPolicy
from settlement.sealing import Sealer, local_key
from settlement.settings import load_settings
from tests.support import OFFICER, free_port

from .conftest import Api, Key, running_api


@pytest.fixture
def live(fresh_urls: DatabaseUrls) -> Iterator[Api]:
    engine = bootstrap.build(load_settings(database_url=fresh_urls.owner), urls=fresh_urls)
    try:
        with running_api(engine, SystemClock()) as running:
            yield running
    finally:
        engine.close()


class Cli:
    """Runs `settle` signing as one of the API's keys."""

    def __init__(self, api: Api, key_dir: Path) -> None:
        self.api = api
        self.key_dir = key_dir

    def key_file(self, key: Key) -> Path:
        path = self.key_dir / f"{key.key_id}.pem"
        if not path.exists():
            path.write_bytes(signing.private_key_pem(key.private_key))
            path.chmod(0o600)
        return path

    def __call__(self, key: Key | None, *args: str, url: str | None = None) -> tuple[int, str]:
        options = ["--url", url or self.api.url]
        if key is not None:
            options += ["--key", str(self.key_file(key))]
        result = CliRunner().invoke(app, [*args, *options])
        return result.exit_code, result.output

    def json(self, key: Key, *args: str) -> Any:
        result = CliRunner().invoke(
            app, [*args, "--json", "--url", self.api.url, "--key", str(self.key_file(key))]
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def settle(live: Api, tmp_path: Path) -> Cli:
    return Cli(live, tmp_path)


def _create(settle: Cli, amount: str = "1000.00", deal_ref: str = "DEAL-CLI") -> str:
    created = settle.json(
        settle.api.allocator,
        "commitments",
        "create",
        "--deal-ref",
        deal_ref,
        "--amount",
        amount,
        "--currency",
        "USD",
    )
    assert created["to_state"] == "DRAFT" and created["version"] == 1
    return str(created["commitment_id"])


def test_create_show_submit_as_tables_and_json(settle: Cli, live: Api) -> None:
    alloc = live.allocator
    code, out = settle(
        alloc,
        "commitments",
        "create",
        "--deal-ref",
        "D-T",
        "--amount",
        "250.5",
        "--currency",
        "USD",
    )
    assert code == 0, out
    assert "(new) -> DRAFT (v1, create, audit #1)" in out
    cid = out.split(":")[0].strip()
    code, out = settle(alloc, "commitments", "show", cid)
    assert code == 0, out
    assert "state: DRAFT (v1, last create)" in out
    assert "amount: 250.5 USD" in out
    assert "party: party-northwind" in out
    # no --expected-version: the command reads the version, then submits with it
    code, out = settle(alloc, "commitments", "submit", cid)
    assert code == 0, out
    assert f"{cid}: DRAFT -> PENDING_REVIEW (v2, submit" in out
    assert live.engine.commitments.state_of(cid) == "PENDING_REVIEW"
    shown = settle.json(alloc, "commitments", "show", cid)
    assert (shown["state"], shown["version"], shown["amount"]) == ("PENDING_REVIEW", 2, "250.5")
    code, out = settle(alloc, "commitments", "list", "--deal-ref", "D-T")
    assert code == 0, out
    header, row = out.splitlines()
    assert header.split() == ["ID", "STATE", "V", "AMOUNT", "CCY", "PARTY", "DEAL", "CREATED"]
    assert row.split()[:7] == [cid, "PENDING_REVIEW", "2", "250.5", "USD", "party-northwind", "D-T"]
    code, out = settle(alloc, "commitments", "audit", cid)
    assert code == 0, out
    # SEQ, RECORDED (date and time), ACTION, ...
    assert [line.split()[:4:3] for line in out.splitlines()[1:]] == [
        ["1", "create"],
        ["2", "submit"],
    ]


def test_create_with_an_expiry_and_a_chosen_id(settle: Cli, live: Api) -> None:
    chosen = "6f1c2a9e-3b4d-4e5f-8a7b-0c1d2e3f4a5b"
    created = settle.json(
        live.allocator,
        "commitments",
        "create",
        "--deal-ref",
        "D-EXP",
        "--amount",
        "10",
        "--currency",
        "USD",
        "--expires-at",
        "2099-06-30T12:00:00+00:00",
    )
    assert created["to_state"] == "DRAFT"
    shown = settle.json(live.allocator, "commitments", "show", created["commitment_id"])
    assert shown["expires_at"] == "2099-06-30T12:00:00Z"
    relative = settle.json(
        live.allocator,
        "commitments",
        "create",
        "--deal-ref",
        "D-EXP-REL",
        "--amount",
        "10",
        "--currency",
        "USD",
        "--expires-at",
        "+2d",
    )
    assert relative["to_state"] == "DRAFT"
    with live.client(live.allocator) as client:
        made = client.create_commitment(
            deal_ref="D-ID", amount="10", currency="USD", commitment_id=UUID(chosen)
        )
    assert made["commitment_id"] == chosen


def test_two_officers_approve_above_the_four_eyes_threshold(settle: Cli, live: Api) -> None:
    cid = _create(settle, amount="2000000.00")
    assert settle(live.allocator, "commitments", "submit", cid)[0] == 0
    code, out = settle(live.officer, "review", "list")
    assert code == 0, out
    line = next(row for row in out.splitlines() if row.startswith(cid))
    assert line.split()[2:5] == ["FLAGGED", "2000000", "USD"]  # no counterparty named
    assert line.split()[-1] == "0/2"
    code, out = settle(live.officer, "review", "approve", cid)
    assert code == 0, out
    assert "approval recorded" in out and "stays PENDING_REVIEW until another officer" in out
    # the same officer cannot be the second pair of eyes
    code, out = settle(live.officer, "review", "approve", cid)
    assert code == 1, out
    assert "urn:settlement:problem:" in out
    assert live.engine.commitments.state_of(cid) == "PENDING_REVIEW"
    code, out = settle(live.officer_2, "review", "approve", cid)
    assert code == 0, out
    assert f"{cid}: PENDING_REVIEW -> VERIFIED (v3, approve" in out
    detail = settle.json(live.officer, "review", "show", cid)
    assert {a["officer_id"] for a in detail["approvals"]} == {
        live.officer.person,
        live.officer_2.person,
    }
    code, out = settle(live.officer, "review", "show", cid)
    assert code == 0, out
    assert "VERIFIED v3" in out and "Approvals" in out
    assert live.engine.commitments.state_of(cid) == "VERIFIED"


def test_a_refused_request_exits_1_with_the_problem_in_one_line(settle: Cli, live: Api) -> None:
    cid = _create(settle)
    # an allocator may not approve: 403 from the server, exit 1
    code, out = settle(live.allocator, "review", "approve", cid)
    assert code == 1
    assert "error: 403 urn:settlement:problem:forbidden: " in out
    assert len(out.strip().splitlines()) == 1
    # a stale expected version: 409
    code, out = settle(live.allocator, "commitments", "submit", cid, "--expected-version", "7")
    assert code == 1
    assert "error: 409 urn:settlement:problem:" in out
    assert live.engine.commitments.state_of(cid) == "DRAFT"
    # with --json the problem body goes to standard output for scripts
    result = CliRunner().invoke(
        app,
        [
            *("commitments", "withdraw", cid, "--expected-version", "9", "--json"),
            *("--url", live.url, "--key", str(settle.key_file(live.allocator))),
        ],
    )
    assert result.exit_code == 1
    problem = json.loads(result.stdout)
    assert problem["status"] == 409 and problem["type"].startswith("urn:settlement:problem:")


def test_usage_errors_exit_2_and_an_unreachable_server_3(settle: Cli, live: Api) -> None:
    code, out = settle(None, "commitments", "list")
    assert code == 2 and "no key: pass --key FILE" in out
    code, out = settle(
        live.allocator,
        "commitments",
        "create",
        "--deal-ref",
        "D",
        "--amount",
        "12x",
        "--currency",
        "USD",
    )
    assert code == 2 and "--amount: '12x' is not a decimal number" in out
    code, out = settle(
        live.allocator,
        "commitments",
        "create",
        "--deal-ref",
        "D",
        "--amount",
        "-5",
        "--currency",
        "USD",
    )
    assert code == 2 and "--amount: must be a positive amount" in out
    code, out = settle(live.allocator, "commitments", "list", url=f"http://127.0.0.1:{free_port()}")
    assert code == 3
    assert "cannot reach the API at http://127.0.0.1:" in out


def test_list_follows_the_cursor_with_all(settle: Cli, live: Api) -> None:
    ids = [_create(settle, deal_ref="DEAL-PAGE") for _ in range(5)]
    code, out = settle(
        live.allocator, "commitments", "list", "--deal-ref", "DEAL-PAGE", "--limit", "2"
    )
    assert code == 0, out
    rows = [line.split()[0] for line in out.splitlines()[1:] if not line.startswith("more:")]
    assert rows == ids[:2]
    assert "more: --cursor " in out
    cursor = out.split("more: --cursor ")[1].split()[0]
    code, out = settle(
        live.allocator,
        "commitments",
        "list",
        "--deal-ref",
        "DEAL-PAGE",
        "--limit",
        "2",
        "--cursor",
        cursor,
    )
    assert [line.split()[0] for line in out.splitlines()[1:3]] == ids[2:4]
    code, out = settle(
        live.allocator, "commitments", "list", "--deal-ref", "DEAL-PAGE", "--limit", "2", "--all"
    )
    assert code == 0, out
    assert [line.split()[0] for line in out.splitlines()[1:]] == ids
    page = settle.json(
        live.allocator, "commitments", "list", "--deal-ref", "DEAL-PAGE", "--limit", "2", "--all"
    )
    assert [c["id"] for c in page["items"]] == ids and page["next_cursor"] is None
    # another party's allocator sees none of them
    other = settle.json(live.other_allocator, "commitments", "list", "--deal-ref", "DEAL-PAGE")
    assert other == {"items": [], "next_cursor": None}


def test_audit_verify_and_show_through_the_api(
    settle: Cli, live: Api, fresh_urls: DatabaseUrls
) -> None:
    cid = _create(settle)
    assert settle(live.allocator, "commitments", "submit", cid)[0] == 0
    code, out = settle(live.auditor, "audit", "verify")
    assert code == 0, out
    assert "ok: 1 chains, 2 entries verified" in out
    report = settle.json(live.auditor, "audit", "verify")
    assert report["ok"] is True and report["entries"] == 2
    code, out = settle(live.allocator, "audit", "verify")
    assert code == 1 and "403 urn:settlement:problem:forbidden" in out
    code, out = settle(live.auditor, "audit", "show", cid)
    assert code == 0, out
    assert [line.split()[:4:3] for line in out.splitlines()[1:]] == [
        ["1", "create"],
        ["2", "submit"],
    ]
    owner = create_engine(fresh_urls.owner)
    with owner.begin() as c:
        c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        c.execute(
            text(
                "UPDATE audit_log SET actor = 'someone-else' WHERE commitment_id = :id AND seq = 2"
            ),
            {"id": cid},
        )
        c.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))
    owner.dispose()
    code, out = settle(live.auditor, "audit", "verify")
    assert code == 1
    assert "BROKEN: 1 of 1 chains" in out
    assert f"commitment {cid} entry 2: entry_hash does not match its contents (edited)" in out


@pytest.fixture
def world() -> Iterator[LocalWorld]:
    started = bootstrap.local_world(usdc=Decimal(5_000))
    yield started
    started.close()


def test_fund_show_the_settlement_and_force_cancel(
    fresh_urls: DatabaseUrls, world: LocalWorld, tmp_path: Path
) -> None:
    engine = bootstrap.build(load_settings(database_url=fresh_urls.owner), urls=fresh_urls)
    coordinator = bootstrap.build_coordinator(
        engine,
        world.chains,
        clock=world.clock,
        policy=DvpPolicy(),
        sealed_with=Sealer(local_key(tmp_path)),
    )
    ledgers = Ledgers(chains=world.chains, guards=world.guards, coordinator=coordinator)
    try:
        with running_api(engine, SystemClock(), ledgers=ledgers) as live:
            world.register_accounts(
                engine.compliance, OFFICER, buyer="party-northwind", seller="party-southbank"
            )
            settle = Cli(live, tmp_path)
            created = settle.json(
                live.allocator,
                *("commitments", "create", "--deal-ref", "DVP-CLI", "--amount", "1000"),
                *("--currency", "USDC", "--counterparty", "party-southbank"),
            )
            cid = str(created["commitment_id"])
            assert settle(live.allocator, "commitments", "submit", cid)[0] == 0
            assert settle(live.officer, "review", "approve", cid)[0] == 0
            legs = tmp_path / "legs.json"
            legs.write_text(
                json.dumps([leg_json(leg) for leg in world.legs(Decimal(10), Decimal(1000))])
            )
            code, out = settle(
                live.allocator,
                "commitments",
                "fund",
                cid,
                "--legs",
                str(legs),
                "--commit-deadline",
                "+120s",
            )
            assert code == 0, out
            assert "instructed; a worker settles it" in out
            settlement_id = out.split("settlement ")[1].split()[0]
            # no worker runs here: the legs wait to be locked
            found = settle.json(live.allocator, "commitments", "settlement", cid)
            assert found["id"] == settlement_id and found["status"] == "LOCKING"
            assert [(leg["chain"], leg["amount"]) for leg in found["legs"]] == [
                ("stellar", "1000"),
                ("xrpl", "10"),
            ]
            code, out = settle(live.allocator, "commitments", "settlement", cid)
            assert code == 0, out
            assert "status: LOCKING" in out and "nothing submitted yet" in out
            # a second instruction for the same commitment is refused
            code, out = settle(
                live.allocator,
                "commitments",
                "fund",
                cid,
                "--legs",
                str(legs),
                "--commit-deadline",
                "+120s",
            )
            assert code == 1 and "error: 409 urn:settlement:problem:" in out
            code, out = settle(
                live.allocator, "commitments", "force-cancel", settlement_id, "--reason", "x"
            )
            assert code == 1 and "403 urn:settlement:problem:forbidden" in out
            code, out = settle(
                live.admin, "commitments", "force-cancel", settlement_id, "--reason", "wrong price"
            )
            assert code == 0, out
            assert f"cancel requested by {live.admin.person}: wrong price" in out
            code, out = settle(live.admin, "review", "settlements")
            assert (code, out.strip()) == (0, "no settlement needs review"), out
            bad = tmp_path / "bad.json"
            bad.write_text('[{"amount": 10}]')
            code, out = settle(
                live.allocator,
                "commitments",
                "fund",
                cid,
                "--legs",
                str(bad),
                "--commit-deadline",
                "+120s",
            )
            assert code == 2 and "amount must be a decimal string" in out
    finally:
        engine.close()
