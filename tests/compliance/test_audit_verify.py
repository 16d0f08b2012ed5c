"""The compliance chain verifier on entries alone: no database between it and the hashes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from compliance.audit import ComplianceEntry, verify


def _chain(length: int) -> list[ComplianceEntry]:
    entries: list[ComplianceEntry] = []
    prev_hash: str | None = None
    for seq in range(1, length + 1):
        entry = ComplianceEntry(
            seq=seq,
            recorded_at=datetime(2026, 1, 1, 12, 0, seq, tzinfo=UTC),
            actor="officer-ada",
            key_id="key-ada-1",
            action="kyc_update",
            subject_kind="kyc",
            subject="party-northwind",
            subject_version=seq,
            payload='{"risk_rating":"low"}',
            prev_hash=prev_hash,
            entry_hash="",
            encoding_version=2,
        )
        entry = replace(entry, entry_hash=entry.computed_hash())
        entries.append(entry)
        prev_hash = entry.entry_hash
    return entries


def test_an_intact_chain_verifies() -> None:
    report = verify(_chain(3))
    assert report.ok
    assert report.entries == 3


def test_an_edited_entry_is_the_first_break() -> None:
    entries = _chain(3)
    entries[1] = replace(entries[1], actor="mallory")
    report = verify(entries)
    assert report.breaks == ["compliance entry 2: entry_hash does not match its contents (edited)"]


def test_a_missing_entry_breaks_the_chain() -> None:
    entries = _chain(3)
    del entries[1]
    assert verify(entries).breaks == ["compliance entry 3: expected seq 2"]
