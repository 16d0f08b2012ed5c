"""`settle audit anchor`, `settle audit verify --anchors` and `settle audit proof`, as an
operator runs them against the local networks; and their refusals."""

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

from ledger import anchors, proof_verifier
from settlement import bootstrap, signing
from settlement.bootstrap import DatabaseUrls
from settlement.cli.main import app
from settlement.clock import SystemClock
from settlement.demo.world import LocalWorld
from settlement.domain.states import State
from settlement.settings import load_settings
from tests.settlement.api.conftest import running_api
from tests.support import new_commitment


def settle(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=stdin)
    return result.exit_code, result.output


@pytest.fixture
def world() -> Iterator[LocalWorld]:
    w = bootstrap.local_world(usdc=Decimal(10), stellar_channels=0)
    yield w
    w.close()


@pytest.fixture
def operator(
    world: LocalWorld, fresh_urls: DatabaseUrls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Settings naming the local networks, the agents and the world's anchor accounts,
    whose keys (and the agents') are in the keystore."""
    xrpl_anchor, stellar_anchor = world.anchor_xrpl, world.anchor_stellar
    env = {
        "SETTLEMENT_DATABASE_URL": fresh_urls.owner,
        "SETTLEMENT_DATA_DIR": str(tmp_path),
        "SETTLEMENT_XRPL_URL": world.xrpl.url,
        "SETTLEMENT_HORIZON_URL": world.stellar.url,
        "SETTLEMENT_XRPL_AGENT": world.agent_xrpl.classic_address,
        "SETTLEMENT_STELLAR_AGENT": world.agent_stellar.public_key,
        "SETTLEMENT_XRPL_ANCHOR_ACCOUNT": xrpl_anchor.classic_address,
        "SETTLEMENT_STELLAR_ANCHOR_ACCOUNT": stellar_anchor.public_key,
        "SETTLEMENT_ANCHOR_SETTLE_S": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for chain, secret in (
        ("xrpl", world.agent_xrpl.seed),
        ("xrpl", xrpl_anchor.seed),
        ("stellar", world.agent_stellar.secret),
        ("stellar", stellar_anchor.secret),
    ):
        code, out = settle("keystore", "add", chain, stdin=f"{secret}\n")
        assert code == 0, out
    return env


def _commitments(*states: State) -> list[UUID]:
    engine = bootstrap.build(load_settings())
    try:
        return [new_commitment(engine.commitments, state) for state in states]
    finally:
        engine.close()


def _json(args: list[str]) -> tuple[int, dict[str, Any]]:
    code, out = settle(*args, "--json")
    return code, json.loads(out)


def test_anchor_verify_and_prove_from_the_command_line(
    world: LocalWorld, operator: dict[str, str], tmp_path: Path
) -> None:
    victim, _ = _commitments(State.VERIFIED, State.DRAFT)
    code, landed = _json(["audit", "anchor"])
    assert code == 0, landed
    assert landed["taken"] == 1
    assert {c: v["landed"] for c, v in landed["chains"].items()} == {"xrpl": [1], "stellar": [1]}
    code, out = settle("audit", "anchor")
    assert code == 0 and "none taken" in out, out

    code, report = _json(["audit", "verify", "--anchors"])
    assert code == 0, report
    assert report["anchors"]["ok"] and report["anchors"]["unconfirmed"] == []

    proof_file = tmp_path / "proof.json"
    code, out = settle("audit", "proof", str(victim), "--out", str(proof_file))
    assert code == 0, out
    assert "3 entries, anchor 1" in out
    urls = ["--xrpl", world.xrpl.url, "--horizon", world.stellar.url]
    assert proof_verifier.main([str(proof_file), *urls]) == 0

    _rewrite_history(operator["SETTLEMENT_DATABASE_URL"], victim)
    assert settle("audit", "verify", "--direct")[0] == 0, "the chain alone passes"
    code, out = settle("audit", "verify", "--anchors")
    assert code == 1
    assert "ANCHOR MISMATCH: first at anchor 1" in out
    assert f"changed: {victim}" in out


def test_an_auditor_verifies_the_anchors_through_the_signed_api(
    world: LocalWorld,
    operator: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    victim, _ = _commitments(State.VERIFIED, State.DRAFT)
    assert settle("audit", "anchor")[0] == 0
    engine = bootstrap.build(load_settings())
    ledgers = bootstrap.build_ledgers(engine)
    try:
        with running_api(engine, SystemClock(), ledgers=ledgers) as api:
            with api.client(api.auditor) as auditor:
                answer = auditor.verify_audit(anchors=True)
            assert answer["ok"] and answer["anchors"]["ok"], answer
            assert answer["anchors"]["checks"][0]["confirmed_on"].keys() == {"xrpl", "stellar"}
            key_file = tmp_path / f"{api.auditor.key_id}.pem"  # the key id, by default
            key_file.write_bytes(signing.private_key_pem(api.auditor.private_key))
            remote = ["--url", api.url, "--key", str(key_file)]
            direct = _json(["audit", "verify", "--anchors"])[1]
            # the auditor has no database: only the API can answer
            monkeypatch.setenv("SETTLEMENT_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/no")
            code, out = settle("audit", "verify", "--anchors", "--json", *remote)
            assert code == 0, out
            assert json.loads(out) == direct, "through the API, the database host's report"

            _rewrite_history(operator["SETTLEMENT_DATABASE_URL"], victim)
            with api.client(api.auditor) as auditor:
                assert auditor.verify_audit()["ok"], "the chain alone passes"
                answer = auditor.verify_audit(anchors=True)
            assert not answer["ok"] and answer["breaks"] == []
            assert answer["anchors"]["first_mismatch"]["changed"] == [str(victim)]
            code, out = settle("audit", "verify", "--anchors", *remote)
            assert code == 1, out
            assert "ANCHOR MISMATCH: first at anchor 1" in out
            assert f"changed: {victim}" in out
    finally:
        ledgers.close()
        engine.close()


def test_an_auditor_needs_the_database_and_the_ledgers_nothing_else(
    operator: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _commitments(State.VERIFIED)
    assert settle("audit", "anchor")[0] == 0
    # the auditor's machine: no settlement agents, an empty data dir (no keystore)
    for name in ("SETTLEMENT_XRPL_AGENT", "SETTLEMENT_STELLAR_AGENT"):
        monkeypatch.delenv(name)
    auditor_dir = tmp_path / "auditor"
    auditor_dir.mkdir()
    monkeypatch.setenv("SETTLEMENT_DATA_DIR", str(auditor_dir))
    code, out = settle("audit", "verify", "--anchors", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["anchors"]["ok"] and report["anchors"]["unconfirmed"] == []
    assert report["anchors"]["checks"][0]["confirmed_on"].keys() == {"xrpl", "stellar"}
    assert not any(auditor_dir.iterdir()), "nothing written on the auditor's side"


def _rewrite_history(owner_url: str, victim: UUID) -> None:
    """As the owner: edit an entry and recompute every hash of the chain after it."""
    owner = create_engine(owner_url)
    with owner.begin() as c:
        c.execute(text("SET session_replication_role = replica"))
        c.execute(
            text("UPDATE audit_log SET actor = 'mallory' WHERE commitment_id = :id AND seq = 2"),
            {"id": victim},
        )
        for seq in (2, 3):
            c.execute(
                text(
                    "UPDATE audit_log SET prev_hash = (SELECT entry_hash FROM audit_log"
                    " WHERE commitment_id = :id AND seq = :seq - 1) WHERE commitment_id = :id"
                    " AND seq = :seq"
                ),
                {"id": victim, "seq": seq},
            )
            c.execute(
                text(
                    "UPDATE audit_log SET entry_hash = audit_entry_hash_of(audit_log)"
                    " WHERE commitment_id = :id AND seq = :seq"
                ),
                {"id": victim, "seq": seq},
            )
    owner.dispose()


def _rewrite_compliance(owner_url: str) -> None:
    """As the owner: edit the compliance chain's first entry and recompute every hash
    after it."""
    owner = create_engine(owner_url)
    with owner.begin() as c:
        c.execute(text("SET session_replication_role = replica"))
        c.execute(text("UPDATE compliance_audit SET actor = 'mallory' WHERE seq = 1"))
        for (seq,) in c.execute(text("SELECT seq FROM compliance_audit ORDER BY seq")).all():
            c.execute(
                text(
                    "UPDATE compliance_audit SET prev_hash = (SELECT entry_hash FROM"
                    " compliance_audit WHERE seq = :seq - 1) WHERE seq = :seq"
                ),
                {"seq": seq},
            )
            c.execute(
                text(
                    "UPDATE compliance_audit SET entry_hash ="
                    " compliance_audit_hash_of(compliance_audit) WHERE seq = :seq"
                ),
                {"seq": seq},
            )
    owner.dispose()


def test_a_rewritten_compliance_chain_is_named_by_the_anchors(
    world: LocalWorld, operator: dict[str, str], tmp_path: Path
) -> None:
    (victim,) = _commitments(State.VERIFIED)
    assert settle("audit", "anchor")[0] == 0
    _rewrite_compliance(operator["SETTLEMENT_DATABASE_URL"])
    engine = bootstrap.build(load_settings())
    try:
        assert engine.compliance.verify_audit().ok, "the compliance chain alone passes"
    finally:
        engine.close()
    code, out = settle("audit", "verify", "--anchors")
    assert code == 1, out
    assert "ANCHOR MISMATCH: first at anchor 1" in out
    assert "compliance chain changed" in out
    # a commitment's proof runs through the same root, and still holds
    proof_file = tmp_path / "proof.json"
    assert settle("audit", "proof", str(victim), "--out", str(proof_file))[0] == 0
    urls = ["--xrpl", world.xrpl.url, "--horizon", world.stellar.url]
    assert proof_verifier.main([str(proof_file), *urls]) == 0


def test_a_partitioned_ledger_delays_the_anchor_until_the_next_run(
    world: LocalWorld, operator: dict[str, str]
) -> None:
    assert world.xrpl_node is not None
    _commitments(State.DRAFT)
    world.xrpl_node.faults.partition(600)
    code, out = settle("audit", "anchor", "--wait", "0")
    assert code == 1, out
    assert "xrpl: landed now: none; anchor 1 on its way" in out
    world.xrpl_node.faults.heal()
    code, landed = _json(["audit", "anchor"])
    assert code == 0, landed
    assert landed["taken"] is None and landed["chains"]["xrpl"]["landed"] == [1]
    code, report = _json(["audit", "verify", "--anchors"])
    assert code == 0 and report["anchors"]["checks"][0]["confirmed_on"].keys() == {
        "xrpl",
        "stellar",
    }


def test_a_running_worker_anchors_as_the_settings_ask(operator: dict[str, str]) -> None:
    engine = bootstrap.build(load_settings(anchor_interval_s=0, anchor_every_entries=50))
    try:
        loop = bootstrap.build_anchor_loop(engine)
        assert loop is not None and (loop.every_s, loop.every_entries) == (None, 50)
    finally:
        engine.close()
    engine = bootstrap.build(load_settings(anchor_interval_s=0, anchor_every_entries=0))
    try:
        assert bootstrap.build_anchor_loop(engine) is None, "both triggers off"
    finally:
        engine.close()


def test_refusals(fresh_urls: DatabaseUrls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETTLEMENT_DATABASE_URL", fresh_urls.owner)
    for name in ("SETTLEMENT_XRPL_ANCHOR_ACCOUNT", "SETTLEMENT_STELLAR_ANCHOR_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    code, out = settle("audit", "anchor")
    assert code == 2 and "no anchor account" in out, out
    (cid,) = _commitments(State.DRAFT)
    code, out = settle("audit", "proof", str(cid))
    assert code == 1 and "no anchor published on a ledger covers" in out, out
    assert settle("audit", "verify", "--anchors")[0] == 0, "nothing anchored: nothing to ask"
    engine = bootstrap.build(load_settings())
    try:
        at = engine.clock.now()
        with engine.db.unit_of_work() as uow:
            anchors.insert_anchor(uow, heads=anchors.chain_heads(uow, at), cutoff=at, at=at)
            uow.commit()
    finally:
        engine.close()
    code, out = settle("audit", "verify", "--anchors")
    assert code == 2 and "cannot be checked on their ledgers" in out, out
