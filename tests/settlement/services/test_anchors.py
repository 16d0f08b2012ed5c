"""Audit anchors on the real local networks: an anchor lands on both ledgers, once per
root; a ledger that is partitioned delays it, and nothing else waits for it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.chain import Anchoring, ChainName
from adapters.resilience import ResiliencePolicy
from ledger import anchors, proof_verifier
from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.demo.world import LocalWorld
from settlement.domain.states import State
from settlement.services.anchors import (
    Anchorer,
    AnchorLoop,
    proof_of_commitment,
    verify_anchors,
)
from settlement.settings import load_settings
from tests.support import new_commitment

FAST = ResiliencePolicy(fail_max=3, reset_timeout_s=0.5, attempts=2, backoff_initial_s=0.01)


@dataclass
class Anchored:
    world: LocalWorld
    engine: bootstrap.Services
    anchorer: Anchorer
    accounts: dict[ChainName, str]
    chains: dict[ChainName, Anchoring]

    def publish_until_landed(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.anchorer.publish()
            with self.engine.db.unit_of_work() as uow:
                if not any(anchors.unpublished(uow, name.value) for name in self.chains):
                    return
            time.sleep(0.05)
        raise AssertionError("the anchors did not land")

    def ledger_anchors(self, name: ChainName) -> list[str]:
        """The hashes of the anchoring transactions the anchor account sent, as the
        ledger holds them."""
        account = self.accounts[name]
        if name is ChainName.XRPL:
            answer = self.world.xrpl.rpc("account_tx", account=account)
            return [
                str(t.get("hash") or t["tx"]["hash"])
                for t in answer["transactions"]
                if (t.get("tx_json") or t.get("tx", {})).get("TransactionType") == "AccountSet"
            ]
        records = (self.world.stellar.server.transactions().for_account(account).limit(200).call())[
            "_embedded"
        ]["records"]
        return [str(r["hash"]) for r in records if r["memo_type"] == "hash"]


@pytest.fixture
def anchored(fresh_urls: DatabaseUrls) -> Iterator[Anchored]:
    world = bootstrap.local_world(policy=FAST, usdc=Decimal(10), stellar_channels=0)
    engine = bootstrap.build(
        load_settings(database_url=fresh_urls.owner), clock=world.clock, urls=fresh_urls
    )
    # the local world funds an anchor account per ledger and holds its key
    accounts = {
        ChainName.XRPL: world.anchor_xrpl.classic_address,
        ChainName.STELLAR: world.anchor_stellar.public_key,
    }
    chains: dict[ChainName, Anchoring] = {}
    for name, chain in world.chains.items():
        assert isinstance(chain, Anchoring)
        chains[name] = chain
    anchorer = Anchorer(engine.db, chains, accounts, world.clock, settle_s=0)
    try:
        yield Anchored(world, engine, anchorer, accounts, chains)
    finally:
        engine.close()
        world.close()


def test_an_anchor_lands_on_both_ledgers_and_verifies(anchored: Anchored) -> None:
    new_commitment(anchored.engine.commitments, State.VERIFIED)
    new_commitment(anchored.engine.commitments, State.DRAFT)
    first = anchored.anchorer.anchor()
    # two commitments' chains and the compliance chain (officers, KYC, sanctions lists)
    assert first is not None and first.chain_count == 3
    assert first.compliance_head() is not None
    assert anchored.anchorer.anchor() is None, "no new entry: no new anchor"
    anchored.publish_until_landed()

    with anchored.engine.db.unit_of_work() as uow:
        rows = anchors.publications(uow, first.seq)
    assert sorted((p.chain, p.status) for p in rows) == [
        ("stellar", "APPLIED"),
        ("xrpl", "APPLIED"),
    ]
    report = verify_anchors(anchored.engine.db, anchored.chains, anchored.accounts)
    assert report.ok, report.as_dict()
    assert report.unconfirmed == report.unlisted == []
    assert report.anchors[0].confirmed.keys() == {"xrpl", "stellar"}
    for name, chain in anchored.chains.items():
        (read,) = chain.anchor_history(anchored.accounts[name])
        landed = [p for p in rows if p.chain == name.value]
        assert (read.tx_hash, read.root) == (landed[0].tx_hash, bytes.fromhex(first.root))

    new_commitment(anchored.engine.commitments, State.DRAFT)
    assert anchored.anchorer.due(every_s=None, every_entries=1)
    assert not anchored.anchorer.due(every_s=None, every_entries=2)
    second = anchored.anchorer.anchor()
    assert second is not None and (second.seq, second.chain_count) == (2, 4)
    anchored.publish_until_landed()
    assert verify_anchors(anchored.engine.db, anchored.chains).ok


def test_a_proof_verifies_against_both_ledger_servers(anchored: Anchored, tmp_path: Path) -> None:
    cid = new_commitment(anchored.engine.commitments, State.VERIFIED)
    new_commitment(anchored.engine.commitments, State.DRAFT)
    assert anchored.anchorer.anchor() is not None
    anchored.publish_until_landed()
    proof = proof_of_commitment(anchored.engine.db, cid)
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    urls = ["--xrpl", anchored.world.xrpl.url, "--horizon", anchored.world.stellar.url]
    assert proof_verifier.main([str(path), *urls]) == 0
    confirmed = proof_verifier.verify(
        proof, xrpl_url=anchored.world.xrpl.url, horizon_url=anchored.world.stellar.url
    )
    assert sorted(c.split()[0] for c in confirmed) == ["stellar", "xrpl"]

    proof["root"] = ("0" if proof["root"][0] != "0" else "1") + proof["root"][1:]
    path.write_text(json.dumps(proof))
    assert proof_verifier.main([str(path), *urls]) == 1


def test_a_partitioned_ledger_delays_the_anchor_which_then_lands_once(
    anchored: Anchored,
) -> None:
    world = anchored.world
    assert world.xrpl_node is not None
    new_commitment(anchored.engine.commitments, State.VERIFIED)
    anchor = anchored.anchorer.anchor()
    assert anchor is not None

    world.xrpl_node.faults.partition(600)
    progress = {p.chain: p for p in anchored.anchorer.publish()}
    assert progress[ChainName.XRPL].unavailable is not None
    assert progress[ChainName.XRPL].landed == []
    # the rest of the engine goes on meanwhile
    new_commitment(anchored.engine.commitments, State.PENDING_REVIEW)
    for _ in range(3):
        anchored.anchorer.publish()
    with anchored.engine.db.unit_of_work() as uow:
        assert anchors.unpublished(uow, "xrpl") == [anchor]
        assert anchors.unpublished(uow, "stellar") == []

    world.xrpl_node.faults.heal()
    anchored.publish_until_landed()
    for _ in range(3):  # more steps after it landed sign nothing more
        anchored.anchorer.publish()
    with anchored.engine.db.unit_of_work() as uow:
        rows = anchors.publications(uow, anchor.seq)
    applied = [p for p in rows if p.status == "APPLIED"]
    assert sorted(p.chain for p in applied) == ["stellar", "xrpl"]
    assert all(p.status in ("APPLIED", "EXPIRED", "REJECTED") for p in rows)
    for name in (ChainName.XRPL, ChainName.STELLAR):
        landed = anchored.ledger_anchors(name)
        assert landed == [p.tx_hash for p in applied if p.chain == name.value], name
    assert verify_anchors(anchored.engine.db, anchored.chains).ok


def test_a_ledger_down_when_signing_is_retried_later(anchored: Anchored) -> None:
    world = anchored.world
    assert world.stellar_node is not None
    new_commitment(anchored.engine.commitments, State.DRAFT)
    anchor = anchored.anchorer.anchor()
    assert anchor is not None
    world.stellar_node.faults.partition(600)
    progress = {p.chain: p for p in anchored.anchorer.publish()}
    assert progress[ChainName.STELLAR].unavailable is not None
    with anchored.engine.db.unit_of_work() as uow:
        assert [p.chain for p in anchors.publications(uow, anchor.seq)] == ["xrpl"]
    world.stellar_node.faults.heal()
    anchored.publish_until_landed()
    assert len(anchored.ledger_anchors(ChainName.STELLAR)) == 1


def test_the_loop_anchors_in_the_background(anchored: Anchored) -> None:
    # the commitment (and the compliance entries its seeding writes) first: a loop
    # already running could anchor between those writes, which is right but not one root
    new_commitment(anchored.engine.commitments, State.DRAFT)
    loop = AnchorLoop(anchored.anchorer, every_s=None, every_entries=1, poll_s=0.05)
    loop.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with anchored.engine.db.unit_of_work() as uow:
                taken = anchors.anchors(uow)
                waiting = [anchors.unpublished(uow, n.value) for n in anchored.chains]
            if taken and not any(waiting):
                break
            time.sleep(0.05)
    finally:
        loop.stop()
    assert [a.seq for a in taken] == [1]
    assert all(len(anchored.ledger_anchors(name)) == 1 for name in anchored.chains)
    assert verify_anchors(anchored.engine.db, anchored.chains).ok


def test_a_refused_signature_is_signed_again_and_lands_once(anchored: Anchored) -> None:
    """A lost answer and a refusal that never reached a ledger: the open signature is
    resent, the refused one replaced; the root still lands once."""
    world = anchored.world
    assert world.xrpl_node is not None
    new_commitment(anchored.engine.commitments, State.DRAFT)
    anchor = anchored.anchorer.anchor()
    assert anchor is not None
    world.xrpl_node.faults.reject_submits(1, "temMALFORMED")
    progress = {p.chain: p for p in anchored.anchorer.publish()}
    assert progress[ChainName.XRPL].refused is not None
    assert "temMALFORMED" in progress[ChainName.XRPL].refused
    world.xrpl_node.faults.drop_submit_responses(1)
    anchored.publish_until_landed()
    with anchored.engine.db.unit_of_work() as uow:
        rows = [p for p in anchors.publications(uow, anchor.seq) if p.chain == "xrpl"]
    assert [p.status for p in rows] == ["REJECTED", "APPLIED"]
    assert anchored.ledger_anchors(ChainName.XRPL) == [rows[1].tx_hash]
