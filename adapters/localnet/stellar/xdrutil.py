"""Conversions between stellar-sdk XDR objects and the plain values the node stores.

The node keeps account ids as G... strkeys and assets as `AssetKey`; this module is
the one place that knows how those look inside XDR.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from stellar_sdk import Keypair, StrKey
from stellar_sdk import xdr as x

NATIVE = "native"


@dataclass(frozen=True, order=True)
class AssetKey:
    """A credit asset (code + issuer). The native asset is represented by `None`."""

    code: str
    issuer: str

    @property
    def asset_type(self) -> str:
        return "credit_alphanum4" if len(self.code) <= 4 else "credit_alphanum12"

    def canonical(self) -> str:
        """Horizon's "CODE:ISSUER" form, used in claimable balances and filters."""
        return f"{self.code}:{self.issuer}"


Asset = AssetKey | None


def asset_canonical(asset: Asset) -> str:
    return NATIVE if asset is None else asset.canonical()


def asset_fields(asset: Asset, prefix: str = "") -> dict[str, str]:
    """Horizon's base.Asset: asset_type, and code and issuer unless native (each key
    with a prefix such as "source_")."""
    if asset is None:
        return {f"{prefix}asset_type": "native"}
    return {
        f"{prefix}asset_type": asset.asset_type,
        f"{prefix}asset_code": asset.code,
        f"{prefix}asset_issuer": asset.issuer,
    }


def network_id(passphrase: str) -> bytes:
    """SHA-256 of the passphrase: the network id every signature commits to."""
    return hashlib.sha256(passphrase.encode()).digest()


def root_keypair(passphrase: str) -> Keypair:
    """stellar-core's genesis (root) account: its seed is the network id itself."""
    return Keypair.from_raw_ed25519_seed(network_id(passphrase))


def account_id_str(account_id: x.AccountID) -> str:
    key = account_id.account_id.ed25519
    assert key is not None  # ed25519 is the only PublicKey type
    return StrKey.encode_ed25519_public_key(key.uint256)


def muxed_to_account_id(muxed: x.MuxedAccount) -> str:
    """The G... account behind a (possibly muxed M...) account; ledger entries ignore the id."""
    if muxed.type == x.CryptoKeyType.KEY_TYPE_MUXED_ED25519:
        assert muxed.med25519 is not None
        return StrKey.encode_ed25519_public_key(muxed.med25519.ed25519.uint256)
    assert muxed.ed25519 is not None
    return StrKey.encode_ed25519_public_key(muxed.ed25519.uint256)


def account_id_xdr(account_id: str) -> x.AccountID:
    return Keypair.from_public_key(account_id).xdr_account_id()


def _code_from_bytes(raw: bytes) -> str | None:
    """Decode an asset code; None when it breaks stellar-core's isAssetValid rules."""
    stripped = raw.rstrip(b"\x00")
    if b"\x00" in stripped or not stripped:
        return None
    if not all(chr(c).isascii() and chr(c).isalnum() for c in stripped):
        return None
    return stripped.decode("ascii")


def asset_from_xdr(asset: x.Asset | x.ChangeTrustAsset) -> Asset:
    """Native -> None, credit -> AssetKey. Raises ValueError for an invalid asset
    (bad code, wrong length for its type, pool shares), which callers map to *_MALFORMED."""
    kind = asset.type
    if kind == x.AssetType.ASSET_TYPE_NATIVE:
        return None
    if kind == x.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4:
        assert asset.alpha_num4 is not None
        code = _code_from_bytes(asset.alpha_num4.asset_code.asset_code4)
        if code is None:
            raise ValueError("invalid alphanum4 code")
        return AssetKey(code, account_id_str(asset.alpha_num4.issuer))
    if kind == x.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12:
        assert asset.alpha_num12 is not None
        code = _code_from_bytes(asset.alpha_num12.asset_code.asset_code12)
        # alphanum12 codes must be 5..12 characters, so no code has two encodings.
        if code is None or len(code) < 5:
            raise ValueError("invalid alphanum12 code")
        return AssetKey(code, account_id_str(asset.alpha_num12.issuer))
    raise ValueError(f"unsupported asset type {kind!r}")


def asset_to_xdr(asset: Asset) -> x.Asset:
    if asset is None:
        return x.Asset(x.AssetType.ASSET_TYPE_NATIVE)
    issuer = account_id_xdr(asset.issuer)
    if len(asset.code) <= 4:
        return x.Asset(
            x.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4,
            alpha_num4=x.AlphaNum4(x.AssetCode4(asset.code.encode().ljust(4, b"\x00")), issuer),
        )
    return x.Asset(
        x.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12,
        alpha_num12=x.AlphaNum12(x.AssetCode12(asset.code.encode().ljust(12, b"\x00")), issuer),
    )


def parse_asset_param(text: str) -> Asset:
    """Horizon's query form of an asset: "native" or "CODE:ISSUER"."""
    if text == NATIVE:
        return None
    code, sep, issuer = text.partition(":")
    if not sep or not StrKey.is_valid_ed25519_public_key(issuer) or not 1 <= len(code) <= 12:
        raise ValueError(f"invalid asset {text!r}")
    return AssetKey(code, issuer)


def signer_key_str(key: x.SignerKey) -> str:
    """A signer key as Horizon shows it: G... (ed25519), T... (pre-auth tx), X... (hash(x))."""
    kind = key.type
    if kind == x.SignerKeyType.SIGNER_KEY_TYPE_ED25519:
        assert key.ed25519 is not None
        return StrKey.encode_ed25519_public_key(key.ed25519.uint256)
    if kind == x.SignerKeyType.SIGNER_KEY_TYPE_PRE_AUTH_TX:
        assert key.pre_auth_tx is not None
        return StrKey.encode_pre_auth_tx(key.pre_auth_tx.uint256)
    if kind == x.SignerKeyType.SIGNER_KEY_TYPE_HASH_X:
        assert key.hash_x is not None
        return StrKey.encode_sha256_hash(key.hash_x.uint256)
    raise ValueError(f"unsupported signer key type {kind!r}")


def signer_type_name(key: str) -> str:
    """Horizon's signer "type" field for a strkey."""
    return {
        "G": "ed25519_public_key",
        "T": "preauth_tx",
        "X": "sha256_hash",
    }[key[0]]


def signer_key_raw(key: str) -> bytes:
    """The 32 bytes behind a signer strkey (public key, tx hash or sha256(x))."""
    if key.startswith("G"):
        return StrKey.decode_ed25519_public_key(key)
    if key.startswith("T"):
        return StrKey.decode_pre_auth_tx(key)
    return StrKey.decode_sha256_hash(key)


def claimable_balance_id_hex(source_account: str, seq_num: int, op_index: int) -> str:
    """stellar-core's balance id: SHA-256 of HashIDPreimage(OP_ID, tx source, tx seq, op index),
    rendered as Horizon does: hex of the whole ClaimableBalanceID (type word + hash)."""
    preimage = x.HashIDPreimage(
        type=x.EnvelopeType.ENVELOPE_TYPE_OP_ID,
        operation_id=x.HashIDPreimageOperationID(
            source_account=account_id_xdr(source_account),
            seq_num=x.SequenceNumber(x.Int64(seq_num)),
            op_num=x.Uint32(op_index),
        ),
    )
    balance_id = x.ClaimableBalanceID(
        type=x.ClaimableBalanceIDType.CLAIMABLE_BALANCE_ID_TYPE_V0,
        v0=x.Hash(hashlib.sha256(preimage.to_xdr_bytes()).digest()),
    )
    return balance_id.to_xdr_bytes().hex()


def claimable_balance_id_xdr(balance_id_hex: str) -> x.ClaimableBalanceID:
    return x.ClaimableBalanceID.from_xdr_bytes(bytes.fromhex(balance_id_hex))


def normalize_balance_id(text: str) -> str | None:
    """Accept the 72-hex form Horizon prints, the bare 64-hex hash, or a B... strkey."""
    text = text.strip()
    try:
        if text.startswith("B"):
            raw = StrKey.decode_claimable_balance(text)
            # The strkey payload is a one-byte type (0 = V0) followed by the hash.
            return "00000000" + raw[1:].hex()
        raw_hex = bytes.fromhex(text).hex()
    except ValueError:
        return None
    if len(raw_hex) == 64:
        return "00000000" + raw_hex
    if len(raw_hex) == 72 and raw_hex.startswith("00000000"):
        return raw_hex
    return None
