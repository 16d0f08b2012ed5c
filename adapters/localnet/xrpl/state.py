"""Ledger state: objects by index, and the sandbox a transaction applies through.

Objects are JSON dictionaries in rippled's own field names (``LedgerEntryType``,
``Balance``...), so RPC answers, metadata and the binary encoding need no translation.
A stored object is never mutated: ``ApplyView`` hands out copies and records
replacements, which is what lets a closed ledger share objects with its successor and
lets a ``tec`` result roll back a transaction's effects while keeping its fee.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from xrpl.core.binarycodec import encode

from adapters.localnet.xrpl import hashing, protocol

JsonObject = dict[str, Any]

# Objects rippled threads (PreviousTxnID / PreviousTxnLgrSeq name the last transaction
# that touched them). Directories and fee settings are left unthreaded here.
_THREADED_TYPES = frozenset({"AccountRoot", "RippleState", "Escrow", "Ticket", "DepositPreauth"})
_THREAD_FIELDS = ("PreviousTxnID", "PreviousTxnLgrSeq")


class StateEntry:
    """One ledger object, immutable once stored; its SHAMap leaf hash is computed once."""

    __slots__ = ("_leaf_hash", "data", "index")

    def __init__(self, index: str, data: JsonObject) -> None:
        self.index = index
        self.data = data
        self._leaf_hash: bytes | None = None

    def leaf_hash(self) -> bytes:
        if self._leaf_hash is None:
            serialized = bytes.fromhex(encode(self.data))
            self._leaf_hash = hashing.state_leaf_hash(self.index, serialized)
        return self._leaf_hash


class LedgerState(Mapping[str, StateEntry]):
    """A ledger's objects. Copying is shallow: entries are shared, never mutated."""

    def __init__(self, entries: dict[str, StateEntry] | None = None) -> None:
        self._entries: dict[str, StateEntry] = entries if entries is not None else {}

    def __getitem__(self, index: str) -> StateEntry:
        return self._entries[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def copy(self) -> LedgerState:
        return LedgerState(dict(self._entries))

    def read(self, index: str) -> JsonObject | None:
        entry = self._entries.get(index)
        return copy.deepcopy(entry.data) if entry is not None else None

    def put(self, index: str, data: JsonObject) -> None:
        self._entries[index] = StateEntry(index, data)

    def remove(self, index: str) -> None:
        del self._entries[index]

    def account_hash(self) -> str:
        return hashing.shamap_root({i: e.leaf_hash() for i, e in self._entries.items()})


class ApplyView:
    """A transaction's sandbox over a ``LedgerState``; ``commit`` writes it through."""

    def __init__(self, base: LedgerState) -> None:
        self._base = base
        self._changes: dict[str, JsonObject | None] = {}

    def read(self, index: str) -> JsonObject | None:
        if index in self._changes:
            changed = self._changes[index]
            return copy.deepcopy(changed) if changed is not None else None
        return self._base.read(index)

    def exists(self, index: str) -> bool:
        if index in self._changes:
            return self._changes[index] is not None
        return index in self._base

    def write(self, index: str, data: JsonObject) -> None:
        """Insert or replace an object (the view keeps its own copy)."""
        self._changes[index] = copy.deepcopy(data)

    def erase(self, index: str) -> None:
        assert self.exists(index), f"erasing a missing object {index}"
        self._changes[index] = None

    def checkpoint(self) -> dict[str, JsonObject | None]:
        return dict(self._changes)

    def restore(self, checkpoint: dict[str, JsonObject | None]) -> None:
        self._changes = dict(checkpoint)

    def commit(self, tx_hash: str, ledger_sequence: int) -> list[JsonObject]:
        """Write the changes into the base state; return metadata's ``AffectedNodes``.

        Threaded objects get ``PreviousTxnID``/``PreviousTxnLgrSeq`` of this transaction;
        a modified node reports the values it replaced in ``PreviousFields``.
        """
        affected: list[JsonObject] = []
        for index in sorted(self._changes):
            after = self._changes[index]
            before_entry = self._base.get(index)
            before = before_entry.data if before_entry is not None else None
            if before is None and after is None:
                continue
            if before is not None and after is not None and before == after:
                continue
            entry_type = (after or before or {})["LedgerEntryType"]
            node: JsonObject = {"LedgerEntryType": entry_type, "LedgerIndex": index}
            if before is None:
                assert after is not None
                node["NewFields"] = _fields(after)
                affected.append({"CreatedNode": node})
            elif after is None:
                node["FinalFields"] = _fields(before)
                affected.append({"DeletedNode": node})
            else:
                node["FinalFields"] = _fields(after)
                previous = {
                    k: v
                    for k, v in before.items()
                    if k not in _THREAD_FIELDS and k != "LedgerEntryType" and after.get(k) != v
                }
                if previous:
                    node["PreviousFields"] = previous
                for field in _THREAD_FIELDS:
                    if field in before:
                        node[field] = before[field]
                affected.append({"ModifiedNode": node})
            if after is None:
                self._base.remove(index)
                continue
            if entry_type in _THREADED_TYPES:
                after = {**after, "PreviousTxnID": tx_hash, "PreviousTxnLgrSeq": ledger_sequence}
            self._base.put(index, after)
        self._changes = {}
        return affected


def _fields(data: Mapping[str, Any]) -> JsonObject:
    return {
        k: copy.deepcopy(v)
        for k, v in data.items()
        if k != "LedgerEntryType" and k not in _THREAD_FIELDS
    }


# --- owner directories ---------------------------------------------------------------
# rippled pages an owner directory every 32 entries; this node keeps a single root page
# of unlimited size, so every OwnerNode/DestinationNode/LowNode/HighNode is page 0.


def dir_insert(view: ApplyView, owner: str, index: str) -> str:
    """Add ``index`` to ``owner``'s directory; return the page (always the root here)."""
    root = hashing.owner_dir_index(owner)
    page = view.read(root) or {
        "LedgerEntryType": "DirectoryNode",
        "Flags": 0,
        "Owner": owner,
        "RootIndex": root,
        "Indexes": [],
    }
    if index not in page["Indexes"]:
        page["Indexes"].append(index)
    view.write(root, page)
    return protocol.ROOT_PAGE


def dir_remove(view: ApplyView, owner: str, index: str) -> None:
    root = hashing.owner_dir_index(owner)
    page = view.read(root)
    assert page is not None, "owner has no directory"
    assert index in page["Indexes"], "object missing from its directory"
    page["Indexes"].remove(index)
    # rippled keeps an emptied root page (dirRemove with keepRoot), so do we.
    view.write(root, page)


def owned_objects(state_read: ApplyView | LedgerState, owner: str) -> list[str]:
    """Indexes in ``owner``'s directory, in insertion order."""
    page = state_read.read(hashing.owner_dir_index(owner))
    return list(page["Indexes"]) if page is not None else []
