"""Every request is signed (RFC 9421, Ed25519): each reason for a 401 on its own, the
window's edges, replay, and roles (403)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from settlement import signing

from .conftest import Api, Key, create_draft, problem_of

BODY = {"deal_ref": "DEAL-SIG", "amount": "250.00", "currency": "USD"}


def create(api: Api, key: Key | None, **kw: object) -> httpx.Response:
    headers = {"Idempotency-Key": signing.secrets.token_hex(8)}
    return api.send(key, "POST", "/v1/commitments", json=BODY, headers=headers, **kw)  # type: ignore[arg-type]


def test_a_signed_request_is_accepted(api: Api) -> None:
    response = create(api, api.allocator)
    assert response.status_code == 201, response.text
    assert response.json()["to_state"] == "DRAFT"


def test_unsigned_is_401_signature_missing(api: Api) -> None:
    problem_of(create(api, None), 401, "signature_missing")
    problem_of(api.send(None, "GET", "/v1/review"), 401, "signature_missing")


def test_signed_by_another_key_is_401_signature_invalid(api: Api) -> None:
    impostor = Key(api.allocator.key_id, signing.new_private_key())
    problem_of(create(api, impostor), 401, "signature_invalid")


def test_a_body_changed_after_signing_is_401_digest_mismatch(api: Api) -> None:
    def swap_body(request: httpx.Request) -> httpx.Request:
        changed = b'{"deal_ref":"DEAL-SIG","amount":"999999.00","currency":"USD"}'
        headers = dict(request.headers)
        headers["content-length"] = str(len(changed))
        return httpx.Request(request.method, request.url, headers=headers, content=changed)

    problem_of(create(api, api.allocator, tamper=swap_body), 401, "digest_mismatch")


def test_a_digest_header_changed_with_the_body_is_401_signature_invalid(api: Api) -> None:
    def swap_both(request: httpx.Request) -> httpx.Request:
        changed = b'{"deal_ref":"DEAL-SIG","amount":"999999.00","currency":"USD"}'
        headers = dict(request.headers)
        headers["content-length"] = str(len(changed))
        headers["content-digest"] = signing.ContentDigest.create(changed)
        return httpx.Request(request.method, request.url, headers=headers, content=changed)

    problem_of(create(api, api.allocator, tamper=swap_both), 401, "signature_invalid")


def test_a_path_changed_after_signing_is_401_signature_invalid(api: Api) -> None:
    cid = create_draft(api)

    def other_path(request: httpx.Request) -> httpx.Request:
        url = request.url.copy_with(path=f"/v1/commitments/{cid}/withdraw")
        return httpx.Request(request.method, url, headers=request.headers, content=request.read())

    response = api.send(
        api.allocator,
        "POST",
        f"/v1/commitments/{cid}/submit",
        json={"expected_version": 1},
        headers={"Idempotency-Key": "k-path"},
        tamper=other_path,
    )
    problem_of(response, 401, "signature_invalid")


@pytest.mark.parametrize("offset_s", [-301, 301, -3600])
def test_created_outside_the_window_is_401_signature_expired(api: Api, offset_s: int) -> None:
    created = api.clock.now() + timedelta(seconds=offset_s)
    problem_of(create(api, api.allocator, created=created), 401, "signature_expired")


@pytest.mark.parametrize("offset_s", [-300, 300])
def test_created_at_the_window_edges_is_accepted(api: Api, offset_s: int) -> None:
    created = api.clock.now() + timedelta(seconds=offset_s)
    assert create(api, api.allocator, created=created).status_code == 201


def test_a_reused_nonce_is_401_nonce_reused(api: Api) -> None:
    assert create(api, api.allocator, nonce="n-once").status_code == 201
    problem_of(create(api, api.allocator, nonce="n-once"), 401, "nonce_reused")
    # nonces are per key: another key may use the same one
    response = api.send(api.auditor, "GET", "/v1/audit/verify", nonce="n-once")
    assert response.status_code == 200, response.text


def test_an_unknown_key_is_401_key_unknown(api: Api) -> None:
    stranger = Key("key-nobody", signing.new_private_key())
    problem_of(create(api, stranger), 401, "key_unknown")


def test_a_revoked_key_is_401_key_revoked_from_the_next_request(api: Api) -> None:
    assert create(api, api.allocator).status_code == 201
    assert api.keys.revoke(api.allocator.key_id, revoked_by="test") is True
    problem_of(create(api, api.allocator), 401, "key_revoked")


def test_a_cached_key_is_still_checked_for_revocation_and_replay_in_the_database(
    api: Api,
) -> None:
    # the server keeps public keys in memory; revocation and nonces are read each time
    assert create(api, api.allocator, nonce="n-first").status_code == 201
    problem_of(create(api, api.allocator, nonce="n-first"), 401, "nonce_reused")
    assert api.keys.revoke(api.allocator.key_id, revoked_by="test") is True
    problem_of(create(api, api.allocator, nonce="n-after"), 401, "key_revoked")
    with api.engine.db.unit_of_work() as uow:
        nonces = uow.execute(
            "SELECT nonce FROM api_nonces WHERE key_id = :k", {"k": api.allocator.key_id}
        ).all()
    assert [n for (n,) in nonces] == ["n-first"], "nothing recorded for a revoked key"


@pytest.mark.parametrize(
    "covered",
    [("@method", "@target-uri"), ("@method", "content-digest"), ("@target-uri", "content-digest")],
)
def test_a_required_component_not_covered_is_401(api: Api, covered: tuple[str, ...]) -> None:
    problem_of(create(api, api.allocator, covered=covered), 401, "signature_invalid")


def test_a_get_must_cover_the_digest_of_its_empty_body(api: Api) -> None:
    ok = api.send(api.auditor, "GET", "/v1/audit/verify")
    assert ok.status_code == 200, ok.text
    bare = api.send(api.auditor, "GET", "/v1/audit/verify", covered=("@method", "@target-uri"))
    problem_of(bare, 401, "signature_invalid")


def test_health_and_openapi_are_unsigned(api: Api) -> None:
    assert api.send(None, "GET", "/health").json() == {"status": "ok", "database": "ok"}
    assert api.send(None, "GET", "/openapi.json").status_code == 200


# -- roles: 403 ---------------------------------------------------------------------


@pytest.mark.parametrize("who", ["officer", "admin", "auditor"])
def test_only_an_allocator_creates(api: Api, who: str) -> None:
    problem_of(create(api, getattr(api, who)), 403, "forbidden")


@pytest.mark.parametrize("who", ["allocator", "admin", "auditor"])
def test_only_an_officer_reads_the_review_queue(api: Api, who: str) -> None:
    problem_of(api.send(getattr(api, who), "GET", "/v1/review"), 403, "forbidden")


@pytest.mark.parametrize("who", ["allocator", "officer"])
def test_only_an_auditor_or_admin_verifies_the_audit_log(api: Api, who: str) -> None:
    problem_of(api.send(getattr(api, who), "GET", "/v1/audit/verify"), 403, "forbidden")
    assert api.send(api.admin, "GET", "/v1/audit/verify").status_code == 200


def test_an_allocator_reads_only_its_own_party(api: Api) -> None:
    cid = create_draft(api)
    for path in (f"/v1/commitments/{cid}", f"/v1/commitments/{cid}/audit"):
        problem_of(api.send(api.other_allocator, "GET", path), 403, "forbidden")
        assert api.send(api.allocator, "GET", path).status_code == 200
        assert api.send(api.auditor, "GET", path).status_code == 200


def test_another_party_cannot_submit_or_withdraw(api: Api) -> None:
    cid = create_draft(api)
    for event in ("submit", "withdraw"):
        response = api.send(
            api.other_allocator,
            "POST",
            f"/v1/commitments/{cid}/{event}",
            json={"expected_version": 1},
            headers={"Idempotency-Key": f"k-{event}"},
        )
        problem_of(response, 403, "not_authorised")
    with api.client(api.allocator) as client:
        assert client.get_commitment(cid)["state"] == "DRAFT"


def test_an_allocator_cannot_approve(api: Api) -> None:
    cid = create_draft(api)
    response = api.send(
        api.allocator,
        "POST",
        f"/v1/review/{cid}/approve",
        json={"expected_version": 1},
        headers={"Idempotency-Key": "k-approve"},
    )
    problem_of(response, 403, "forbidden")
