"""The operator's path: keys into the keystore, then `settle worker` drives settlements."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner
from xrpl.wallet import Wallet

from adapters.chain import ChainName
from adapters.keystore import KeystoreError
from adapters.xrpl.chain import XrplChain
from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.cli.main import app
from settlement.demo.world import LocalWorld
from settlement.domain.states import State
from settlement.domain.values import SYSTEM
from settlement.settings import load_settings
from tests.support import ALLOCATOR, OFFICER, seed_compliance


@pytest.fixture
def world() -> Iterator[LocalWorld]:
    w = bootstrap.local_world(usdc=Decimal(5_000))
    yield w
    w.close()


@pytest.fixture
def operator_env(
    world: LocalWorld, fresh_urls: DatabaseUrls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    env = {
        "SETTLEMENT_DATABASE_URL": fresh_urls.owner,
        "SETTLEMENT_DATA_DIR": str(tmp_path),
        "SETTLEMENT_XRPL_URL": world.xrpl.url,
        "SETTLEMENT_HORIZON_URL": world.stellar.url,
        "SETTLEMENT_XRPL_AGENT": world.agent_xrpl.classic_address,
        "SETTLEMENT_STELLAR_AGENT": world.agent_stellar.public_key,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def settle(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=stdin)
    return result.exit_code, result.output


def _query(env: dict[str, str], sql: str) -> list[Any]:
    owner = create_engine(env["SETTLEMENT_DATABASE_URL"])
    try:
        with owner.connect() as c:
            return list(c.execute(text(sql)).all())
    finally:
        owner.dispose()


def _add_engine_keys(world: LocalWorld) -> None:
    """The keys the engine signs with: lock senders and both agents."""
    for chain, secret in (
        ("xrpl", world.seller_xrpl.seed),
        ("xrpl", world.agent_xrpl.seed),
        ("stellar", world.buyer_stellar.secret),
        ("stellar", world.agent_stellar.secret),
    ):
        code, out = settle("keystore", "add", chain, stdin=f"{secret}\n")
        assert code == 0, out


def _settle_through_the_worker(world: LocalWorld, deal_ref: str) -> UUID:
    """A screened, approved commitment, instructed, then driven by `settle worker`."""
    engine = bootstrap.build(load_settings())
    try:
        seed_compliance(engine.commitments)
        world.register_accounts(
            engine.compliance, OFFICER, buyer="party-northwind", seller="party-southbank"
        )
        cid = engine.commitments.create(
            ALLOCATOR,
            deal_ref=deal_ref,
            amount="1000",
            currency="USDC",
            counterparty="party-southbank",
        ).commitment_id
        engine.commitments.submit(ALLOCATOR, cid)
        engine.commitments.approve(OFFICER, cid)
        bootstrap.build_coordinator(engine).instruct(
            SYSTEM,
            cid,
            world.legs(Decimal(10), Decimal(1000)),
            commit_deadline=engine.clock.now() + timedelta(seconds=60),
        )
        code, out = settle("worker", "--until-idle")
        assert code == 0, out
        assert engine.commitments.state_of(cid) is State.SETTLED
        return cid
    finally:
        engine.close()


def test_keystore_then_worker_settles(world: LocalWorld, operator_env: dict[str, str]) -> None:
    _add_engine_keys(world)
    code, out = settle("keystore", "list", "--json")
    assert code == 0, out
    assert world.seller_xrpl.classic_address in out and world.agent_stellar.public_key in out
    assert str(world.seller_xrpl.seed) not in out, "never a secret on screen"
    keyfile = Path(operator_env["SETTLEMENT_DATA_DIR"]) / "keys" / "keystore.fernet"
    assert keyfile.stat().st_mode & 0o077 == 0, "readable by its owner only"
    _settle_through_the_worker(world, "OPS")
    # the worker showed its breakers on the shared board, one row per chain
    rows = _query(operator_env, "SELECT scope, chain, state FROM breaker_states")
    assert {(chain, state) for _, chain, state in rows} == {
        ("xrpl", "closed"),
        ("stellar", "closed"),
    }
    assert all(scope.startswith("worker:") for scope, _, _ in rows), rows


def test_worker_submits_stellar_transactions_through_configured_channels(
    world: LocalWorld, operator_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _add_engine_keys(world)
    channels = world.channels_stellar[:2]
    for channel in channels:
        code, out = settle("keystore", "add", "stellar", stdin=f"{channel.secret}\n")
        assert code == 0, out
    monkeypatch.setenv("SETTLEMENT_STELLAR_CHANNELS", ",".join(c.public_key for c in channels))
    _settle_through_the_worker(world, "OPS-CHANNELS")
    used = [
        row[0]
        for row in _query(
            operator_env,
            "SELECT DISTINCT channel FROM ledger_submissions"
            " WHERE chain = 'stellar' AND status = 'APPLIED'",
        )
    ]
    assert used and set(used) <= {c.public_key for c in channels}, used


def test_tickets_command_and_the_worker_signing_xrpl_on_tickets(
    world: LocalWorld, operator_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _add_engine_keys(world)
    agent, seller = world.agent_xrpl.classic_address, world.seller_xrpl.classic_address
    code, out = settle("xrpl", "tickets", "--target", "2", "--json")
    assert code == 0, out
    (report,) = json.loads(out)
    assert (report["account"], report["before"], report["after"], report["ok"]) == (
        agent,
        0,
        2,
        True,
    )
    assert len(report["tx_hash"]) == 64 and len(report["ledger_hash"]) == 64
    code, out = settle("xrpl", "tickets", seller, "--target", "2")
    assert (code, out.split(";")[0]) == (0, f"{seller}: 0 -> 2 tickets"), out
    code, out = settle("xrpl", "tickets", seller, "--target", "2")
    assert (code, out.strip()) == (0, f"{seller}: 2 -> 2 tickets; enough tickets already")
    stranger = world.xrpl.account()  # exists on the ledger; its key is not in the keystore
    code, out = settle("xrpl", "tickets", stranger.classic_address, "--target", "1")
    assert code == 2, out
    code, out = settle("xrpl", "tickets", "--target", "251")
    assert code == 2, out

    # the worker keeps the agent at 6 tickets: below half (3) it tops up
    monkeypatch.setenv("SETTLEMENT_XRPL_TICKET_TARGET", "6")
    _settle_through_the_worker(world, "OPS-TICKETS")
    rows = _query(
        operator_env,
        "SELECT purpose, channel FROM ledger_submissions WHERE chain = 'xrpl'"
        " AND status = 'APPLIED' ORDER BY id",
    )
    assert [purpose for purpose, _ in rows] == ["lock", "commit"]
    (lock_channel, commit_channel) = [channel for _, channel in rows]
    assert lock_channel.startswith(f"{seller}:") and commit_channel.startswith(f"{agent}:")
    xrpl = world.chains[ChainName.XRPL]
    assert isinstance(xrpl, XrplChain)
    assert len(xrpl.tickets(seller)) == 1, "the seller is not kept: only the agent is named"
    # the worker's first housekeeping found the agent at 2 of 6 (below half) and asked for
    # 4 more; the commit spent one of the agent's tickets either before or after
    deadline = time.monotonic() + 20
    while len(xrpl.tickets(agent)) != 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(xrpl.tickets(agent)) == 5


def test_worker_refuses_to_start_without_agents_or_with_a_wrong_key(
    operator_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SETTLEMENT_XRPL_AGENT")
    code, out = settle("worker", "--once")
    assert code == 2
    assert "SETTLEMENT_XRPL_AGENT" in out
    monkeypatch.setenv("SETTLEMENT_XRPL_AGENT", operator_env["SETTLEMENT_XRPL_AGENT"])
    assert settle("keystore", "add", "stellar", stdin="not-a-secret\n")[0] == 1
    wallet = Wallet.create()
    assert settle("keystore", "add", "xrpl", stdin=f"{wallet.seed}\n") == (
        0,
        f"{wallet.classic_address}\n",
    )
    monkeypatch.setenv("SETTLEMENT_KEYSTORE_KEY", "A" * 43 + "=")
    code, out = settle("keystore", "list")
    assert code == 1
    assert "cannot be opened with this key" in out


def test_keystore_errors_are_typed(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    from adapters.keystore import KeystoreFile

    store = KeystoreFile(tmp_path / "k", Fernet.generate_key())
    with pytest.raises(KeystoreError, match="not an XRPL seed"):
        store.add_xrpl("nonsense")
    with pytest.raises(KeystoreError, match="not a Fernet key"):
        KeystoreFile(tmp_path / "k", b"short")


def test_audit_verify_checks_ledger_references_on_the_ledgers(
    world: LocalWorld, operator_env: dict[str, str], fresh_urls: DatabaseUrls
) -> None:
    _add_engine_keys(world)
    cid = _settle_through_the_worker(world, "REFS")
    code, out = settle("audit", "verify", "--direct", "--ledgers")
    assert code == 0, out
    assert "5 ledger references" in out  # 2 locks, the claim, 2 payouts
    code, out = settle("reconcile")
    assert (code, out.strip()) == (0, "reconcile: ok")
    world.xrpl_node.faults.partition(30)
    code, out = settle("reconcile", "--json")
    world.xrpl_node.faults.heal()
    assert code == 2, out
    assert '"unreachable"' in out
    # a recorded ledger hash that is not the ledger's
    owner = create_engine(fresh_urls.owner)
    with owner.begin() as c:
        c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        c.execute(
            text(
                "UPDATE audit_log SET ledger_hash = upper(reverse(ledger_hash))"
                " WHERE action = 'leg_commit' AND chain = 'xrpl'"
            )
        )
        c.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))
    owner.dispose()
    code, out = settle("audit", "verify", "--direct", "--ledgers")
    assert code == 1
    assert "entry_hash does not match its contents (edited)" in out
    # a careful forger rewrites the chain from there on: only the ledger can tell
    owner = create_engine(fresh_urls.owner)
    with owner.begin() as c:
        c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        seqs = (
            c.execute(
                text("SELECT seq FROM audit_log WHERE commitment_id = :id ORDER BY seq"),
                {"id": cid},
            )
            .scalars()
            .all()
        )
        prev = None
        for seq in seqs:
            prev = c.execute(
                text(
                    "UPDATE audit_log SET prev_hash = :prev, entry_hash = audit_entry_hash_v2("
                    " commitment_id, seq, recorded_at, actor, key_id, action, from_state, to_state,"
                    " commitment_version, idempotency_key, payload, chain, tx_hash, ledger_index,"
                    " ledger_hash, CAST(:prev AS text))"
                    " WHERE commitment_id = :id AND seq = :seq RETURNING entry_hash"
                ),
                {"prev": prev, "id": cid, "seq": seq},
            ).scalar_one()
        c.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))
    owner.dispose()
    code, _ = settle("audit", "verify", "--direct")
    assert code == 0, "the rewritten chain is consistent in itself"
    code, out = settle("audit", "verify", "--direct", "--ledgers")
    assert code == 1
    assert "ledger reference: recorded ledger" in out
