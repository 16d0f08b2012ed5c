"""Snapshots of the ledger in a data directory, so a node survives a restart.

After every ledger close the whole state is written as JSON to a temporary file,
flushed to disk, and renamed over the snapshot: a crash leaves either the old or the
new snapshot, never a torn one. The queue is not saved (as in stellar-core, a
restart forgets transactions that were not yet in a ledger).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from adapters.localnet.stellar.effect_records import Effect
from adapters.localnet.stellar.ledger import LocalLedger
from adapters.localnet.stellar.state import (
    Account,
    ClaimableBalance,
    Claimant,
    DataEntry,
    LedgerRecord,
    Signer,
    TrustLine,
    TxRecord,
)
from adapters.localnet.stellar.xdrutil import AssetKey

SNAPSHOT_NAME = "stellar-ledger.json"
FORMAT_VERSION = 1


class SnapshotError(RuntimeError):
    """The snapshot exists but cannot be used (corrupt, or for another network)."""


def _asset(doc: dict[str, str] | None) -> AssetKey | None:
    return None if doc is None else AssetKey(doc["code"], doc["issuer"])


def save(data_dir: Path, ledger: LocalLedger, clock_offset_s: int) -> None:
    e = ledger.entries
    doc: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "network_passphrase": ledger.passphrase,
        "base_fee": ledger.base_fee,
        "base_reserve": ledger.base_reserve,
        "fee_pool": ledger.fee_pool,
        "clock_offset_s": clock_offset_s,
        "accounts": [asdict(a) for a in e.accounts.values()],
        "trustlines": [asdict(t) for t in e.trustlines.values()],
        "data": [
            {**asdict(d), "value": base64.b64encode(d.value).decode()} for d in e.data.values()
        ],
        "claimable_balances": [asdict(c) for c in e.claimable_balances.values()],
        "ledgers": [asdict(r) for r in ledger.ledgers],
        "transactions": [asdict(ledger.transactions[h]) for h in ledger.tx_hashes],
        "effects": {
            tx_hash: [[asdict(effect) for effect in op] for op in ops]
            for tx_hash, ops in ledger.effects.items()
        },
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / SNAPSHOT_NAME
    temporary = target.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(doc, handle, separators=(",", ":"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def load(data_dir: Path, passphrase: str) -> tuple[LocalLedger, int] | None:
    """The saved ledger and clock offset, or None if there is no snapshot yet."""
    target = data_dir / SNAPSHOT_NAME
    if not target.exists():
        return None
    try:
        doc = json.loads(target.read_text(encoding="utf-8"))
        if doc["format"] != FORMAT_VERSION:
            raise SnapshotError(f"unknown snapshot format {doc['format']!r}")
        if doc["network_passphrase"] != passphrase:
            raise SnapshotError(
                f"{target} holds network {doc['network_passphrase']!r}, not {passphrase!r}"
            )
        ledger = LocalLedger(passphrase, doc["base_fee"], doc["base_reserve"])
        ledger.fee_pool = doc["fee_pool"]
        e = ledger.entries
        e.accounts = {
            a["account_id"]: Account(**{**a, "signers": tuple(Signer(**s) for s in a["signers"])})
            for a in doc["accounts"]
        }
        e.trustlines = {}
        for t in doc["trustlines"]:
            line = TrustLine(**{**t, "asset": _asset(t["asset"])})
            e.trustlines[(line.account_id, line.asset)] = line
        e.data = {
            (d["account_id"], d["name"]): DataEntry(**{**d, "value": base64.b64decode(d["value"])})
            for d in doc["data"]
        }
        e.claimable_balances = {
            c["balance_id"]: ClaimableBalance(
                **{
                    **c,
                    "asset": _asset(c["asset"]),
                    "claimants": tuple(Claimant(**k) for k in c["claimants"]),
                }
            )
            for c in doc["claimable_balances"]
        }
        ledger.ledgers = [LedgerRecord(**r) for r in doc["ledgers"]]
        for t in doc["transactions"]:
            record = TxRecord(**{**t, "participants": tuple(t["participants"])})
            ledger.transactions[record.hash] = record
            ledger.tx_hashes.append(record.hash)
            if record.inner_hash:
                ledger.inner_hashes[record.inner_hash] = record.hash
        # A snapshot from before effects were kept has none: those transactions show none.
        ledger.effects = {
            tx_hash: [[Effect(**effect) for effect in op] for op in ops]
            for tx_hash, ops in doc.get("effects", {}).items()
        }
        # Older ledgers' entries are not saved: a lagging server starts from here.
        ledger.snapshots = {ledger.last_closed.sequence: ledger.entries}
        return ledger, int(doc["clock_offset_s"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"cannot read {target}: {exc}") from exc
