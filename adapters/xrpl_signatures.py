"""XRPL transaction signatures through OpenSSL (the ``cryptography`` package).

xrpl-py's own keypairs sign and verify in pure Python (ECPy): about 5 ms per signature
and as much per check, which made signing and checking most of an XRPL transaction's
CPU in the engine and in the local network. These functions compute the same thing:

- ed25519 (public key ``ED`` + 32 bytes): an Ed25519 signature of the signing data
  itself; Ed25519 is deterministic, so the bytes equal xrpl-py's;
- secp256k1 (compressed public key, ``02``/``03`` + 32 bytes): ECDSA over SHA-512Half
  of the signing data, nonce by RFC 6979 with SHA-256 (as xrpl-py), S made low and
  DER-encoded, so the bytes again equal xrpl-py's.

``verify`` applies rippled's rules (``ecdsaCanonicality`` and ``verifyDigest`` in
rippled's PublicKey.cpp, with the RequireFullyCanonicalSig amendment enabled): a
secp256k1 signature must be strict DER, with R and S positive, minimally encoded and
below the curve order, and fully canonical (S at most half the order); an Ed25519
signature is 64 bytes with S below the group order (OpenSSL refuses any other).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: the order of secp256k1's group
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_ED25519_PREFIX = "ED"
# SHA-512Half is 32 bytes: signing it "prehashed" as if SHA-256 gives ECDSA over it, and
# deterministic signing then draws the RFC 6979 nonce with SHA-256, as xrpl-py does
_ECDSA = ec.ECDSA(utils.Prehashed(hashes.SHA256()), deterministic_signing=True)
_ECDSA_VERIFY = ec.ECDSA(utils.Prehashed(hashes.SHA256()))


def sha512_half(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()[:32]


def sign(message: bytes, private_key: str) -> bytes:
    """The signature of an XRPL signing payload ``message`` by ``private_key`` (hex as
    xrpl-py's ``Wallet.private_key``: ``ED`` + 32 bytes, or 33 bytes for secp256k1):
    64 bytes for ed25519, fully canonical DER for secp256k1."""
    key = _private_key(private_key)
    if isinstance(key, Ed25519PrivateKey):
        return key.sign(message)
    der = key.sign(sha512_half(message), _ECDSA)
    r, s = utils.decode_dss_signature(der)
    if s > SECP256K1_ORDER // 2:
        s = SECP256K1_ORDER - s
    return utils.encode_dss_signature(r, s)


def verify(message: bytes, signature: bytes, public_key: str) -> bool:
    """Whether ``signature`` is a valid signature of ``message`` by ``public_key`` (hex,
    as ``SigningPubKey``), by rippled's rules. Never raises for malformed input."""
    try:
        key_bytes = bytes.fromhex(public_key)
    except ValueError:
        return False
    if len(key_bytes) != 33:
        return False
    try:
        if key_bytes[0] == 0xED:
            if len(signature) != 64:
                return False
            _ed25519_public(key_bytes).verify(signature, message)
            return True
        if key_bytes[0] not in (0x02, 0x03) or not fully_canonical(signature):
            return False
        _secp256k1_public(key_bytes).verify(signature, sha512_half(message), _ECDSA_VERIFY)
    except (InvalidSignature, ValueError):
        return False
    return True


def fully_canonical(signature: bytes) -> bool:
    """rippled's ``ecdsaCanonicality(sig) == fullyCanonical``: ``30 len 02 lenR R 02
    lenS S``, 8 to 72 bytes, each part 1 to 33 bytes, not negative, not zero-padded,
    below the order, and S no more than half the order."""
    if not 8 <= len(signature) <= 72 or signature[0] != 0x30 or signature[1] != len(signature) - 2:
        return False
    rest = signature[2:]
    parts: list[int] = []
    for _ in range(2):
        if len(rest) < 3 or rest[0] != 0x02:
            return False
        size = rest[1]
        body = rest[2 : 2 + size]
        if size < 1 or size > 33 or len(body) != size:
            return False
        if body[0] & 0x80:
            return False  # negative
        if body[0] == 0 and (size == 1 or not body[1] & 0x80):
            return False  # zero, or padded with a needless zero byte
        parts.append(int.from_bytes(body, "big"))
        rest = rest[2 + size :]
    if rest:
        return False
    r, s = parts
    if r >= SECP256K1_ORDER or s >= SECP256K1_ORDER:
        return False
    return s <= SECP256K1_ORDER - s


# Building a key object costs more than a signature (a secp256k1 public key from its
# compressed form needs a square root; a private key derives its public point). The
# engine signs for a few accounts and a ledger checks a few thousand, so both are kept.


@lru_cache(maxsize=1024)
def _private_key(private_key: str) -> Ed25519PrivateKey | ec.EllipticCurvePrivateKey:
    if private_key.upper().startswith(_ED25519_PREFIX):
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(private_key[2:]))
    return ec.derive_private_key(int(private_key, 16), ec.SECP256K1())


@lru_cache(maxsize=8192)
def _ed25519_public(key_bytes: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(key_bytes[1:])


@lru_cache(maxsize=8192)
def _secp256k1_public(key_bytes: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), key_bytes)
