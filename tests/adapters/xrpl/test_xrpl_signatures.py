"""XRPL signatures through OpenSSL: the same bytes as xrpl-py's, and rippled's rules.

xrpl-py's keypairs (pure Python) are the reference here: a signature made by
``adapters.xrpl_signatures.sign`` must be byte-identical to xrpl-py's and verify with
it, and the other way round. ``verify`` must also refuse what rippled refuses and
xrpl-py accepts: a secp256k1 signature that is valid ECDSA but not fully canonical.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import utils
from hypothesis import given, settings
from hypothesis import strategies as st
from xrpl.constants import CryptoAlgorithm
from xrpl.core.keypairs import is_valid_message
from xrpl.core.keypairs import sign as reference_sign
from xrpl.wallet import Wallet

from adapters import xrpl_signatures
from adapters.xrpl_signatures import SECP256K1_ORDER, fully_canonical, sign, verify

WALLETS = {
    CryptoAlgorithm.SECP256K1: Wallet.from_seed("sn3nxiW7v8KXzPzAqzyHXbSSKNuN9"),
    CryptoAlgorithm.ED25519: Wallet.from_seed("sEdSKaCy2JT7JaM7v95H9SxkhP9wS2r"),
}


@pytest.mark.parametrize("algorithm", list(WALLETS))
@settings(max_examples=40, deadline=None)
@given(message=st.binary(min_size=0, max_size=400))
def test_signatures_equal_xrpl_py_and_verify_both_ways(
    algorithm: CryptoAlgorithm, message: bytes
) -> None:
    wallet = WALLETS[algorithm]
    ours = sign(message, wallet.private_key)
    theirs = bytes.fromhex(reference_sign(message, wallet.private_key))
    assert ours == theirs
    assert is_valid_message(message, ours, wallet.public_key)
    assert verify(message, theirs, wallet.public_key)
    assert not verify(message + b"\x00", ours, wallet.public_key)


@pytest.mark.parametrize("algorithm", list(WALLETS))
def test_another_key_does_not_verify(algorithm: CryptoAlgorithm) -> None:
    signer, other = WALLETS[algorithm], Wallet.create(algorithm)
    signature = sign(b"payload", signer.private_key)
    assert not verify(b"payload", signature, other.public_key)


def _high_s(signature: bytes) -> bytes:
    r, s = utils.decode_dss_signature(signature)
    return utils.encode_dss_signature(r, SECP256K1_ORDER - s)


def test_a_high_s_signature_is_valid_ecdsa_but_refused() -> None:
    wallet = WALLETS[CryptoAlgorithm.SECP256K1]
    low = sign(b"payload", wallet.private_key)
    high = _high_s(low)
    # the same point: xrpl-py (ECPy) accepts it; rippled does not, and neither do we
    assert is_valid_message(b"payload", high, wallet.public_key)
    assert fully_canonical(low)
    assert not fully_canonical(high)
    assert not verify(b"payload", high, wallet.public_key)


def _der(r: bytes, s: bytes) -> bytes:
    body = b"\x02" + bytes([len(r)]) + r + b"\x02" + bytes([len(s)]) + s
    return b"\x30" + bytes([len(body)]) + body


@pytest.mark.parametrize(
    ("label", "signature"),
    [
        ("too short", b"\x30\x06\x02\x01\x01\x02\x01"),
        ("not a sequence", b"\x31" + _der(b"\x01", b"\x01")[1:]),
        ("length disagrees", b"\x30\x07" + _der(b"\x01", b"\x01")[2:]),
        ("negative R", _der(b"\x81", b"\x01")),
        ("zero R", _der(b"\x00", b"\x01")),
        ("padded S", _der(b"\x01", b"\x00\x01")),
        ("trailing byte", b"\x30\x07" + _der(b"\x01", b"\x01")[2:] + b"\x00"),
        ("R at the order", _der(SECP256K1_ORDER.to_bytes(33, "big"), b"\x01")),
    ],
)
def test_malformed_der_is_not_canonical(label: str, signature: bytes) -> None:
    assert not fully_canonical(signature), label
    wallet = WALLETS[CryptoAlgorithm.SECP256K1]
    assert not verify(b"payload", signature, wallet.public_key), label


@pytest.mark.parametrize(
    "public_key",
    ["", "zz", "02" + "00" * 31, "04" + "11" * 32, "ED" + "00" * 31, "05" + "11" * 32],
)
def test_malformed_public_keys_do_not_verify_and_do_not_raise(public_key: str) -> None:
    assert not verify(b"payload", b"\x00" * 64, public_key)


def test_ed25519_signature_of_the_wrong_length_is_refused() -> None:
    wallet = WALLETS[CryptoAlgorithm.ED25519]
    signature = sign(b"payload", wallet.private_key)
    assert not verify(b"payload", signature + b"\x00", wallet.public_key)
    assert not verify(b"payload", signature[:63], wallet.public_key)


def test_module_is_what_the_keystore_and_the_node_use() -> None:
    from adapters.localnet.xrpl import apply
    from adapters.signing import InMemoryKeystore

    wallet = WALLETS[CryptoAlgorithm.SECP256K1]
    keystore = InMemoryKeystore(xrpl=[wallet])
    assert keystore.sign_xrpl(wallet.classic_address, b"m") == sign(b"m", wallet.private_key)
    assert apply.xrpl_signatures is xrpl_signatures


def test_the_adapters_transaction_hash_is_xrpl_pys() -> None:
    from xrpl.core.binarycodec import encode
    from xrpl.models.transactions import Payment
    from xrpl.transaction import sign as sign_transaction

    from adapters.xrpl.chain import transaction_hash

    wallet = WALLETS[CryptoAlgorithm.ED25519]
    tx = Payment(
        account=wallet.classic_address,
        destination="rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh",
        amount="1000",
        sequence=7,
        fee="12",
        last_ledger_sequence=90,
    )
    signed = sign_transaction(tx, wallet)
    assert transaction_hash(encode(signed.to_xrpl())) == signed.get_hash()
