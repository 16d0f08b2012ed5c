"""RFC 9421 HTTP Message Signatures with Ed25519, as the API requires them.

Every request is signed over ``@method``, ``@target-uri`` and ``content-digest``
(RFC 9530, SHA-256 of the body, also of an empty one), with the signature parameters
``created``, ``nonce``, ``keyid`` and ``alg="ed25519"``. The canonical form (signature
base) is built by the ``http-message-signatures`` library on both sides; this module
holds our policy: what must be covered, the clock window, and a typed reason for each
rejection so the API can answer with a stable problem type.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    algorithms,
)
from http_message_signatures.digests import ContentDigest
from nacl.bindings import crypto_sign_open

ALGORITHM = "ed25519"
COVERED_COMPONENTS = ("@method", "@target-uri", "content-digest")
SIGNATURE_LABEL = "sig1"
#: how far ``created`` may be from the server's clock, either way
WINDOW_S = 300
NONCE_BYTES = 16


class SignatureRejected(InvalidSignature):
    """Why a request's signature was not accepted; ``code`` is the problem type."""

    code = "signature_invalid"


class SignatureMissing(SignatureRejected):
    code = "signature_missing"


class SignatureExpired(SignatureRejected):
    code = "signature_expired"


class DigestMismatch(SignatureRejected):
    code = "digest_mismatch"


class NonceReused(SignatureRejected):
    code = "nonce_reused"


class KeyUnknown(SignatureRejected):
    code = "key_unknown"


class KeyRevoked(SignatureRejected):
    code = "key_revoked"


class KeyNotLoaded(InvalidSignature):
    """Raised by a ``PublicKeyLookup`` that answers only from memory, for a key it does
    not hold: not a verdict on the request. ``verify_request`` lets it through, before
    any signature check, so the caller can load the key (off the event loop) and verify
    again."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"key {key_id!r} is not loaded")
        self.key_id = key_id


# -- keys ---------------------------------------------------------------------------


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key (what the registry stores)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PKCS#8 PEM; ``ValueError`` for anything else."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the key file does not hold an Ed25519 private key")
    return key


# -- signing (the client's side) ----------------------------------------------------


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, key_id: str, key: Ed25519PrivateKey) -> None:
        self._key_id = key_id
        self._key = key

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        assert key_id == self._key_id
        return self._key

    def resolve_public_key(self, key_id: str) -> None:
        raise NotImplementedError("a signer has no public keys to resolve")


def sign_request(
    request: httpx.Request,
    *,
    key_id: str,
    private_key: Ed25519PrivateKey,
    created: datetime | None = None,
    nonce: str | None = None,
    covered: Iterable[str] = COVERED_COMPONENTS,
) -> None:
    """Sign ``request`` in place: sets Content-Digest, Signature-Input and Signature.

    ``created`` defaults to now and ``nonce`` to 128 random bits; tests pass their own
    (and may cover fewer components, to prove the server refuses that).
    """
    body = request.read()
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(key_id, private_key)
    )
    covered_ids = tuple(covered)
    signer.sign(
        request,
        key_id=key_id,
        created=created or datetime.now(UTC),
        nonce=nonce or secrets.token_urlsafe(NONCE_BYTES),
        label=SIGNATURE_LABEL,
        covered_component_ids=covered_ids,
        body=body if "content-digest" in covered_ids else None,
    )


# -- verifying (the server's side) --------------------------------------------------


class _Headers:
    """The header view the library reads: ``items()`` in wire order."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)


@dataclass(frozen=True)
class IncomingRequest:
    method: str
    #: the absolute target URI as the server received it (scheme, Host, path, query)
    url: str
    header_pairs: list[tuple[str, str]]

    @property
    def headers(self) -> _Headers:
        return _Headers(self.header_pairs)

    def has_header(self, name: str) -> bool:
        return any(n.lower() == name for n, _ in self.header_pairs)


@dataclass(frozen=True)
class _SignedView:
    """What the library is shown of a request: its method and URL, the Signature and
    Signature-Input fields, and the fields whose name the Signature-Input text quotes
    (``"name"``). That is every field a signature can cover (a covered field is named
    by a quoted lowercase identifier, with or without parameters), so the verdict is
    the library's on the whole request; the fields no signature names (User-Agent,
    Accept, ...) are only left out of the library's two passes over the headers."""

    method: str
    url: str
    headers: _Headers


def _signed_view(request: IncomingRequest) -> _SignedView:
    pairs = [(n.lower(), v) for n, v in request.header_pairs]
    named = ", ".join(v for n, v in pairs if n == "signature-input")
    kept = [(n, v) for n, v in pairs if n in _SIGNATURE_FIELDS or f'"{n}"' in named]
    return _SignedView(request.method, request.url, _Headers(kept))


_SIGNATURE_FIELDS = frozenset({"signature", "signature-input"})


@dataclass(frozen=True)
class Verified:
    key_id: str
    nonce: str
    created: datetime


#: how the library names each required component among those a signature covers: the
#: component identifier serialized as a Structured Field String with no parameters
#: (RFC 9421 section 2). One covered with parameters (``"content-digest";sf``) is
#: another component and does not count.
_COVERED_KEYS = {c: f'"{c}"' for c in COVERED_COMPONENTS}


#: resolves a key id to its public key, raising ``KeyUnknown`` or ``KeyRevoked`` (or
#: ``KeyNotLoaded``, for the caller to handle)
PublicKeyLookup = Callable[[str], Ed25519PublicKey]


class _LookupResolver(HTTPSignatureKeyResolver):
    def __init__(self, lookup: PublicKeyLookup) -> None:
        self._lookup = lookup

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey:
        return self._lookup(key_id)

    def resolve_private_key(self, key_id: str) -> None:
        raise NotImplementedError("a verifier holds no private keys")


class _Ed25519(algorithms.ED25519):
    """The library's Ed25519 (the same keys, signature base and verdicts), its check
    made by libsodium through PyNaCl (which stellar-sdk brings too): about half the CPU
    of OpenSSL's on this path, 50 against 100 us per request. libsodium refuses a
    non-canonical S and small-order keys, as OpenSSL refuses the former."""

    def verify(self, signature: bytes, message: bytes) -> None:
        if len(signature) != 64:
            raise InvalidSignature("an Ed25519 signature is 64 bytes")
        # raises nacl's BadSignatureError, which the library reports as InvalidSignature
        crypto_sign_open(signature + message, self.public_key.public_bytes_raw())


class _WindowVerifier(HTTPMessageVerifier):
    """The library's verifier with our clock and a symmetric ``created`` window."""

    def __init__(self, lookup: PublicKeyLookup, now: datetime, window: timedelta) -> None:
        super().__init__(signature_algorithm=_Ed25519, key_resolver=_LookupResolver(lookup))
        self._now = now
        self._window = window

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        params = sig_input.params
        created = params.get("created")
        if type(created) is not int:
            raise SignatureRejected('the signature must carry an integer "created" parameter')
        if "expires" in params:
            raise SignatureRejected('the "expires" parameter is not used; the window is fixed')
        at = datetime.fromtimestamp(created, tz=UTC)
        if abs(at - self._now) > self._window:
            raise SignatureExpired(
                f"created {at.isoformat()} is more than {int(self._window.total_seconds())} s"
                f" from the server's time {self._now.isoformat()}"
            )


def verify_request(
    request: IncomingRequest,
    body: bytes,
    *,
    lookup: PublicKeyLookup,
    now: datetime,
    window_s: int = WINDOW_S,
) -> Verified:
    """Verify a request's one signature and its Content-Digest against ``body``.

    Raises a ``SignatureRejected`` subclass naming the reason, or the ``KeyNotLoaded``
    that ``lookup`` raised. Nonce replay is the caller's check (it needs the database),
    after this succeeds. ``lookup`` is called once, with the signature's ``keyid``,
    before the signature is checked. Pure CPU when ``lookup`` is.
    """
    if not request.has_header("signature") or not request.has_header("signature-input"):
        raise SignatureMissing("the request carries no Signature and Signature-Input")
    verifier = _WindowVerifier(lookup, now, timedelta(seconds=window_s))
    try:
        # Coverage is checked below on what the library returns rather than through
        # its ``require_components``, which parses the required and the covered
        # identifiers again on every call (about an eighth of the verification's CPU).
        results = verifier.verify(_signed_view(request), max_age=None)
    except (SignatureRejected, KeyNotLoaded):
        raise
    except InvalidSignature as exc:
        raise SignatureRejected(str(exc) or "the signature does not verify") from exc
    except Exception as exc:  # the library raises its base error for malformed input
        raise SignatureRejected(f"malformed signature: {exc}") from exc
    assert len(results) == 1  # the library refuses several unless a tag selects one
    result = results[0]
    params = result.parameters
    if params.get("alg") != ALGORITHM:
        raise SignatureRejected(f'the signature must carry alg="{ALGORITHM}"')
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or not 1 <= len(nonce) <= 128:
        raise SignatureRejected("the signature must carry a nonce of 1-128 characters")
    covered = result.covered_components
    missing = [c for c in COVERED_COMPONENTS if _COVERED_KEYS[c] not in covered]
    if missing:
        raise SignatureRejected(f"the signature must cover {', '.join(missing)}")
    _check_digest(covered[_COVERED_KEYS["content-digest"]], body)
    key_id = params["keyid"]
    created = params["created"]
    assert isinstance(key_id, str)
    assert isinstance(created, int)
    return Verified(key_id=key_id, nonce=nonce, created=datetime.fromtimestamp(created, tz=UTC))


def _check_digest(signed: str, body: bytes) -> None:
    """Every digest the signed Content-Digest field lists must match ``body``
    (``DigestMismatch`` otherwise). The field our client sends, one SHA-256 member
    exactly as ``ContentDigest.create`` serializes it, is compared as a string; any other
    goes through the library's parser and check."""
    if signed == f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:":
        return
    try:
        ContentDigest.verify(signed, body)
    except InvalidSignature as exc:
        raise DigestMismatch(str(exc)) from exc
