"""Closed ledgers: headers, their hashes, and the transaction records they hold.

A header's hash is computed exactly as rippled computes it from the header fields
(``LWR\\0``, sequence, total drops, parent hash, transaction tree hash, state tree
hash, parent close time, close time, resolution, flags). Both tree hashes are true
SHAMap roots, but over this node's objects, which differ from rippled's in small ways
(single-page directories, no LedgerHashes/Amendments objects), so a state hash equal to
a real network's is not to be expected.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from xrpl.core.binarycodec import encode

from adapters.localnet.xrpl import hashing
from adapters.localnet.xrpl.protocol import RIPPLE_EPOCH_UNIX_S
from adapters.localnet.xrpl.state import JsonObject, LedgerState


@dataclass(frozen=True)
class LedgerHeader:
    sequence: int
    hash: str
    parent_hash: str
    account_hash: str
    transaction_hash: str
    close_time: int  # Ripple-epoch seconds
    parent_close_time: int
    close_time_resolution: int
    close_flags: int
    total_drops: int

    @staticmethod
    def build(
        *,
        sequence: int,
        parent_hash: str,
        account_hash: str,
        transaction_hash: str,
        close_time: int,
        parent_close_time: int,
        close_time_resolution: int,
        total_drops: int,
        close_flags: int = 0,
    ) -> LedgerHeader:
        return LedgerHeader(
            sequence=sequence,
            hash=hashing.ledger_hash(
                sequence=sequence,
                total_drops=total_drops,
                parent_hash=parent_hash,
                transaction_hash=transaction_hash,
                account_hash=account_hash,
                parent_close_time=parent_close_time,
                close_time=close_time,
                close_time_resolution=close_time_resolution,
                close_flags=close_flags,
            ),
            parent_hash=parent_hash,
            account_hash=account_hash,
            transaction_hash=transaction_hash,
            close_time=close_time,
            parent_close_time=parent_close_time,
            close_time_resolution=close_time_resolution,
            close_flags=close_flags,
            total_drops=total_drops,
        )

    def to_rpc(self, api_version: int) -> JsonObject:
        return {
            "account_hash": self.account_hash,
            "close_flags": self.close_flags,
            "close_time": self.close_time,
            "close_time_human": close_time_human(self.close_time),
            "close_time_iso": close_time_iso(self.close_time),
            "close_time_resolution": self.close_time_resolution,
            "closed": True,
            "ledger_hash": self.hash,
            "ledger_index": self.sequence if api_version > 1 else str(self.sequence),
            "parent_close_time": self.parent_close_time,
            "parent_hash": self.parent_hash,
            "total_coins": str(self.total_drops),
            "transaction_hash": self.transaction_hash,
        }

    def to_snapshot(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TxRecord:
    """A transaction as applied: its signed blob, decoded JSON and metadata."""

    hash: str
    blob: str  # upper-case hex of the signed transaction
    tx_json: JsonObject  # without "hash"
    meta: JsonObject
    ledger_sequence: int
    delivered: Any  # JSON amount delivered by a Payment, else None
    accounts: list[str]  # accounts whose history lists this transaction

    @property
    def result(self) -> str:
        return str(self.meta["TransactionResult"])

    def leaf_hash(self) -> bytes:
        return hashing.tx_leaf_hash(
            self.hash, bytes.fromhex(self.blob), bytes.fromhex(encode(self.meta))
        )

    def to_snapshot(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClosedLedger:
    header: LedgerHeader
    tx_hashes: list[str]
    state: LedgerState | None  # None once pruned from history


def close_time_iso(ripple_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ripple_s + RIPPLE_EPOCH_UNIX_S))


def close_time_human(ripple_s: int) -> str:
    stamp = time.strftime("%Y-%b-%d %H:%M:%S", time.gmtime(ripple_s + RIPPLE_EPOCH_UNIX_S))
    return f"{stamp}.000000000 UTC"
