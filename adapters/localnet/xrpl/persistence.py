"""Snapshots of a node's closed ledgers in ``data_dir``, written atomically.

After every close the node writes ``ledger.json``: all headers, all closed
transactions, the last closed state and the clock offset. It is written to a temporary
file, flushed to disk and renamed over the old one, so a crash leaves either the old or
the new snapshot, never a torn one. The open ledger is not saved: as with rippled, what
was only in the open ledger is gone after a restart and must be resubmitted.
States of older ledgers are not saved either; after a restart they answer
``lgrNotFound``, while their headers and transactions remain.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from adapters.localnet.xrpl.engine import LedgerChain
from adapters.localnet.xrpl.ledger import LedgerHeader, TxRecord
from adapters.localnet.xrpl.state import LedgerState

SNAPSHOT_NAME = "ledger.json"
FORMAT_VERSION = 1


def save(data_dir: Path, chain: LedgerChain) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "format": FORMAT_VERSION,
        "clock_offset_s": chain.clock.offset_s,
        **chain.snapshot(),
    }
    target = data_dir / SNAPSHOT_NAME
    temporary = target.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(document, handle, separators=(",", ":"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def load(data_dir: Path) -> dict[str, Any] | None:
    """The saved document, or None if there is none yet."""
    path = data_dir / SNAPSHOT_NAME
    if not path.exists():
        return None
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if document.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported snapshot format {document.get('format')!r}")
    return document


def restore(chain: LedgerChain, document: dict[str, Any]) -> None:
    headers = [LedgerHeader(**h) for h in document["headers"]]
    txs = [TxRecord(**t) for t in document["transactions"]]
    state = LedgerState()
    for index, data in document["state"].items():
        state.put(index, data)
    if state.account_hash() != headers[-1].account_hash:
        raise ValueError("snapshot state does not match its ledger's account hash")
    chain.restore(headers, txs, state)
