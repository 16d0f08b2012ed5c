"""Settlements through the API over both local networks (one world per module):
fund a commitment, read the settlement back with its ledger transactions, verify the
audit chain against the ledgers, force-cancel, the review desk, and readiness and
breakers while a ledger is partitioned."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from adapters.resilience import ResiliencePolicy
from ledger import settlements as records
from settlement import bootstrap
from settlement.api.app import create_app
from settlement.bootstrap import DatabaseUrls, Ledgers
from settlement.client import ApiError
from settlement.demo.world import LocalWorld
from settlement.dvp import DvpCoordinator, DvpPolicy, LegInstruction
from settlement.sealing import Sealer
from settlement.settings import load_settings
from tests.support import OFFICER, seed_compliance

from .conftest import Api, problem_of, running_api, serving

FAST = ResiliencePolicy(fail_max=3, reset_timeout_s=0.5, attempts=2, backoff_initial_s=0.01)
USDC = Decimal(1000)
BONDS = Decimal(10)


@dataclass
class World:
    world: LocalWorld
    api: Api
    coordinator: DvpCoordinator
    scope: str


@pytest.fixture(scope="module")
def local(shared_urls: DatabaseUrls) -> Iterator[World]:
    world = bootstrap.local_world(policy=FAST, usdc=Decimal(50_000))
    engine = bootstrap.build(
        load_settings(database_url=shared_urls.owner), clock=world.clock, urls=shared_urls
    )
    seed_compliance(engine.commitments)
    world.register_accounts(
        engine.compliance, OFFICER, buyer="party-northwind", seller="party-southbank"
    )
    coordinator = bootstrap.build_coordinator(
        engine,
        world.chains,
        clock=world.clock,
        policy=DvpPolicy(safety_margin_s=120, min_window_s=5, retry_after_s=0.02),
        sealed_with=Sealer(Fernet.generate_key()),
    )
    ledgers = Ledgers(chains=world.chains, guards=world.guards, coordinator=coordinator)
    scope = f"api-test-{uuid.uuid4()}"
    try:
        with running_api(engine, world.clock, ledgers=ledgers, scope=scope) as api:
            yield World(world, api, coordinator, scope)
    finally:
        engine.close()
        world.close()


def _leg_json(leg: LegInstruction) -> dict[str, Any]:
    return {
        "kind": leg.kind,
        "chain": leg.chain.value,
        "asset": {"code": leg.asset.code, "issuer": leg.asset.issuer},
        "amount": str(leg.amount),
        "sender": leg.sender,
        "receiver": leg.receiver,
    }


def _legs(local: World) -> list[dict[str, Any]]:
    return [_leg_json(leg) for leg in local.world.legs(BONDS, USDC)]


def _verified(local: World) -> str:
    api = local.api
    with api.client(api.allocator) as allocator, api.client(api.officer) as officer:
        created = allocator.create_commitment(
            deal_ref=f"BOND-{uuid.uuid4().hex[:8]}",
            amount=str(USDC),
            currency="USDC",
            counterparty="party-southbank",
        )
        cid = str(created["commitment_id"])
        submitted = allocator.submit(cid, expected_version=1)
        approved = officer.approve(cid, expected_version=submitted["version"])
    assert approved["to_state"] == "VERIFIED"
    return cid


def _fund(local: World, key: Any, cid: str, body: dict[str, Any], idem: str | None = None) -> Any:
    return local.api.send(
        key,
        "POST",
        f"/v1/commitments/{cid}/settlement",
        json=body,
        headers={"Idempotency-Key": idem or str(uuid.uuid4())},
    )


def _body(local: World, legs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    deadline = local.world.clock.now() + timedelta(seconds=60)
    return {
        "legs": legs if legs is not None else _legs(local),
        "commit_deadline": deadline.isoformat(),
    }


def test_fund_settle_and_read_back_with_ledger_hashes(local: World) -> None:
    api = local.api
    cid = _verified(local)
    for key in (api.officer, api.auditor):
        problem_of(_fund(local, key, cid, _body(local)), 403, "forbidden")
    problem_of(_fund(local, api.other_allocator, cid, _body(local)), 403, "forbidden")
    delivery = [{**_legs(local)[0], "kind": "delivery"}, _legs(local)[1]]
    problem_of(_fund(local, api.allocator, cid, _body(local, delivery)), 422, "validation_failed")
    problem_of(
        _fund(local, api.allocator, cid, _body(local, _legs(local)[:1])), 422, "validation_failed"
    )
    short = [{**_legs(local)[0], "amount": "999"}, _legs(local)[1]]
    problem_of(_fund(local, api.allocator, cid, _body(local, short)), 422, "invalid_input")
    past = {**_body(local), "commit_deadline": local.world.clock.now().isoformat()}
    problem_of(_fund(local, api.allocator, cid, past), 422, "invalid_input")
    problem_of(
        api.send(api.auditor, "GET", f"/v1/commitments/{cid}/settlement"),
        404,
        "settlement_not_found",
    )

    body = _body(local)
    accepted = _fund(local, api.allocator, cid, body, idem=f"fund-{cid}")
    assert accepted.status_code == 202, accepted.text
    settlement = accepted.json()
    assert settlement["status"] == "LOCKING"
    assert [leg["chain"] for leg in settlement["legs"]] == ["stellar", "xrpl"]
    assert settlement["legs"][0]["amount"] == "1000"
    replay = _fund(local, api.allocator, cid, body, idem=f"fund-{cid}")
    assert replay.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == settlement["id"]

    result = local.coordinator.run_to_end(uuid.UUID(settlement["id"]), timeout_s=60)
    assert result.status == "SETTLED", result

    with api.client(api.allocator) as allocator, api.client(api.auditor) as auditor:
        read = allocator.get_settlement(cid)
        assert allocator.get_commitment(cid)["state"] == "SETTLED"
        refs = auditor.ledger_references(cid)
        report = auditor.verify_audit(ledgers=True)
    assert read["id"] == settlement["id"]
    assert (read["status"], read["decision"]) == ("SETTLED", "COMMIT")
    assert {leg["status"] for leg in read["legs"]} == {"COMMITTED"}
    applied = [s for s in read["submissions"] if s["status"] == "APPLIED"]
    assert {(s["leg_no"], s["purpose"]) for s in applied} >= {(0, "commit"), (1, "commit")}
    for sub in applied:
        assert sub["tx_hash"] and sub["ledger_hash"] and sub["ledger_index"] is not None
        assert sub["outcome"]
    assert refs, "a settled commitment has ledger references"
    assert {r["tx_hash"] for r in refs} <= {s["tx_hash"] for s in read["submissions"]}
    assert all(r["ledger_hash"] for r in refs)
    assert report["ok"] is True
    assert report["ledger_refs_checked"] >= len(refs)
    problem_of(
        api.send(api.other_allocator, "GET", f"/v1/commitments/{cid}/settlement"), 403, "forbidden"
    )
    problem_of(
        api.send(api.other_allocator, "GET", f"/v1/commitments/{cid}/ledger-references"),
        403,
        "forbidden",
    )
    problem_of(api.send(api.allocator, "GET", "/v1/audit/verify?ledgers=true"), 403, "forbidden")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(api.send(None, "GET", "/metrics").text)
        for s in f.samples
    }
    assert samples[("settlement_settlements", (("decision", "COMMIT"), ("status", "SETTLED")))] >= 1
    assert samples[("settlement_commitment_transitions_total", (("event", "settle"),))] >= 1


def test_force_cancel_and_the_review_desk(local: World) -> None:
    api = local.api
    cid = _verified(local)
    accepted = _fund(local, api.allocator, cid, _body(local))
    assert accepted.status_code == 202, accepted.text
    sid = accepted.json()["id"]
    path = f"/v1/settlements/{sid}/force-cancel"
    for key in (api.allocator, api.officer, api.auditor):
        problem_of(
            api.send(
                key,
                "POST",
                path,
                json={"reason": "stop"},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            ),
            403,
            "forbidden",
        )
    problem_of(
        api.send(
            api.admin,
            "POST",
            path,
            json={"reason": ""},
            headers={"Idempotency-Key": "empty-reason"},
        ),
        422,
        "validation_failed",
    )
    problem_of(
        api.send(
            api.admin,
            "POST",
            f"/v1/settlements/{uuid.uuid4()}/force-cancel",
            json={"reason": "x"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        ),
        404,
        "settlement_not_found",
    )
    with api.client(api.admin) as admin:
        # the review desk: flag it as the coordinator would, retry, flag again, resolve
        with pytest.raises(ApiError) as unflagged:
            admin.retry_settlement(sid, note="nothing to retry")
        assert unflagged.value.status == 409
        _flag(local, sid)
        assert sid in [s["id"] for s in admin.settlements(needs_review=True)]
        retried = admin.retry_settlement(sid, note="trust line fixed")
        assert retried["needs_review"] is False
        _flag(local, sid)
        resolved = admin.resolve_settlement(sid, note="returned by hand")
        assert resolved["needs_review"] is False
        assert sid not in [s["id"] for s in admin.settlements(needs_review=True)]

        cancelled = admin.force_cancel(sid, reason="client withdrew the order")
        assert cancelled["cancel_requested_by"] == api.admin.person
        result = local.coordinator.run_to_end(uuid.UUID(sid), timeout_s=60)
        assert result.status == "UNWOUND", result
        with pytest.raises(ApiError) as closed:
            admin.force_cancel(sid, reason="again")
        assert closed.value.status == 409
    problem_of(api.send(api.allocator, "GET", "/v1/settlements"), 403, "forbidden")
    problem_of(api.send(api.officer, "GET", "/v1/settlements?needs_review=true"), 403, "forbidden")
    assert api.send(api.auditor, "GET", "/v1/settlements?needs_review=true").status_code == 200
    for action in ("retry", "resolve"):
        problem_of(
            api.send(
                api.auditor,
                "POST",
                f"/v1/settlements/{sid}/{action}",
                json={"note": "x"},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            ),
            403,
            "forbidden",
        )
    with api.client(api.auditor) as auditor:
        actions = [e["action"] for e in auditor.audit_trail(cid)]
    assert actions.index("settlement_retried") < actions.index("settlement_resolved")
    assert actions.index("settlement_resolved") < actions.index("settlement_cancel_requested")


def _flag(local: World, sid: str) -> None:
    now = local.world.clock.now()
    local.api.engine.db.transaction(
        lambda uow: records.flag_for_review(uow, uuid.UUID(sid), "ledger refused", now)
    )


def _breaker(api: Api, scope: str, chain: str) -> dict[str, Any]:
    with api.client(api.auditor) as auditor:
        rows = auditor.breakers()["breakers"]
    return next(r for r in rows if r["scope"] == scope and r["chain"] == chain)


def test_partition_shows_in_readiness_and_breakers_and_an_admin_resets(local: World) -> None:
    api = local.api
    with api.client(api.auditor) as client:
        ready, detail = client.readiness()
    assert ready, detail
    assert set(detail["checks"]) == {"database", "xrpl", "stellar"}
    local.world.xrpl_node.faults.partition(60)
    try:
        with api.client(api.auditor) as client:
            for _ in range(3):  # each readiness check counts its failures
                ready, detail = client.readiness()
                assert not ready
                assert detail["checks"]["xrpl"]["ok"] is False
                assert detail["checks"]["stellar"]["ok"] is True
        assert api.send(None, "GET", "/readyz").status_code == 503
        opened = _breaker(api, local.scope, "xrpl")
        assert opened["state"] == "open"
        assert opened["opened_at"] is not None
        assert _breaker(api, local.scope, "stellar")["state"] == "closed"
        scraped = api.send(None, "GET", "/metrics").text
        labels = {"scope": local.scope, "chain": "xrpl", "state": "open"}
        values = [
            s.value
            for f in text_string_to_metric_families(scraped)
            for s in f.samples
            if s.name == "settlement_breaker_state" and s.labels == labels
        ]
        assert values == [1.0]
    finally:
        local.world.xrpl_node.faults.heal()
    with api.client(api.admin) as admin:
        reset = admin.reset_breaker("xrpl")
    assert reset["applied_here"] is True
    closed = _breaker(api, local.scope, "xrpl")
    assert closed["state"] == "closed"
    assert closed["last_reset_at"] is not None
    with api.client(api.auditor) as client:
        ready, detail = client.readiness()
    assert ready, detail


def test_without_ledgers_settlement_routes_are_503(local: World) -> None:
    cid = _verified(local)
    bare_app = create_app(local.api.engine)
    with serving(bare_app) as url:
        bare = replace(local.api, url=url, app=bare_app)
        funded = bare.send(
            bare.allocator,
            "POST",
            f"/v1/commitments/{cid}/settlement",
            json=_body(local),
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        problem_of(funded, 503, "ledgers_unavailable")
        verify = bare.send(bare.auditor, "GET", "/v1/audit/verify?ledgers=true")
        problem_of(verify, 503, "ledgers_unavailable")
        ready = bare.send(None, "GET", "/readyz").json()
        assert set(ready["checks"]) == {"database"}
    problem_of(
        local.api.send(local.api.auditor, "GET", f"/v1/commitments/{cid}/settlement"),
        404,
        "settlement_not_found",
    )
