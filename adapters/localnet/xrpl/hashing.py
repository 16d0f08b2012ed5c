"""Hashes and ledger object indexes ("keylets"), computed as rippled computes them.

- ``sha512_half``: the first 32 bytes of SHA-512, the protocol's hash function.
- Object indexes: SHA-512Half of a two-byte name space and the object's key fields, so
  the ``index`` of an AccountRoot, trust line, escrow or ticket here equals the one on
  any XRP Ledger.
- ``shamap_root``: the root hash of rippled's SHAMap (a radix-16 tree over 256-bit keys),
  used for a ledger's ``account_hash`` and ``transaction_hash``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from xrpl.core.addresscodec import decode_classic_address
from xrpl.core.binarycodec.types.currency import Currency

from adapters.localnet.xrpl import protocol

_ZERO_256 = bytes(32)


def sha512_half(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()[:32]


def account_id(address: str) -> bytes:
    """The 20-byte AccountID behind a classic address; ValueError if malformed."""
    return decode_classic_address(address)


def currency_code(currency: str) -> bytes:
    """The 160-bit currency code (ISO-style three letters or 40 hex digits)."""
    return bytes(Currency.from_value(currency))


def _index(space: bytes, *parts: bytes) -> str:
    return sha512_half(space + b"".join(parts)).hex().upper()


def account_index(address: str) -> str:
    return _index(protocol.SPACE_ACCOUNT, account_id(address))


def owner_dir_index(address: str) -> str:
    return _index(protocol.SPACE_OWNER_DIR, account_id(address))


def trust_line_index(a: str, b: str, currency: str) -> str:
    # The pair is ordered by AccountID (as a 160-bit number), so both sides name one line.
    low, high = sorted((account_id(a), account_id(b)))
    return _index(protocol.SPACE_TRUST_LINE, low, high, currency_code(currency))


def escrow_index(owner: str, sequence: int) -> str:
    return _index(protocol.SPACE_ESCROW, account_id(owner), sequence.to_bytes(4, "big"))


def ticket_index(owner: str, ticket_sequence: int) -> str:
    return _index(protocol.SPACE_TICKET, account_id(owner), ticket_sequence.to_bytes(4, "big"))


def deposit_preauth_index(owner: str, authorized: str) -> str:
    """The DepositPreauth by which ``owner`` lets ``authorized`` deposit to it."""
    return _index(protocol.SPACE_DEPOSIT_PREAUTH, account_id(owner), account_id(authorized))


def fee_settings_index() -> str:
    return _index(protocol.SPACE_FEE_SETTINGS)


def is_low_account(a: str, b: str) -> bool:
    """True if ``a`` is the low side of the trust line between ``a`` and ``b``."""
    return account_id(a) < account_id(b)


def transaction_id(signed_blob: bytes) -> str:
    """The transaction hash: SHA-512Half of ``TXN\\0`` and the signed binary blob."""
    return sha512_half(protocol.PREFIX_TRANSACTION_ID + signed_blob).hex().upper()


def vl_prefix(length: int) -> bytes:
    """The protocol's variable-length prefix (1 to 3 bytes) for a blob of ``length``."""
    if length <= 192:
        return bytes([length])
    if length <= 12_480:
        rest = length - 193
        return bytes([193 + (rest >> 8), rest & 0xFF])
    if length <= 918_744:
        rest = length - 12_481
        return bytes([241 + (rest >> 16), (rest >> 8) & 0xFF, rest & 0xFF])
    raise ValueError(f"blob of {length} bytes is too long for a VL prefix")


def state_leaf_hash(index: str, serialized: bytes) -> bytes:
    return sha512_half(protocol.PREFIX_LEAF_NODE + serialized + bytes.fromhex(index))


def tx_leaf_hash(tx_hash: str, tx_blob: bytes, meta_blob: bytes) -> bytes:
    return sha512_half(
        protocol.PREFIX_TX_NODE
        + vl_prefix(len(tx_blob))
        + tx_blob
        + vl_prefix(len(meta_blob))
        + meta_blob
        + bytes.fromhex(tx_hash)
    )


def shamap_root(leaves: Mapping[str, bytes]) -> str:
    """Root hash of a SHAMap holding ``leaves`` (index -> leaf hash).

    A leaf sits at the shallowest depth where no other key shares its nibbles; every
    inner node hashes ``MIN\\0`` and its sixteen child hashes (zero for an empty branch).
    The empty map hashes to zero.
    """
    keyed = sorted((bytes.fromhex(index), leaf) for index, leaf in leaves.items())
    return _subtree(keyed, 0).hex().upper()


def _subtree(items: list[tuple[bytes, bytes]], depth: int) -> bytes:
    if not items:
        return _ZERO_256
    if len(items) == 1:
        return items[0][1]
    branches: list[list[tuple[bytes, bytes]]] = [[] for _ in range(16)]
    for key, leaf in items:
        byte = key[depth // 2]
        nibble = byte >> 4 if depth % 2 == 0 else byte & 0x0F
        branches[nibble].append((key, leaf))
    children = b"".join(_subtree(branch, depth + 1) for branch in branches)
    return sha512_half(protocol.PREFIX_INNER_NODE + children)


def ledger_hash(
    *,
    sequence: int,
    total_drops: int,
    parent_hash: str,
    transaction_hash: str,
    account_hash: str,
    parent_close_time: int,
    close_time: int,
    close_time_resolution: int,
    close_flags: int,
) -> str:
    """The ledger hash over the header fields, in rippled's order and widths."""
    header = (
        protocol.PREFIX_LEDGER_MASTER
        + sequence.to_bytes(4, "big")
        + total_drops.to_bytes(8, "big")
        + bytes.fromhex(parent_hash)
        + bytes.fromhex(transaction_hash)
        + bytes.fromhex(account_hash)
        + parent_close_time.to_bytes(4, "big")
        + close_time.to_bytes(4, "big")
        + close_time_resolution.to_bytes(1, "big")
        + close_flags.to_bytes(1, "big")
    )
    return sha512_half(header).hex().upper()
