"""The demo story, end to end through the signed API, checked on its outcome.

The story runs on a database of this test's own with the wall clock (the demo's clients
sign with it). While the networks are still up, the test checks the ledgers itself:
every committed leg is a validated transaction with the ledger hash the API reported,
and the bond and the USDC sit where the settlement put them.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from adapters.chain import ChainName
from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.demo import settlements as demo_dvp
from settlement.demo import story as demo
from settlement.sealing import Sealer, local_key
from settlement.services.keys import KeyService
from settlement.settings import load_settings


@pytest.fixture
def wall_engine(fresh_urls: DatabaseUrls) -> Iterator[bootstrap.Services]:
    built = bootstrap.build(load_settings(database_url=fresh_urls.owner), urls=fresh_urls)
    yield built
    built.close()


def test_the_demo_settles_a_dvp_through_the_api(
    wall_engine: bootstrap.Services, fresh_urls: DatabaseUrls, tmp_path: Path
) -> None:
    engine = wall_engine
    lines: list[str] = []
    assert demo.run(engine, lines.append), "\n".join(lines)
    sealer = Sealer(local_key(tmp_path))
    with demo_dvp.dvp_stack(engine, sealer, lines.append) as (stack, world, worker):
        outcome = demo_dvp.story(stack, world, worker, lines.append)
        cid = outcome.commitment["id"]
        assert outcome.ok, "\n".join(lines)
        assert outcome.commitment["state"] == "SETTLED"
        settlement = outcome.settlement
        assert settlement["status"] == "SETTLED" and settlement["decision"] == "COMMIT"
        assert [leg["status"] for leg in settlement["legs"]] == ["COMMITTED"] * 3
        commits = [s for s in settlement["submissions"] if s["purpose"] == "commit"]
        assert sorted(s["chain"] for s in commits) == ["stellar", "stellar", "xrpl"]
        # both ledgers show the legs, in validated ledgers with the hashes the API gave
        for sub in settlement["submissions"]:
            found = world.chains[ChainName(sub["chain"])].lookup(sub["tx_hash"])
            assert found is not None and found.validated, sub
            assert (found.ledger_index, found.ledger_hash) == (
                sub["ledger_index"],
                sub["ledger_hash"],
            )
        assert world.xrpl.token_balance(world.buyer_xrpl.classic_address, world.bond) == 10
        assert world.stellar.balance(world.fee_stellar.public_key, world.usdc) == Decimal("2.5")
        assert outcome.moved["USDC:seller"] == demo_dvp.PRICE
        assert outcome.aborted_settlement["status"] == "UNWOUND"
        assert outcome.aborted_moved == {}
        assert outcome.aborted_final_state == "CANCELLED"
        # 3 locks, 2 claims (the USDC and the fee into the agent) and 3 commits of the
        # settled one, 2 locks and an unwind of the aborted
        assert len(outcome.ledger_refs) == 11 and outcome.ledger_ref_problems == []
    # the database agrees, and every chain verifies independently of the server
    assert engine.commitments.state_of(cid) == "SETTLED"
    report = engine.commitments.verify_audit()
    assert report.ok and report.chains == 3
    owner = create_engine(fresh_urls.owner)
    with owner.connect() as c:
        acted = {
            (row[0], row[1])
            for row in c.execute(
                text("SELECT DISTINCT actor, key_id FROM audit_log WHERE commitment_id = :id"),
                {"id": cid},
            )
        }
    owner.dispose()
    # people acted through their keys, each named with the key beside; the worker as
    # the engine, with no key
    keys = {k.key_id: k for k in KeyService(engine.db, engine.clock).list()}
    assert ("system", None) in acted
    people = acted - {("system", None)}
    assert all(keys[key].person == person for person, key in people if key is not None), acted
    assert {person for person, _ in people} == {
        "northwind-capital/alice",
        "officer-ada",
        "officer-grace",
    }
    # the demo revoked every key it registered, so it can run again
    assert all(k.revoked_at is not None for k in keys.values())
    assert demo.run(engine, lines.append), "a second run on the same database"
    # with new keys for the same people: the officers were registered once
    again = KeyService(engine.db, engine.clock).list()
    assert len(again) == len(keys) + len(demo.PEOPLE) and {k.person for k in again} == {
        k.person for k in keys.values()
    }
    assert "  officer officer-ada (Ada Lovelace) already registered" in lines
