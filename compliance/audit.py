"""Independent verification of the compliance audit chain (``compliance_audit``).

One chain, ordered by ``seq``, holds the changes that are not tied to one commitment:
KYC record creations and updates, officer registrations and updates, sanctions list
loads. The database assigns ``seq``, ``prev_hash`` and ``entry_hash`` on insert
(migration 0002); this module recomputes each hash from the canonical encoding::

    b"settlement-compliance-audit/v1\\n" + field(seq) + field(recorded_at) + field(actor)
      + field(action) + field(subject_kind) + field(subject) + field(subject_version)
      + field(payload) + field(prev_hash)

with ``field`` the netstring of ``ledger.audit`` (``b"~,"`` for NULL, else
``<octets>:<utf-8>,``) and ``recorded_at`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from ledger.audit import format_timestamp
from ledger.errors import translate

ENCODING_TAG = b"settlement-compliance-audit/v1\n"


@dataclass(frozen=True)
class ComplianceEntry:
    seq: int
    recorded_at: datetime
    actor: str
    action: str
    subject_kind: str
    subject: str
    subject_version: int
    payload: str
    prev_hash: str | None
    entry_hash: str

    def computed_hash(self) -> str:
        parts = (
            self.seq,
            format_timestamp(self.recorded_at),
            self.actor,
            self.action,
            self.subject_kind,
            self.subject,
            self.subject_version,
            self.payload,
            self.prev_hash,
        )
        return hashlib.sha256(ENCODING_TAG + b"".join(_field(p) for p in parts)).hexdigest()


def _field(value: str | int | None) -> bytes:
    if value is None:
        return b"~,"
    encoded = str(value).encode("utf-8")
    return str(len(encoded)).encode("ascii") + b":" + encoded + b","


@dataclass
class ComplianceVerifyReport:
    entries: int = 0
    breaks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


def read_entries(
    connection: Connection, *, subject_kind: str | None = None, subject: str | None = None
) -> list[ComplianceEntry]:
    try:
        rows = connection.execute(
            text(
                "SELECT seq, recorded_at, actor, action, subject_kind, subject, subject_version,"
                " payload, prev_hash, entry_hash FROM compliance_audit"
                " WHERE (CAST(:kind AS text) IS NULL OR subject_kind = :kind)"
                "   AND (CAST(:subject AS text) IS NULL OR subject = :subject)"
                " ORDER BY seq"
            ),
            {"kind": subject_kind, "subject": subject},
        )
        return [ComplianceEntry(*r) for r in rows]
    except SQLAlchemyError as exc:
        raise translate(exc) from exc


def verify(connection: Connection) -> ComplianceVerifyReport:
    """Recompute the whole chain; report the first break (edited, missing, reordered)."""
    report = ComplianceVerifyReport()
    prev_hash: str | None = None
    for expected_seq, entry in enumerate(read_entries(connection), start=1):
        report.entries += 1
        if entry.seq != expected_seq:
            report.breaks.append(f"compliance entry {entry.seq}: expected seq {expected_seq}")
            break
        if entry.prev_hash != prev_hash:
            report.breaks.append(f"compliance entry {entry.seq}: prev_hash does not match")
            break
        if entry.computed_hash() != entry.entry_hash:
            report.breaks.append(
                f"compliance entry {entry.seq}: entry_hash does not match its contents (edited)"
            )
            break
        prev_hash = entry.entry_hash
    return report
