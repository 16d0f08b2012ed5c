"""What the verifier shows the library (``signing._signed_view``) and the direct
Content-Digest comparison: leaving fields out and comparing strings change no verdict."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import httpx
import pytest

from settlement import signing

KEY = signing.new_private_key()
KEY_ID = "key-view"
#: one fixed moment for signing and verifying: the module is imported at collection,
#: which may be minutes before these tests run
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def incoming(request: httpx.Request) -> signing.IncomingRequest:
    return signing.IncomingRequest(
        request.method,
        str(request.url),
        [(n.decode(), v.decode()) for n, v in request.headers.raw],
    )


def signed(covered: tuple[str, ...] = signing.COVERED_COMPONENTS, **headers: str) -> httpx.Request:
    request = httpx.Request(
        "POST", "http://api.test/v1/commitments", content=b'{"a": 1}', headers=headers
    )
    signing.sign_request(
        request, key_id=KEY_ID, private_key=KEY, created=NOW, covered=covered
    )
    return request


def verify(request: signing.IncomingRequest, body: bytes = b'{"a": 1}') -> signing.Verified:
    return signing.verify_request(request, body, lookup=lambda _: KEY.public_key(), now=NOW)


def test_the_view_keeps_the_signature_fields_and_every_field_the_input_names() -> None:
    request = incoming(
        signed((*signing.COVERED_COMPONENTS, "x-desk"), **{"X-Desk": "fx", "X-Other": "1"})
    )
    kept = {name for name, _ in signing._signed_view(request).headers.items()}
    assert kept == {"signature", "signature-input", "content-digest", "x-desk"}
    assert verify(request).key_id == KEY_ID


def test_a_covered_field_changed_after_signing_still_fails() -> None:
    request = incoming(signed((*signing.COVERED_COMPONENTS, "x-desk"), **{"X-Desk": "fx"}))
    tampered = signing.IncomingRequest(
        request.method,
        request.url,
        [(n, "rates" if n.lower() == "x-desk" else v) for n, v in request.header_pairs],
    )
    with pytest.raises(signing.SignatureRejected):
        verify(tampered)


def test_a_field_left_out_of_the_view_can_change_without_effect() -> None:
    request = incoming(signed(**{"User-Agent": "desk/1"}))
    changed = signing.IncomingRequest(
        request.method,
        request.url,
        [(n, "other/2" if n.lower() == "user-agent" else v) for n, v in request.header_pairs],
    )
    assert verify(changed).nonce == verify(request).nonce


def test_a_digest_field_other_than_the_clients_own_goes_through_the_library() -> None:
    body = b'{"a": 1}'
    own = f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"
    signing._check_digest(own, body)
    sha512 = base64.b64encode(hashlib.sha512(body).digest()).decode()
    # two members, both right: not the client's own form, so the library parses it
    signing._check_digest(f"{own}, sha-512=:{sha512}:", body)
    with pytest.raises(signing.DigestMismatch):
        signing._check_digest(own, body + b" ")
    with pytest.raises(signing.DigestMismatch):
        signing._check_digest(
            own + ", sha-512=:" + base64.b64encode(hashlib.sha512(b"x").digest()).decode() + ":",
            body,
        )
