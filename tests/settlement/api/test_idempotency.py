"""DESIGN 6 at the HTTP level: replay, 422 on a different request, 409 in flight,
400 without a key; and the client's safe retries."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import text

from ledger import api_keys
from ledger.idempotency import fingerprint
from settlement.client import SettlementClient

from .conftest import Api, create_draft, problem_of

BODY = {"deal_ref": "DEAL-IDEM", "amount": "10.00", "currency": "USD"}


def commitments_with_ref(api: Api, ref: str) -> int:
    with api.engine.db.engine.connect() as c:
        return int(
            c.execute(
                text("SELECT count(*) FROM commitments WHERE deal_ref = :r"), {"r": ref}
            ).scalar_one()
        )


def post(api: Api, key: str, body: dict[str, Any], path: str = "/v1/commitments") -> httpx.Response:
    return api.send(api.allocator, "POST", path, json=body, headers={"Idempotency-Key": key})


def test_a_retry_replays_the_stored_response(api: Api) -> None:
    ref = f"DEAL-{uuid.uuid4().hex[:8]}"
    body = {**BODY, "deal_ref": ref}
    first = post(api, "same-key", body)
    second = post(api, "same-key", body)
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["etag"] == first.headers["etag"]
    assert commitments_with_ref(api, ref) == 1


def test_the_same_key_for_a_different_request_is_422(api: Api) -> None:
    assert post(api, "k-diff", BODY).status_code == 201
    problem_of(post(api, "k-diff", {**BODY, "amount": "11.00"}), 422, "idempotency_key_reused")
    cid = create_draft(api)
    other_path = post(api, "k-diff", {"expected_version": 1}, f"/v1/commitments/{cid}/submit")
    problem_of(other_path, 422, "idempotency_key_reused")


def test_keys_are_per_signing_key(api: Api) -> None:
    assert post(api, "k-shared", BODY).status_code == 201
    response = api.send(
        api.other_allocator,
        "POST",
        "/v1/commitments",
        json=BODY,
        headers={"Idempotency-Key": "k-shared"},
    )
    assert response.status_code == 201
    assert "idempotent-replayed" not in response.headers


def test_a_request_in_flight_is_409(api: Api) -> None:
    raw = httpx.Request("POST", f"{api.url}/v1/commitments", json=BODY).read()
    path_fp = fingerprint(api.allocator.key_id, "POST", "/v1/commitments", b"0:," + raw)
    now = api.clock.now()
    held = api_keys.claim(
        api.engine.db,
        key_id=api.allocator.key_id,
        idempotency_key="k-busy",
        fingerprint=path_fp,
        claim_id=uuid.uuid4(),
        at=now,
        lease_until=now + timedelta(seconds=60),
    )
    assert held.outcome == "claimed"
    response = api.send(
        api.allocator,
        "POST",
        "/v1/commitments",
        content=raw,
        headers={"Idempotency-Key": "k-busy", "Content-Type": "application/json"},
    )
    problem = problem_of(response, 409, "request_in_flight")
    assert response.headers["retry-after"] == "1"
    assert problem["instance"] == "/v1/commitments"


def test_the_client_retries_in_flight_with_the_same_key_until_the_lease_is_over(api: Api) -> None:
    raw = httpx.Request("POST", f"{api.url}/v1/commitments", json=BODY).read()
    fp = fingerprint(api.allocator.key_id, "POST", "/v1/commitments", b"0:," + raw)
    now = api.clock.now()
    api_keys.claim(
        api.engine.db,
        key_id=api.allocator.key_id,
        idempotency_key="k-dead-holder",
        fingerprint=fp,
        claim_id=uuid.uuid4(),
        at=now,
        lease_until=now + timedelta(seconds=60),
    )
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        api.clock.advance(timedelta(seconds=31))

    with api.client(api.allocator, sleep=sleep) as client:
        created = client.create_commitment(
            deal_ref=BODY["deal_ref"],
            amount="10.00",
            currency="USD",
            idempotency_key="k-dead-holder",
        )
    assert created["to_state"] == "DRAFT"
    assert len(waits) == 2  # refused twice while the dead holder's lease ran


def test_a_failed_request_leaves_its_key_unused(api: Api) -> None:
    cid = create_draft(api)
    path = f"/v1/commitments/{cid}/submit"
    problem_of(post(api, "k-retry", {"expected_version": 5}, path), 409, "stale_version")
    ok = post(api, "k-retry", {"expected_version": 1}, path)
    assert ok.status_code == 200, ok.text


def test_a_mutating_request_needs_an_idempotency_key(api: Api) -> None:
    response = api.send(api.allocator, "POST", "/v1/commitments", json=BODY)
    problem_of(response, 400, "idempotency_key_required")
    long_key = api.send(
        api.allocator, "POST", "/v1/commitments", json=BODY, headers={"Idempotency-Key": "x" * 256}
    )
    problem_of(long_key, 400, "invalid_header")


def test_the_client_retries_a_lost_connection_with_the_same_key(api: Api) -> None:
    ref = f"DEAL-{uuid.uuid4().hex[:8]}"
    real = httpx.HTTPTransport()
    calls: list[str | None] = []

    class LosesFirstResponse(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            calls.append(request.headers.get("idempotency-key"))
            response = real.handle_request(request)
            if len(calls) == 1:
                response.read()
                response.close()
                raise httpx.ReadError("connection lost after the server acted")
            return response

    client = SettlementClient(
        api.url,
        api.allocator.key_id,
        api.allocator.private_key,
        transport=LosesFirstResponse(),
        now=api.clock.now,
        sleep=lambda _: None,
    )
    with client:
        created = client.create_commitment(deal_ref=ref, amount="10.00", currency="USD")
    real.close()
    assert created["to_state"] == "DRAFT"
    assert len(calls) == 2
    assert calls[0] == calls[1]
    assert commitments_with_ref(api, ref) == 1
