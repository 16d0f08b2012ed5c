"""Audit anchors on the public testnets: the anchor lands on both, is verified there, and
a proof of one commitment checks against the public ledger servers with the standalone
verifier alone.

The same steps as the local test (tests/settlement/services/test_anchors.py), on real
networks: the anchor accounts are new from the faucets (the world funds one per ledger),
the anchoring transactions wait for real ledger closes. Skipped unless
``SETTLEMENT_XRPL_URL`` and ``SETTLEMENT_HORIZON_URL`` are set (see the conftest).
"""

from __future__ import annotations

import time

import pytest

from adapters.chain import Anchoring, ChainName
from ledger import anchors, proof_verifier
from settlement.domain.states import State
from settlement.services.anchors import Anchorer, proof_of_commitment, verify_anchors
from settlement.settings import load_settings
from tests.support import new_commitment

from .conftest import EngineOnPublicTestnets, PublicTestnets

# provisioning (two to three minutes) runs in the fixtures, inside this timeout
pytestmark = [pytest.mark.testnet, pytest.mark.timeout(1_200)]

#: an anchoring transaction takes a few closes to be validated; a publish step reads
#: both ledgers, so it is taken no faster than the public servers tolerate
LAND_TIMEOUT_S = 300.0
PUBLISH_POLL_S = 3.0


def _publish_until_landed(anchorer: Anchorer, t: EngineOnPublicTestnets) -> None:
    deadline = time.monotonic() + LAND_TIMEOUT_S
    while time.monotonic() < deadline:
        progress = anchorer.publish()
        if all(p.pending is None for p in progress):
            return
        time.sleep(PUBLISH_POLL_S)
    with t.engine.db.unit_of_work() as uow:
        waiting = {c: len(anchors.unpublished(uow, c)) for c in anchors.PUBLICATION_CHAINS}
    raise AssertionError(f"anchors still waiting to land after {LAND_TIMEOUT_S} s: {waiting}")


def test_an_anchor_lands_on_both_testnets_and_a_proof_checks_there(
    testnet_engine: EngineOnPublicTestnets, testnets: PublicTestnets
) -> None:
    t = testnet_engine
    world = t.world
    cid = new_commitment(t.engine.commitments, State.VERIFIED)
    new_commitment(t.engine.commitments, State.DRAFT)
    accounts = {
        ChainName.XRPL: world.anchor_xrpl.classic_address,
        ChainName.STELLAR: world.anchor_stellar.public_key,
    }
    chains = {name: c for name, c in world.chains.items() if isinstance(c, Anchoring)}
    assert chains.keys() == accounts.keys()
    anchorer = Anchorer(t.engine.db, chains, accounts, world.clock, settle_s=0)
    taken = anchorer.anchor()
    assert taken is not None and taken.chain_count == 2
    _publish_until_landed(anchorer, t)

    report = verify_anchors(t.engine.db, chains, accounts)
    assert report.ok, report.as_dict()
    assert report.anchors[0].confirmed.keys() == {"xrpl", "stellar"}
    assert report.unconfirmed == [] and report.unlisted == []

    proof = proof_of_commitment(t.engine.db, cid)
    confirmed = proof_verifier.verify(
        proof, xrpl_url=testnets.xrpl_url, horizon_url=testnets.horizon_url
    )
    assert sorted(c.split()[0] for c in confirmed) == ["stellar", "xrpl"]

    with t.engine.db.unit_of_work() as uow:
        status = anchors.anchor_status(uow, ["xrpl", "stellar"])
    assert {c: landed.seq for c, landed in status.landed.items()} == {
        "xrpl": taken.seq,
        "stellar": taken.seq,
    }
    # the testnet profile links these transactions to the public explorers (shown with
    # -s, to look the anchors up by hand)
    explorers = load_settings(network="testnet").explorer_tx_urls
    for chain, landed in status.landed.items():
        print(chain, explorers[chain].replace("{hash}", landed.tx_hash))
