"""Idempotency and signature replay under real concurrency: 64 connections over loopback
to the uvicorn server, all released at once by a barrier.

The guard's promise (DESIGN 6 at the HTTP level): for one (key, Idempotency-Key) and
one request, exactly one effect reaches the database, and every answer is either the
stored 2xx response or a 409 ``request_in_flight``; a different request under the same
key is 422 and changes nothing. A nonce is accepted once per key, however many copies
of a signed request arrive together.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from settlement import signing

from .conftest import Api, Key, create_draft, problem_of

CLIENTS = 64


def _signed(api: Api, key: Key, method: str, path: str, **kw: Any) -> httpx.Request:
    """A request signed with its own fresh nonce (as 64 independent retries would be)."""
    request = httpx.Request(method, f"{api.url}{path}", **kw)
    signing.sign_request(
        request, key_id=key.key_id, private_key=key.private_key, created=api.clock.now()
    )
    return request


def _all_at_once(requests: list[httpx.Request]) -> list[httpx.Response]:
    """Send each request on its own connection, released together by a barrier."""
    barrier = threading.Barrier(len(requests))

    def send(request: httpx.Request) -> httpx.Response:
        with httpx.Client(timeout=30) as http:
            barrier.wait(timeout=30)
            response = http.send(request)
            response.read()
            return response

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(send, requests))


def _scalar(api: Api, sql: str, **params: Any) -> int:
    with api.engine.db.engine.connect() as c:
        return int(c.execute(text(sql), params).scalar_one())


def _check_one_effect(
    responses: list[httpx.Response], status: int
) -> tuple[httpx.Response, Counter[str]]:
    """Every response is the same stored ``status`` response or 409 in flight; returns one
    stored response and the tally."""
    tally: Counter[str] = Counter()
    stored: httpx.Response | None = None
    for response in responses:
        if response.status_code == 409:
            problem_of(response, 409, "request_in_flight")
            assert response.headers["retry-after"] == "1"
            tally["in_flight"] += 1
            continue
        assert response.status_code == status, response.text
        if stored is None:
            stored = response
        assert response.content == stored.content
        assert response.headers["etag"] == stored.headers["etag"]
        tally["replayed" if response.headers.get("idempotent-replayed") == "true" else "fresh"] += 1
    assert stored is not None, f"no request succeeded: {tally}"
    # exactly one request ran the route; the others saw its claim or its record
    assert tally["fresh"] == 1, tally
    return stored, tally


def _retries_replay(
    api: Api, stored: httpx.Response, make: Callable[[], httpx.Request], count: int = 8
) -> None:
    """Once the first has completed, every retry (concurrent too) replays it byte for byte."""
    for response in _all_at_once([make() for _ in range(count)]):
        assert response.status_code == stored.status_code, response.text
        assert response.content == stored.content
        assert response.headers["idempotent-replayed"] == "true"
        assert response.headers["etag"] == stored.headers["etag"]
        if "location" in stored.headers:
            assert response.headers["location"] == stored.headers["location"]


def test_64_identical_creates_make_one_commitment(api: Api) -> None:
    ref = f"DEAL-RACE-{uuid.uuid4().hex[:8]}"
    body = {"deal_ref": ref, "amount": "64.00", "currency": "USD"}
    headers = {"Idempotency-Key": f"race-{uuid.uuid4().hex}"}

    def make(payload: dict[str, str] = body) -> httpx.Request:
        return _signed(api, api.allocator, "POST", "/v1/commitments", json=payload, headers=headers)

    stored, _ = _check_one_effect(_all_at_once([make() for _ in range(CLIENTS)]), 201)
    count_sql = "SELECT count(*) FROM commitments WHERE deal_ref = :ref"
    assert _scalar(api, count_sql, ref=ref) == 1
    created = stored.json()
    assert created["to_state"] == "DRAFT"
    assert stored.headers["location"] == f"/v1/commitments/{created['commitment_id']}"
    _retries_replay(api, stored, make)

    # the same key for a different body: 422 for every one of 64, and nothing changes
    other = {**body, "amount": "65.00"}
    for response in _all_at_once([make(other) for _ in range(CLIENTS)]):
        problem_of(response, 422, "idempotency_key_reused")
    assert _scalar(api, count_sql, ref=ref) == 1
    assert _scalar(api, "SELECT count(*) FROM commitments WHERE amount = 65") == 0
    with api.client(api.allocator) as client:
        assert client.get_commitment(created["commitment_id"])["amount"] == "64"


def test_64_identical_submits_make_one_transition(api: Api) -> None:
    cid = create_draft(api)
    headers = {"Idempotency-Key": f"race-{uuid.uuid4().hex}", "If-Match": '"1"'}
    path = f"/v1/commitments/{cid}/submit"

    def make(extra: dict[str, str] | None = None) -> httpx.Request:
        return _signed(api, api.allocator, "POST", path, headers={**headers, **(extra or {})})

    stored, _ = _check_one_effect(_all_at_once([make() for _ in range(CLIENTS)]), 200)
    assert stored.json()["to_state"] == "PENDING_REVIEW"
    assert stored.headers["etag"] == '"2"'
    history_sql = "SELECT count(*) FROM state_transitions WHERE commitment_id = :cid"
    audit_sql = "SELECT count(*) FROM audit_log WHERE commitment_id = :cid"
    # create + submit, once each
    assert _scalar(api, history_sql, cid=cid) == 2
    assert _scalar(api, audit_sql, cid=cid) == 2
    _retries_replay(api, stored, make)

    # another expected version under the same key is another request: 422, no change
    for response in _all_at_once([make({"If-Match": '"2"'}) for _ in range(CLIENTS)]):
        problem_of(response, 422, "idempotency_key_reused")
    assert _scalar(api, history_sql, cid=cid) == 2
    assert _scalar(api, audit_sql, cid=cid) == 2
    with api.client(api.allocator) as client:
        got = client.get_commitment(cid)
    assert (got["state"], got["version"]) == ("PENDING_REVIEW", 2)


def test_two_bodies_racing_for_one_key_make_one_commitment(api: Api) -> None:
    ref = f"DEAL-RACE2-{uuid.uuid4().hex[:8]}"
    bodies = [
        {"deal_ref": ref, "amount": "1.00", "currency": "USD"},
        {"deal_ref": ref, "amount": "2.00", "currency": "USD"},
    ]
    headers = {"Idempotency-Key": f"race-{uuid.uuid4().hex}"}
    requests = [
        _signed(api, api.allocator, "POST", "/v1/commitments", json=bodies[i % 2], headers=headers)
        for i in range(CLIENTS)
    ]
    responses = _all_at_once(requests)
    winners = [r for r in responses if r.status_code == 201]
    assert winners, [r.status_code for r in responses]
    assert _scalar(api, "SELECT count(*) FROM commitments WHERE deal_ref = :r", r=ref) == 1
    with api.client(api.allocator) as client:
        won_amount = client.get_commitment(winners[0].json()["commitment_id"])["amount"]
    won = 0 if won_amount == "1" else 1
    assert won_amount == ("1", "2")[won]
    for i, response in enumerate(responses):
        sent_winner = i % 2 == won
        if response.status_code == 201:
            # every 201 is the one stored response, answered to the body that won
            assert sent_winner
            assert response.content == winners[0].content
        elif response.status_code == 409:
            problem_of(response, 409, "request_in_flight")
        else:
            # the other body under a claimed key is 422 even while the winner is in flight
            assert not sent_winner
            problem_of(response, 422, "idempotency_key_reused")


@pytest.mark.parametrize("copies", [2, 16])
def test_one_signed_request_sent_concurrently_is_accepted_once(api: Api, copies: int) -> None:
    ref = f"DEAL-REPLAY-{uuid.uuid4().hex[:8]}"
    original = _signed(
        api,
        api.allocator,
        "POST",
        "/v1/commitments",
        json={"deal_ref": ref, "amount": "5.00", "currency": "USD"},
        headers={"Idempotency-Key": secrets.token_hex(8)},
    )
    body = original.read()
    # byte-identical copies: same Signature, Signature-Input (nonce) and Content-Digest
    copies_sent = [
        httpx.Request(original.method, original.url, headers=original.headers, content=body)
        for _ in range(copies)
    ]
    responses = _all_at_once(copies_sent)
    accepted = [r for r in responses if r.status_code == 201]
    assert len(accepted) == 1, [r.status_code for r in responses]
    for response in responses:
        if response.status_code != 201:
            problem_of(response, 401, "nonce_reused")
    assert _scalar(api, "SELECT count(*) FROM commitments WHERE deal_ref = :r", r=ref) == 1


def test_one_signed_get_sent_concurrently_is_accepted_once(api: Api) -> None:
    cid = create_draft(api)
    original = _signed(api, api.auditor, "GET", f"/v1/commitments/{cid}")
    copies = [
        httpx.Request(original.method, original.url, headers=original.headers) for _ in range(16)
    ]
    statuses = Counter(r.status_code for r in _all_at_once(copies))
    assert statuses == Counter({200: 1, 401: 15})
