"""Independent verification of the compliance audit chain (``compliance_audit``), from
the entries as read (``compliance.records.read_audit``): nothing here touches the
database, so the check depends on no SQL of the engine but the one read.

One chain, ordered by ``seq``, holds the changes that are not tied to one commitment:
KYC record creations and updates, officer registrations and updates, sanctions list
loads, ledger account registrations. As in ``ledger.audit``, ``actor`` is the person (or
the operator) who acted and ``key_id`` the API key that signed the request (None when no
key signed). The database assigns ``seq``, ``prev_hash``, ``encoding_version`` and
``entry_hash`` on insert (migrations 0002 and 0012); this module recomputes each hash
from the canonical encoding the entry names. Version 2 (every entry since 0012)::

    b"settlement-compliance-audit/v2\\n" + field(seq) + field(recorded_at) + field(actor)
      + field(key_id) + field(action) + field(subject_kind) + field(subject)
      + field(subject_version) + field(payload) + field(prev_hash)

Version 1 (entries written before 0012) is the same without ``field(key_id)``, after
``b"settlement-compliance-audit/v1\\n"``. ``field`` is the netstring of ``ledger.audit``
(``b"~,"`` for NULL, else ``<octets>:<utf-8>,``) and ``recorded_at`` is in UTC as
``YYYY-MM-DDTHH:MM:SS.ffffffZ``. The version is guarded as in ``ledger.audit``: it is
hashed and stored, a version 1 entry names no key, and it never goes down the chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ledger.audit import canonical_fields, encoding_problem, format_timestamp

#: the first line of the hashed bytes, per canonical encoding version
ENCODING_TAGS = {
    1: b"settlement-compliance-audit/v1\n",
    2: b"settlement-compliance-audit/v2\n",
}


@dataclass(frozen=True)
class ComplianceEntry:
    seq: int
    recorded_at: datetime
    #: who acted: a person or an operator
    actor: str
    #: the API key that signed the request; None when no key signed
    key_id: str | None
    action: str
    subject_kind: str
    subject: str
    subject_version: int
    payload: str
    prev_hash: str | None
    entry_hash: str
    #: the canonical encoding ``entry_hash`` was computed with (1 or 2)
    encoding_version: int

    def canonical_bytes(self) -> bytes:
        """The bytes hashed, in the encoding the entry names; ``ValueError`` for a
        version this module does not know."""
        tag = ENCODING_TAGS.get(self.encoding_version)
        if tag is None:
            raise ValueError(f"unknown canonical encoding version {self.encoding_version}")
        key: tuple[str | None, ...] = (self.key_id,) if self.encoding_version >= 2 else ()
        parts = (
            self.seq,
            format_timestamp(self.recorded_at),
            self.actor,
            *key,
            self.action,
            self.subject_kind,
            self.subject,
            self.subject_version,
            self.payload,
            self.prev_hash,
        )
        return canonical_fields(tag, parts)

    def computed_hash(self) -> str:
        return hashlib.sha256(self.canonical_bytes()).hexdigest()


@dataclass
class ComplianceVerifyReport:
    entries: int = 0
    breaks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


def verify(entries: Iterable[ComplianceEntry]) -> ComplianceVerifyReport:
    """Recompute the whole chain from its entries in ``seq`` order; report the first
    break (edited, missing, reordered, relabelled to another encoding version)."""
    report = ComplianceVerifyReport()
    prev_hash: str | None = None
    prior_encoding = 1
    for expected_seq, entry in enumerate(entries, start=1):
        report.entries += 1
        problem = _problem(entry, expected_seq, prev_hash, prior_encoding)
        if problem is not None:
            report.breaks.append(f"compliance entry {entry.seq}: {problem}")
            break
        prev_hash = entry.entry_hash
        prior_encoding = entry.encoding_version
    return report


def _problem(
    entry: ComplianceEntry, expected_seq: int, prev_hash: str | None, prior_encoding: int
) -> str | None:
    if entry.seq != expected_seq:
        return f"expected seq {expected_seq}"
    if entry.prev_hash != prev_hash:
        return "prev_hash does not match"
    problem = encoding_problem(entry.encoding_version, entry.key_id, prior_encoding)
    if problem is not None:
        return problem
    if entry.computed_hash() != entry.entry_hash:
        return "entry_hash does not match its contents (edited)"
    return None
