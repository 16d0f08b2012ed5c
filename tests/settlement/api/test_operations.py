"""Probes, metrics and breakers of an API process without ledgers, and the shared
breaker board as several processes use it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from adapters.chain import ChainName
from adapters.errors import TransportError
from adapters.resilience import ChainGuard, ResiliencePolicy
from ledger import anchors
from ledger.errors import PermissionRefused
from settlement import bootstrap
from settlement.api.metrics import ApiMetrics
from settlement.bootstrap import DatabaseUrls
from settlement.breakers import BreakerBoard
from settlement.clock import ManualClock
from settlement.domain import errors
from settlement.domain.states import State
from settlement.domain.values import Actor, Role
from settlement.settings import load_settings
from tests.support import ADMIN, AUDITOR, new_commitment

from .conftest import Api, create_draft, problem_of, running_api

ONE_TRY = ResiliencePolicy(fail_max=2, reset_timeout_s=3600, attempts=1)


def _samples(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = api.send(None, "GET", "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _failing_guard(chain: str) -> ChainGuard:
    guard = ChainGuard(chain, ONE_TRY, sleep=lambda _s: None)

    def refused() -> None:
        raise TransportError("connection refused")

    for _ in range(ONE_TRY.fail_max):
        with pytest.raises(TransportError):
            guard.call_once(refused)
    assert guard.state.state == "open"
    return guard


def test_liveness_and_readiness_without_ledgers(api: Api) -> None:
    live = api.send(None, "GET", "/healthz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = api.send(None, "GET", "/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"] == {"database": {"ok": True, "detail": "answered"}}
    assert api.send(None, "GET", "/health").json() == {"status": "ok", "database": "ok"}


def test_request_metrics_count_routes_statuses_and_refusals(api: Api) -> None:
    before = _samples(api)
    cid = create_draft(api)
    api.send(api.allocator, "GET", f"/v1/commitments/{cid}")
    api.send(None, "GET", f"/v1/commitments/{cid}")  # unsigned: the guard answers 401
    api.send(api.auditor, "GET", "/v1/no-such-route")
    after = _samples(api)
    route = "/v1/commitments/{commitment_id}"

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    total = "settlement_http_requests_total"
    assert moved(total, route=route, method="GET", status="200") == 1
    assert moved(total, route=route, method="GET", status="401") == 1
    assert moved(total, route="/v1/commitments", method="POST", status="201") == 1
    assert moved(total, route="unmatched", method="GET", status="404") == 1
    count = "settlement_http_request_duration_seconds_count"
    assert moved(count, route=route, method="GET", status="200") == 1
    assert not any(cid in str(labels) for _name, labels in after), "raw ids in labels"


def test_transition_and_settlement_metrics_come_from_the_database(api: Api) -> None:
    before = _samples(api)
    cid = create_draft(api)
    with api.client(api.allocator) as client:
        client.submit(cid, expected_version=1)
    # a transition made by another process (straight in the database) counts as well
    other = create_draft(api)
    owner = Actor(api.allocator.key_id, Role.ALLOCATOR, party="party-northwind")
    api.engine.commitments.withdraw(owner, other, expected_version=1)
    after = _samples(api)
    name = "settlement_commitment_transitions_total"
    assert _value(after, name, event="submit") - _value(before, name, event="submit") == 1
    assert _value(after, name, event="withdraw") - _value(before, name, event="withdraw") == 1
    assert _value(after, "settlement_database_up") == 1
    assert ("settlement_commitments", (("state", "DRAFT"),)) in after
    families = {
        f.name for f in text_string_to_metric_families(api.send(None, "GET", "/metrics").text)
    }
    assert {"settlement_settlements_needs_review", "settlement_settlements"} <= families


def test_breaker_routes_roles_and_reset_trace(api: Api) -> None:
    for key in (api.allocator, api.officer):
        problem_of(api.send(key, "GET", "/v1/breakers"), 403, "forbidden")
    for key in (api.allocator, api.officer, api.auditor):
        response = api.send(
            key, "POST", "/v1/breakers/xrpl/reset", headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        problem_of(response, 403, "forbidden")
    problem_of(
        api.send(
            api.admin,
            "POST",
            "/v1/breakers/bitcoin/reset",
            headers={"Idempotency-Key": "bad-chain"},
        ),
        422,
        "invalid_input",
    )
    with api.client(api.admin) as admin:
        accepted = admin.reset_breaker("stellar", idempotency_key="reset-1")
        replay = admin.reset_breaker("stellar", idempotency_key="reset-1")
        listed = admin.breakers()
    assert accepted["requested_by"] == api.admin.person
    assert accepted["applied_here"] is False  # this process has no ledgers
    assert replay == accepted
    assert accepted["id"] in [r["id"] for r in listed["recent_resets"]]
    with api.engine.db.unit_of_work() as uow:
        rows = uow.execute(
            "SELECT count(*) FROM breaker_resets WHERE requested_by = :by", {"by": api.admin.person}
        ).scalar_one()
    assert rows == 1, "a replayed reset must not be recorded twice"
    with api.client(api.auditor) as auditor:
        assert "breakers" in auditor.breakers()


def test_the_board_shares_breakers_between_processes(
    engine: bootstrap.Services, clock: ManualClock
) -> None:
    board = BreakerBoard(engine.db, clock)
    api_scope, worker_scope = f"api-{uuid.uuid4()}", f"worker-{uuid.uuid4()}"
    api_guards = {ChainName.XRPL: _failing_guard("xrpl"), ChainName.STELLAR: ChainGuard("stellar")}
    worker_guards = {ChainName.XRPL: _failing_guard("xrpl")}
    assert board.publish(api_scope, api_guards) == []
    assert board.publish(worker_scope, worker_guards) == []
    shown = {(r.scope, r.chain): r for r in board.states()}
    assert shown[(api_scope, "xrpl")].state == "open"
    assert shown[(api_scope, "xrpl")].failure_count == ONE_TRY.fail_max
    assert shown[(api_scope, "xrpl")].opened_at is not None
    assert shown[(api_scope, "stellar")].state == "closed"
    assert shown[(worker_scope, "xrpl")].state == "open"

    with pytest.raises(errors.NotAuthorised):
        board.request_reset(AUDITOR, "xrpl")
    with pytest.raises(errors.InvalidInput):
        board.request_reset(ADMIN, "bitcoin")
    board.request_reset(ADMIN, "xrpl")
    assert board.publish(api_scope, api_guards) == [ChainName.XRPL]
    assert api_guards[ChainName.XRPL].state.state == "closed"
    assert board.publish(api_scope, api_guards) == [], "a request is applied once"
    # the worker has not published since: its breaker is still open until it does
    shown = {(r.scope, r.chain): r for r in board.states()}
    assert shown[(worker_scope, "xrpl")].state == "open"
    assert shown[(api_scope, "xrpl")].state == "closed"
    assert shown[(api_scope, "xrpl")].last_reset_at is not None
    assert board.publish(worker_scope, worker_guards) == [ChainName.XRPL]
    assert worker_guards[ChainName.XRPL].state.state == "closed"
    # a process that starts after a request does not apply it
    clock.advance(timedelta(seconds=1))
    later = BreakerBoard(engine.db, clock)
    assert later.publish(f"late-{uuid.uuid4()}", {ChainName.XRPL: _failing_guard("xrpl")}) == []


def test_reset_requests_cannot_be_changed(engine: bootstrap.Services, owner_engine: Engine) -> None:
    BreakerBoard(engine.db, engine.clock).request_reset(ADMIN, "stellar")
    with pytest.raises(PermissionRefused), engine.db.unit_of_work() as uow:
        uow.execute("DELETE FROM breaker_resets")
    # not even the owner: the append-only trigger refuses it
    with (
        pytest.raises(DBAPIError, match="breaker_resets is append-only"),
        owner_engine.begin() as c,
    ):
        c.execute(text("UPDATE breaker_resets SET requested_by = 'someone else'"))


def test_multiprocess_metrics_are_refused_where_prometheus_client_is_not_in_that_mode(
    engine: bootstrap.Services,
) -> None:
    # this process imported prometheus-client without PROMETHEUS_MULTIPROC_DIR: its
    # values live in memory, and summing a directory's files would count none of them
    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR"):
        ApiMetrics(engine.db, multiprocess=True)
    assert ApiMetrics(engine.db).render().startswith(b"# HELP")


# --- how old the audit anchors are: metrics and readiness -----------------------------


@pytest.fixture
def anchoring_api(fresh_urls: DatabaseUrls, clock: ManualClock) -> Iterator[Api]:
    """The API over a database of its own whose settings name an anchor account on
    both ledgers (the anchors are recorded straight in the database here)."""
    settings = load_settings(
        database_url=fresh_urls.owner, xrpl_anchor_account="rAnchor", stellar_anchor_account="GA"
    )
    engine = bootstrap.build(settings, clock=clock, urls=fresh_urls)
    try:
        with running_api(engine, clock) as running:
            yield running
    finally:
        engine.close()


def _anchor(engine: bootstrap.Services, clock: ManualClock, *, on: str | None) -> anchors.AnchorRow:
    """Take an anchor now and, when ``on`` names a ledger, record it applied there."""
    new_commitment(engine.commitments, State.DRAFT)
    now = clock.now()
    with engine.db.unit_of_work() as uow:
        row = anchors.insert_anchor(uow, heads=anchors.chain_heads(uow, now), cutoff=now, at=now)
        if on is not None:
            tx_hash = f"TX{row.seq}{on.upper()}"
            anchors.record_publication(
                uow,
                anchor_seq=row.seq,
                chain=on,
                account="rAnchor",
                tx_hash=tx_hash,
                blob="blob",
                expires_ledger=100,
                expires_at=None,
                at=now,
            )
            anchors.finalize_publication(
                uow,
                tx_hash=tx_hash,
                status="APPLIED",
                result_code="tesSUCCESS",
                ledger_index=40 + row.seq,
                ledger_hash="LH",
                at=now,
            )
        uow.commit()
    return row


def _anchor_samples(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {k: v for k, v in _samples(api).items() if "anchor" in k[0]}


def test_anchor_metrics_say_how_old_the_newest_anchor_is_on_each_ledger(
    anchoring_api: Api, clock: ManualClock
) -> None:
    api = anchoring_api
    # nothing anchored yet: no age at all (not 0, not +Inf), and nothing waiting
    assert _anchor_samples(api) == {
        ("settlement_anchors_unpublished", (("chain", "stellar"),)): 0,
        ("settlement_anchors_unpublished", (("chain", "xrpl"),)): 0,
    }
    first = _anchor(api.engine, clock, on="xrpl")
    clock.advance(timedelta(seconds=90))
    second = _anchor(api.engine, clock, on=None)  # taken; the ledgers are down
    clock.advance(timedelta(seconds=30))
    taken = first.created_at.timestamp()
    assert _anchor_samples(api) == {
        ("settlement_anchor_age_seconds", (("chain", "xrpl"),)): 120,
        ("settlement_anchor_last_applied_timestamp_seconds", (("chain", "xrpl"),)): taken,
        ("settlement_anchors_unpublished", (("chain", "stellar"),)): 2,
        ("settlement_anchors_unpublished", (("chain", "xrpl"),)): 1,
        ("settlement_anchor_last_taken_timestamp_seconds", ()): second.created_at.timestamp(),
    }


def test_readiness_says_how_old_the_anchors_are_and_never_fails_for_them(
    anchoring_api: Api, clock: ManualClock
) -> None:
    api = anchoring_api
    ready = api.send(None, "GET", "/readyz")
    assert ready.status_code == 200
    assert ready.json()["anchors"] == {
        "last_taken_at": None,
        "ledgers": {
            chain: {
                "seq": None,
                "taken_at": None,
                "age_seconds": None,
                "tx_hash": None,
                "ledger_index": None,
                "unpublished": 0,
            }
            for chain in ("stellar", "xrpl")
        },
    }
    first = _anchor(api.engine, clock, on="stellar")
    clock.advance(timedelta(minutes=10))
    _anchor(api.engine, clock, on=None)
    clock.advance(timedelta(hours=5))
    # five hours without an anchor landing: still ready, and the age says so
    ready = api.send(None, "GET", "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    shown = ready.json()["anchors"]
    assert datetime.fromisoformat(shown["last_taken_at"]) == clock.now() - timedelta(hours=5)
    assert shown["ledgers"]["stellar"] == {
        "seq": 1,
        "taken_at": first.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "age_seconds": 5 * 3600 + 600,
        "tx_hash": "TX1STELLAR",
        "ledger_index": 41,
        "unpublished": 1,
    }
    assert shown["ledgers"]["xrpl"]["seq"] is None
    assert shown["ledgers"]["xrpl"]["unpublished"] == 2


def test_anchors_are_verified_through_the_api_only_where_they_can_be_checked(
    anchoring_api: Api, clock: ManualClock
) -> None:
    api = anchoring_api
    problem_of(api.send(api.allocator, "GET", "/v1/audit/verify?anchors=true"), 403, "forbidden")
    with api.client(api.auditor) as auditor:
        plain = auditor.verify_audit()
        answer = auditor.verify_audit(anchors=True)
    assert plain["anchors"] is None  # not asked: not checked
    # nothing anchored: nothing to check on a ledger, so no ledger is needed
    assert answer["ok"] and answer["anchors"]["ok"] and answer["anchors"]["anchors"] == 0
    _anchor(api.engine, clock, on="xrpl")
    # an anchor checked on no ledger proves nothing: this process has none
    problem_of(
        api.send(api.auditor, "GET", "/v1/audit/verify?anchors=true"), 503, "ledgers_unavailable"
    )
