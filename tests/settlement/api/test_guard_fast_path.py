"""The guard's fast path: public keys kept in memory, one statement that checks the key
and records the nonce, the coverage and digest checks done on what the library returns,
and nonce pruning off the request path. Each test would fail if the check it names
were skipped or weakened."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

from ledger import api_keys
from settlement import signing
from settlement.api import guard
from settlement.clock import ManualClock

from .conftest import Api, Key, problem_of

BODY = {"deal_ref": "DEAL-FAST", "amount": "125.00", "currency": "USD"}


def read(api: Api, key: Key, **kw: object) -> httpx.Response:
    return api.send(key, "GET", "/v1/commitments", **kw)  # type: ignore[arg-type]


def nonces_of(api: Api, key: Key) -> set[str]:
    with api.engine.db.unit_of_work() as uow:
        rows = uow.execute("SELECT nonce FROM api_nonces WHERE key_id = :k", {"k": key.key_id})
        return {nonce for (nonce,) in rows}


def digest_field(*members: tuple[str, bytes]) -> str:
    return ", ".join(f"{name}=:{base64.b64encode(value).decode()}:" for name, value in members)


class _Signer(HTTPSignatureKeyResolver):
    def __init__(self, key: Key) -> None:
        self._key = key

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        assert key_id == self._key.key_id
        return self._key.private_key

    def resolve_public_key(self, key_id: str) -> None:
        raise NotImplementedError


def signed_as_is(api: Api, key: Key, covered: tuple[str, ...]) -> Any:
    """A ``tamper`` hook that signs the request with its Content-Digest field as given
    (the package's signer would compute its own)."""

    def sign(request: httpx.Request) -> httpx.Request:
        HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_Signer(key)).sign(
            request,
            key_id=key.key_id,
            created=api.clock.now(),
            nonce=uuid.uuid4().hex,
            label=signing.SIGNATURE_LABEL,
            covered_component_ids=covered,
            use_existing_digest=True,
        )
        return request

    return sign


def post_with_digest(
    api: Api, content: bytes, field: str, covered: tuple[str, ...]
) -> httpx.Response:
    headers = {
        "Content-Type": "application/json",
        "Content-Digest": field,
        "Idempotency-Key": uuid.uuid4().hex,
    }
    return api.send(
        None,
        "POST",
        "/v1/commitments",
        content=content,
        headers=headers,
        tamper=signed_as_is(api, api.allocator, covered),
    )


def test_revocation_by_another_process_is_honoured_on_the_next_request(api: Api) -> None:
    assert read(api, api.allocator, nonce="before").status_code == 200  # now in the cache
    # straight on the database, as `settle keys revoke` in another process would
    revoked = api_keys.revoke_key(
        api.engine.db, api.allocator.key_id, at=api.clock.now(), revoked_by="test"
    )
    assert revoked is True
    problem_of(read(api, api.allocator, nonce="after"), 401, "key_revoked")
    problem_of(read(api, api.allocator, nonce="later"), 401, "key_revoked")
    assert nonces_of(api, api.allocator) == {"before"}


def test_a_replayed_read_is_refused_and_nonces_are_per_key(api: Api) -> None:
    assert read(api, api.allocator, nonce="n-read").status_code == 200
    problem_of(read(api, api.allocator, nonce="n-read"), 401, "nonce_reused")
    # another key's nonce of the same text is another nonce
    assert read(api, api.other_allocator, nonce="n-read").status_code == 200
    problem_of(read(api, api.other_allocator, nonce="n-read"), 401, "nonce_reused")


def test_an_unknown_key_is_refused_and_not_remembered_as_unknown(api: Api) -> None:
    stranger = Key("key-registered-later", signing.new_private_key())
    problem_of(read(api, stranger), 401, "key_unknown")
    problem_of(read(api, stranger), 401, "key_unknown")
    created = api.keys.create(
        role="auditor",
        party=None,
        person="auditor-later",
        created_by="test",
        key_id="key-registered-later",
    )
    registered = Key(created.record.key_id, created.private_key)
    assert read(api, registered).status_code == 200
    # the key id is now known, but a signature by another private key still fails
    problem_of(read(api, stranger), 401, "signature_invalid")


def test_more_components_than_required_may_be_covered(api: Api) -> None:
    covered = (*signing.COVERED_COMPONENTS, "content-type", "idempotency-key")
    response = api.send(
        api.allocator,
        "POST",
        "/v1/commitments",
        json=BODY,
        headers={"Idempotency-Key": "fast-extra-components"},
        covered=covered,
    )
    assert response.status_code == 201, response.text


def test_a_digest_covered_only_with_parameters_does_not_count(api: Api) -> None:
    content = json.dumps(BODY).encode()
    field = digest_field(("sha-256", hashlib.sha256(content).digest()))
    plain = post_with_digest(api, content, field, signing.COVERED_COMPONENTS)
    assert plain.status_code == 201, plain.text
    covered = ("@method", "@target-uri", '"content-digest";sf')
    body = problem_of(post_with_digest(api, content, field, covered), 401, "signature_invalid")
    assert "content-digest" in body["detail"]


def test_every_digest_the_signed_field_lists_must_match_the_body(api: Api) -> None:
    content = json.dumps(BODY).encode()
    right = ("sha-256", hashlib.sha256(content).digest())
    wrong = ("sha-512", hashlib.sha512(content + b" ").digest())
    both = digest_field(right, wrong)
    problem_of(
        post_with_digest(api, content, both, signing.COVERED_COMPONENTS), 401, "digest_mismatch"
    )
    only_right = digest_field(right)
    assert post_with_digest(api, content, only_right, signing.COVERED_COMPONENTS).status_code == 201


def wait_until_pruned(api: Api, key: Key, nonce: str) -> None:
    """Send reads until a background prune has removed ``nonce``: each authenticated
    request starts one when one is due and none is running."""
    deadline = time.monotonic() + 20
    count = 0
    while nonce in nonces_of(api, key):
        assert time.monotonic() < deadline, f"nonce {nonce!r} was never pruned"
        assert read(api, key, nonce=f"trigger-{count}").status_code == 200
        count += 1
        time.sleep(0.05)


def test_nonces_past_any_replay_window_are_pruned_and_newer_ones_kept(
    api: Api, clock: ManualClock
) -> None:
    window = timedelta(seconds=signing.WINDOW_S)
    assert window.total_seconds() > guard.PRUNE_EVERY_S
    assert read(api, api.allocator, nonce="ancient").status_code == 200
    clock.advance(window)
    assert read(api, api.allocator, nonce="recent").status_code == 200
    # a nonce goes once no signature inside the window can still carry it: recorded
    # more than two windows (and a second) ago
    clock.advance(window + timedelta(seconds=2))
    wait_until_pruned(api, api.allocator, "ancient")
    assert {"recent", "trigger-0"} <= nonces_of(api, api.allocator)
    # what was pruned cannot be replayed: its signature is outside the window by now
    replay = read(api, api.allocator, nonce="ancient", created=clock.now() - 2 * window)
    problem_of(replay, 401, "signature_expired")


def test_a_replay_at_the_far_edge_of_the_window_still_finds_its_nonce(
    api: Api, clock: ManualClock
) -> None:
    window = timedelta(seconds=signing.WINDOW_S)
    assert read(api, api.allocator, nonce="ancient").status_code == 200
    clock.advance(timedelta(seconds=2))
    # signed as late as the window allows, then replayed as late as it still verifies
    created = clock.now() + window
    assert read(api, api.allocator, nonce="edge", created=created).status_code == 200
    clock.advance(2 * window)
    wait_until_pruned(api, api.allocator, "ancient")
    problem_of(read(api, api.allocator, nonce="edge", created=created), 401, "nonce_reused")


def test_a_key_revoked_before_its_first_request_is_refused(api: Api) -> None:
    # nothing held for it yet: the key is read from the database, and found revoked
    assert api.keys.revoke(api.auditor.key_id, revoked_by="test") is True
    problem_of(read(api, api.auditor), 401, "key_revoked")
    assert nonces_of(api, api.auditor) == set()
