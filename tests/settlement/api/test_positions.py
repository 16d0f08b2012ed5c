"""A party's balances and statements through the API and the CLI, over both local
networks (one world and one database of this module's own, so the parties' registered
accounts are this world's alone).

The figures are checked against the ledgers read independently (the provisioners'
Horizon and rippled requests, not the adapters), and the statement's CSV is parsed
and tied out: per asset, opening + the legs' signed amounts = closing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from stellar_sdk import Asset as SdkAsset
from stellar_sdk import Claimant, ClaimPredicate
from typer.testing import CliRunner

from adapters.resilience import ResiliencePolicy
from ledger import settlements as records
from ledger.database import app_url_for
from settlement import bootstrap, signing
from settlement.api.position_schemas import CSV_COLUMNS
from settlement.bootstrap import DatabaseUrls, Ledgers
from settlement.cli.main import app as cli_app
from settlement.console.views import format_amount
from settlement.demo.world import LocalWorld
from settlement.dvp import DvpCoordinator, DvpPolicy, LegInstruction
from settlement.sealing import Sealer
from settlement.services.console_accounts import ConsoleAccounts
from settlement.settings import load_settings
from tests.settlement.console.conftest import TEST_HASHER, ConsoleServer, console_app, serve
from tests.support import OFFICER, seed_compliance

from .conftest import Api, Key, problem_of, running_api

FAST = ResiliencePolicy(fail_max=3, reset_timeout_s=0.5, attempts=2, backoff_initial_s=0.01)
BUYER, SELLER = "party-northwind", "party-southbank"
USDC = Decimal(400)
BONDS = Decimal(4)
FEE = Decimal("2.5")


@dataclass
class Desk:
    world: LocalWorld
    api: Api
    coordinator: DvpCoordinator


@pytest.fixture(scope="module")
def desk(pg_server: Any, template_db: str) -> Iterator[Desk]:
    name = f"settlement_test_positions_{os.getpid()}"
    admin = pg_server.admin()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    owner = pg_server.url_for(name)
    urls = DatabaseUrls(owner=owner, app=app_url_for(owner))
    world = bootstrap.local_world(policy=FAST, usdc=Decimal(50_000))
    engine = bootstrap.build(load_settings(database_url=owner), clock=world.clock, urls=urls)
    seed_compliance(engine.commitments)
    world.register_accounts(engine.compliance, OFFICER, buyer=BUYER, seller=SELLER)
    coordinator = bootstrap.build_coordinator(
        engine,
        world.chains,
        clock=world.clock,
        policy=DvpPolicy(safety_margin_s=120, min_window_s=5, retry_after_s=0.02),
        sealed_with=Sealer(Fernet.generate_key()),
    )
    ledgers = Ledgers(chains=world.chains, guards=world.guards, coordinator=coordinator)
    try:
        with running_api(engine, world.clock, ledgers=ledgers) as api:
            yield Desk(world, api, coordinator)
    finally:
        engine.close()
        world.close()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _leg_json(leg: LegInstruction) -> dict[str, Any]:
    return {
        "kind": leg.kind,
        "chain": leg.chain.value,
        "asset": {"code": leg.asset.code, "issuer": leg.asset.issuer},
        "amount": str(leg.amount),
        "sender": leg.sender,
        "receiver": leg.receiver,
    }


def _verified(desk: Desk) -> str:
    api = desk.api
    with api.client(api.allocator) as allocator, api.client(api.officer) as officer:
        created = allocator.create_commitment(
            deal_ref=f"POS-{uuid.uuid4().hex[:8]}",
            amount=str(USDC),
            currency="USDC",
            counterparty=SELLER,
        )
        cid = str(created["commitment_id"])
        submitted = allocator.submit(cid, expected_version=1)
        approved = officer.approve(cid, expected_version=submitted["version"])
    assert approved["to_state"] == "VERIFIED"
    return cid


def _fund(desk: Desk, cid: str, *, settle_in_s: int | None = None) -> str:
    world = desk.world
    legs = [*world.legs(BONDS, USDC), world.fee_leg(FEE)]
    now = world.clock.now()
    body: dict[str, Any] = {
        "legs": [_leg_json(leg) for leg in legs],
        "commit_deadline": (now + timedelta(seconds=120)).isoformat(),
    }
    if settle_in_s is not None:
        body["settle_not_before"] = (now + timedelta(seconds=settle_in_s)).isoformat()
    accepted = desk.api.send(
        desk.api.allocator,
        "POST",
        f"/v1/commitments/{cid}/settlement",
        json=body,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["id"])


def _settled(desk: Desk) -> str:
    cid = _verified(desk)
    sid = _fund(desk, cid)
    result = desk.coordinator.run_to_end(uuid.UUID(sid), timeout_s=60)
    assert result.status == "SETTLED", result
    return sid


def _by_account(balances: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(p["chain"], p["account"], p["asset"]["code"]): p for p in balances["positions"]}


def _independent(desk: Desk) -> dict[tuple[str, str, str], Decimal]:
    """The buyer's and the seller's holdings as the ledgers state them, asked with the
    provisioners' own requests (rippled account_lines, Horizon /accounts)."""
    w = desk.world
    return {
        ("stellar", w.buyer_stellar.public_key, "USDC"): w.stellar.balance(
            w.buyer_stellar.public_key, w.usdc
        ),
        ("xrpl", w.buyer_xrpl.classic_address, "BND"): w.xrpl.token_balance(
            w.buyer_xrpl.classic_address, w.bond
        ),
        ("stellar", w.seller_stellar.public_key, "USDC"): w.stellar.balance(
            w.seller_stellar.public_key, w.usdc
        ),
        ("stellar", w.fee_stellar.public_key, "USDC"): w.stellar.balance(
            w.fee_stellar.public_key, w.usdc
        ),
        ("xrpl", w.seller_xrpl.classic_address, "BND"): w.xrpl.token_balance(
            w.seller_xrpl.classic_address, w.bond
        ),
    }


def _check_held(desk: Desk, *found: dict[str, Any]) -> None:
    ledgers = _independent(desk)
    for balances in found:
        for key, position in _by_account(balances).items():
            assert position["ledger"]["status"] == "ok", position
            assert Decimal(position["ledger"]["held"]) == ledgers[key], (key, position)


def test_balances_after_a_settlement_are_the_ledgers_own(desk: Desk) -> None:
    _settled(desk)
    api = desk.api
    with api.client(api.allocator) as allocator, api.client(api.auditor) as auditor:
        buyer = allocator.balances(BUYER)
        seller = auditor.balances(SELLER)
    _check_held(desk, buyer, seller)
    w = desk.world
    assert set(_by_account(buyer)) == {
        ("stellar", w.buyer_stellar.public_key, "USDC"),
        ("xrpl", w.buyer_xrpl.classic_address, "BND"),
    }
    for position in [*buyer["positions"], *seller["positions"]]:
        assert (position["locked"], position["committed"]) == ("0", "0"), position
        assert position["available"] == position["ledger"]["held"]
        assert position["breaks"] == []
    assert (buyer["complete"], buyer["breaks"], seller["breaks"]) == (True, 0, 0)
    fee = _by_account(seller)[("stellar", w.fee_stellar.public_key, "USDC")]
    assert Decimal(fee["ledger"]["held"]) >= FEE
    totals = {t["currency"]: t for t in buyer["totals"]}
    assert Decimal(totals["USDC"]["held"]) == w.stellar.balance(w.buyer_stellar.public_key, w.usdc)
    assert totals["USDC"]["committed"] == "0"


def test_uninstructed_commitments_count_against_the_currency(desk: Desk) -> None:
    cid = _verified(desk)
    with desk.api.client(desk.api.allocator) as allocator:
        found = allocator.balances(BUYER)
    usdc = {t["currency"]: t for t in found["totals"]}["USDC"]
    assert Decimal(usdc["uninstructed"]) >= USDC
    assert Decimal(usdc["available"]) == Decimal(usdc["held"]) - Decimal(usdc["committed"])
    with desk.api.client(desk.api.allocator) as allocator:
        allocator.withdraw(cid, expected_version=allocator.get_commitment(cid)["version"])
        after = {t["currency"]: t for t in allocator.balances(BUYER)["totals"]}["USDC"]
    assert Decimal(after["uninstructed"]) == Decimal(usdc["uninstructed"]) - USDC


def test_an_unreachable_ledger_is_unavailable_not_zero(desk: Desk) -> None:
    w = desk.world
    w.xrpl_node.faults.partition(60)
    try:
        with desk.api.client(desk.api.allocator) as allocator:
            found = allocator.balances(BUYER)
    finally:
        w.xrpl_node.faults.heal()
    xrpl = _by_account(found)[("xrpl", w.buyer_xrpl.classic_address, "BND")]
    assert xrpl["ledger"]["status"] == "unavailable"
    assert (xrpl["ledger"]["held"], xrpl["available"]) == (None, None)
    assert found["complete"] is False
    stellar = _by_account(found)[("stellar", w.buyer_stellar.public_key, "USDC")]
    assert stellar["ledger"]["status"] == "ok"
    assert {t["currency"]: t for t in found["totals"]}["BND"]["held"] is None
    time.sleep(FAST.reset_timeout_s * 2)  # the breaker half-opens; the next read closes it


def _statement_rows(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body)))


def _tie_out(rows: list[dict[str, str]]) -> dict[tuple[str, str, str], Decimal]:
    """Per asset: opening + signed legs, checked equal to closing; the closings."""
    running: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    closing: dict[tuple[str, str, str], Decimal] = {}
    for row in rows:
        key = (row["chain"], row["asset_code"], row["asset_issuer"])
        if row["record"] == "closing":
            closing[key] = Decimal(row["amount"])
        else:
            running[key] += Decimal(row["signed_amount"])
    assert closing == dict(running), (closing, dict(running))
    return closing


def test_statement_lists_the_period_and_ties_out(desk: Desk) -> None:
    start = desk.world.clock.now() - timedelta(seconds=1)
    sid = _settled(desk)
    end = desk.world.clock.now() + timedelta(seconds=1)
    api = desk.api
    with api.client(api.allocator) as allocator:
        found = allocator.statement(BUYER, since=start.isoformat(), until=end.isoformat())
        sheet = allocator.statement_csv(BUYER, since=start.isoformat(), until=end.isoformat())
        before = allocator.statement(
            BUYER, since=(start - timedelta(days=300)).isoformat(), until=start.isoformat()
        )
        everything = allocator.statement(
            BUYER, since=(start - timedelta(days=300)).isoformat(), until=end.isoformat()
        )
    assert (found["party"], found["from"], found["to"]) == (
        BUYER,
        start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        end.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    )
    mine = [line for line in found["lines"] if line["settlement_id"] == sid]
    w = desk.world
    assert {(x["direction"], x["asset"]["code"], x["amount"], x["kind"]) for x in mine} == {
        ("debit", "USDC", "400", "principal"),
        ("credit", "BND", "4", "principal"),
        ("debit", "USDC", "2.5", "fee"),
    }
    for line in mine:
        purposes = {t["purpose"] for t in line["transactions"]}
        assert "lock" in purposes and ({"commit", "release"} & purposes), line
        chain = w.chains[line["chain"]]
        for tx in line["transactions"]:
            on_ledger = chain.lookup(tx["tx_hash"])
            assert on_ledger is not None and on_ledger.validated and on_ledger.successful
            assert (on_ledger.ledger_index, on_ledger.ledger_hash) == (
                tx["ledger_index"],
                tx["ledger_hash"],
            )
    # opening in this period = closing of everything before it; the CSV ties out
    closing_before = {(a["chain"], a["asset"]["code"]): a["closing"] for a in before["assets"]}
    for movement in found["assets"]:
        key = (movement["chain"], movement["asset"]["code"])
        assert movement["opening"] == closing_before.get(key, "0"), movement
        assert Decimal(movement["opening"]) + Decimal(movement["credits"]) - Decimal(
            movement["debits"]
        ) == Decimal(movement["closing"])
    rows = _statement_rows(sheet)
    closings = _tie_out(rows)
    assert {(k[0], k[1]): v for k, v in closings.items()} == {
        (a["chain"], a["asset"]["code"]): Decimal(a["closing"]) for a in found["assets"]
    }
    legs = [r for r in rows if r["record"] == "leg" and r["settlement_id"] == sid]
    assert len(legs) == 3 and all(r["lock_tx_hash"] and r["payout_tx_hash"] for r in legs)
    assert all(r["lock_ledger_hash"] and r["payout_ledger_hash"] for r in legs)
    # the whole history's closing is the net of every settled leg of the buyer
    net = {(a["chain"], a["asset"]["code"]): Decimal(a["closing"]) for a in everything["assets"]}
    assert net[("stellar", "USDC")] < 0 < net[("xrpl", "BND")]


def test_statement_bad_input_is_a_clear_problem(desk: Desk) -> None:
    api = desk.api
    path = f"/v1/parties/{BUYER}/statement"
    for query in (
        "",
        "?from=2026-01-01",
        "?to=2026-01-01",
        "?from=2026-02-01&to=2026-01-01",
        "?from=2026-01-01&to=2026-01-01",
        "?from=2024-01-01&to=2026-01-01",
        "?from=yesterday&to=2026-01-01",
        "?from=2026-01-01T00:00:00&to=2026-01-02T00:00:00",
        "?from=2026-13-01&to=2027-01-01",
    ):
        problem_of(api.send(api.allocator, "GET", path + query), 422, "invalid_period")
    ok = "?from=2026-01-01&to=2026-02-01"
    problem_of(api.send(api.allocator, "GET", f"{path}{ok}&format=xml"), 422, "validation_failed")
    problem_of(
        api.send(api.auditor, "GET", f"/v1/parties/party-nobody/statement{ok}"),
        404,
        "party_not_found",
    )
    problem_of(
        api.send(api.auditor, "GET", "/v1/parties/party-nobody/balances"), 404, "party_not_found"
    )
    for route in (f"{path}{ok}", f"{path}{ok}&format=csv", f"/v1/parties/{BUYER}/balances"):
        problem_of(api.send(api.other_allocator, "GET", route), 403, "forbidden")
    served = api.send(api.officer, "GET", f"{path}{ok}&format=csv")
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/csv")
    assert served.text.splitlines()[0].startswith("record,at,chain,asset_code")


def _cli(desk: Desk, key: Key, tmp_path: Path, *args: str) -> tuple[int, str]:
    pem = tmp_path / f"{key.key_id}.pem"
    if not pem.exists():
        pem.write_bytes(signing.private_key_pem(key.private_key))
        pem.chmod(0o600)
    result = CliRunner().invoke(cli_app, [*args, "--url", desk.api.url, "--key", str(pem)])
    return result.exit_code, result.output


def test_cli_balances_and_statement(desk: Desk, tmp_path: Path) -> None:
    api = desk.api
    code, out = _cli(desk, api.allocator, tmp_path, "balances", BUYER)
    assert code == 0, out
    assert out.splitlines()[1].split()[:4] == ["CHAIN", "ACCOUNT", "ASSET", "HELD"]
    code, out = _cli(desk, api.allocator, tmp_path, "balances", BUYER, "--json")
    assert code == 0, out
    assert json.loads(out)["party"] == BUYER
    code, out = _cli(desk, api.allocator, tmp_path, "balances", SELLER)
    assert code == 1 and "403" in out
    period = ("--from", "2020-01-01", "--to", "2020-06-01")
    code, out = _cli(desk, api.auditor, tmp_path, "statement", BUYER, *period, "--csv")
    assert code == 0, out
    assert out.splitlines() == [",".join(CSV_COLUMNS)]
    code, out = _cli(desk, api.auditor, tmp_path, "statement", BUYER, *period)
    assert code == 0, out
    assert "no settled legs in the period" in out and "no positions" in out
    reversed_period = ("--from", "2020-06-01", "--to", "2020-01-01")
    code, out = _cli(desk, api.auditor, tmp_path, "statement", BUYER, *reversed_period)
    assert code == 1 and "invalid_period" in out


def test_the_console_shows_a_party_page_linked_from_the_commitment(desk: Desk) -> None:
    engine, w = desk.api.engine, desk.world
    server, thread, url = serve(console_app(engine, w.clock, chains=w.chains))
    console = ConsoleServer(
        url,
        engine,
        w.clock,
        ConsoleAccounts(engine.db, w.clock, engine.compliance, hasher=TEST_HASHER),
    )
    try:
        cid = _verified(desk)
        with console.signed_in(console.officer()) as browser:
            detail = browser.get(f"/console/commitments/{cid}")
            assert f'href="/console/parties/{BUYER}"' in detail.text
            page = browser.get(f"/console/parties/{BUYER}")
            missing = browser.get("/console/parties/party-nobody")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert page.status_code == 200, page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    held = w.stellar.balance(w.buyer_stellar.public_key, w.usdc)
    assert w.buyer_stellar.public_key in page.text and w.buyer_xrpl.classic_address in page.text
    assert f">{format_amount(held)}<" in page.text
    assert "Of which uninstructed" in page.text
    assert missing.status_code == 404


def _legs_locked(desk: Desk, sid: str) -> bool:
    legs = desk.api.engine.db.transaction(lambda uow: records.load_legs(uow, uuid.UUID(sid)))
    return all(leg.state in ("LOCKED", "HELD") for leg in legs)


def test_an_open_settlement_is_committed_then_locked_without_a_break(desk: Desk) -> None:
    """Runs last: it moves the world's time (the ledgers' and the engine's)."""
    w, api = desk.world, desk.api
    cid = _verified(desk)
    sid = _fund(desk, cid, settle_in_s=30)
    with api.client(api.allocator) as allocator:
        pending = allocator.balances(BUYER)
    usdc = _by_account(pending)[("stellar", w.buyer_stellar.public_key, "USDC")]
    assert Decimal(usdc["committed"]) == USDC + FEE
    assert Decimal(usdc["available"]) == Decimal(usdc["ledger"]["held"]) - USDC - FEE
    assert usdc["breaks"] == []

    result = desk.coordinator.run_to_end(
        uuid.UUID(sid), timeout_s=30, until=lambda: _legs_locked(desk, sid)
    )
    assert _legs_locked(desk, sid), result
    with api.client(api.allocator) as allocator, api.client(api.auditor) as auditor:
        buyer, seller = allocator.balances(BUYER), auditor.balances(SELLER)
    _check_held(desk, buyer, seller)
    usdc = _by_account(buyer)[("stellar", w.buyer_stellar.public_key, "USDC")]
    assert (Decimal(usdc["locked"]), usdc["committed"]) == (USDC + FEE, "0")
    bonds = _by_account(seller)[("xrpl", w.seller_xrpl.classic_address, "BND")]
    assert Decimal(bonds["locked"]) == BONDS
    with api.client(api.auditor) as auditor:
        legs = auditor.get_settlement(cid)["legs"]
    xrpl_leg = next(leg for leg in legs if leg["chain"] == "xrpl")
    # an escrow is on the ledger as the seller's lock; a custody lock is with the agent
    escrowed = BONDS if xrpl_leg["lock_kind"] == "escrow" else Decimal(0)
    assert Decimal(bonds["ledger"]["locked"]) == escrowed == Decimal(bonds["expected_locked_min"])
    assert (buyer["breaks"], seller["breaks"]) == (0, 0), (buyer, seller)

    w.advance_time(31)
    result = desk.coordinator.run_to_end(uuid.UUID(sid), timeout_s=60)
    assert result.status == "SETTLED", result
    with api.client(api.allocator) as allocator:
        after = allocator.balances(BUYER)
    assert _by_account(after)[("stellar", w.buyer_stellar.public_key, "USDC")]["locked"] == "0"
    assert after["breaks"] == 0


def test_a_lock_the_engine_does_not_know_is_a_break(desk: Desk) -> None:
    """Runs last: the stray lock stays on the ledger. The buyer locks USDC in a claimable
    balance outside the engine (claimable by itself later, as every lock of the engine's
    lets its sender reclaim): the ledger holds a lock no open settlement accounts for."""
    w = desk.world
    stray = Decimal(7)
    usdc = SdkAsset(w.usdc.code, w.usdc.issuer)
    claimants = [
        Claimant(w.seller_stellar.public_key),
        Claimant(
            w.buyer_stellar.public_key,
            ClaimPredicate.predicate_not(ClaimPredicate.predicate_unconditional()),
        ),
    ]
    w.stellar.send(
        w.buyer_stellar,
        lambda b: b.append_create_claimable_balance_op(usdc, f"{stray}", claimants),
    )
    with desk.api.client(desk.api.allocator) as allocator:
        found = allocator.balances(BUYER)
    position = _by_account(found)[("stellar", w.buyer_stellar.public_key, "USDC")]
    assert Decimal(position["ledger"]["locked"]) == stray
    assert position["expected_locked_max"] == "0"
    assert len(position["breaks"]) == 1 and "holds 7 USDC in locks" in position["breaks"][0]
    assert found["breaks"] == 1
    _check_held(desk, found)
