"""The append-only, hash-chained audit log, and its independent verification.

Each commitment has its own chain. The database assigns ``seq``, ``prev_hash`` and
``entry_hash`` on insert (trigger ``audit_log_chain``); this module recomputes every
hash in Python from the documented canonical encoding, so a verifier need not trust the
database's own functions.

Canonical encoding, version 1 (identical to ``audit_entry_hash`` in migration 0001)::

    b"settlement-audit/v1\\n" + field(commitment_id) + field(seq) + field(recorded_at)
      + field(actor) + field(action) + field(from_state) + field(to_state)
      + field(commitment_version) + field(idempotency_key) + field(payload) + field(chain)
      + field(tx_hash) + field(ledger_index) + field(ledger_hash) + field(prev_hash)

    field(None) = b"~,"
    field(v)    = str(len(b)).encode() + b":" + b + b","   where b = text(v).encode("utf-8")

Texts: a UUID in lowercase hyphenated form, integers in decimal, ``recorded_at`` in UTC
as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, ``payload`` as canonical JSON (keys sorted, no
whitespace, UTF-8, no floats). ``entry_hash`` is the lowercase hex SHA-256 of the bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from ledger.errors import translate

ENCODING_TAG = b"settlement-audit/v1\n"


def canonical_json(value: Mapping[str, Any]) -> str:
    """Canonical JSON text of a payload: sorted keys, no whitespace, Decimals as strings.

    Floats are refused (``TypeError``): a payload that carries money must not round.
    """
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=_json_default,
        allow_nan=False,
    )


def _json_default(value: object) -> str:
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    raise TypeError(
        f"audit payloads take str, int, bool, Decimal, UUID, datetime; not {type(value)}"
    )


def _refuse_floats(value: object) -> None:
    if isinstance(value, float):
        raise TypeError("audit payloads never carry floats")
    if isinstance(value, Mapping):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item)


def payload_text(value: Mapping[str, Any] | None) -> str:
    payload = dict(value or {})
    _refuse_floats(payload)
    return canonical_json(payload)


def format_timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _field(value: str | int | None) -> bytes:
    if value is None:
        return b"~,"
    encoded = str(value).encode("utf-8")
    return str(len(encoded)).encode("ascii") + b":" + encoded + b","


@dataclass(frozen=True)
class AuditEntry:
    commitment_id: UUID
    seq: int
    recorded_at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str | None
    commitment_version: int | None
    idempotency_key: str | None
    payload: str
    chain: str | None
    tx_hash: str | None
    ledger_index: int | None
    ledger_hash: str | None
    prev_hash: str | None
    entry_hash: str

    def canonical_bytes(self) -> bytes:
        return ENCODING_TAG + b"".join(
            _field(v)
            for v in (
                str(self.commitment_id),
                self.seq,
                format_timestamp(self.recorded_at),
                self.actor,
                self.action,
                self.from_state,
                self.to_state,
                self.commitment_version,
                self.idempotency_key,
                self.payload,
                self.chain,
                self.tx_hash,
                self.ledger_index,
                self.ledger_hash,
                self.prev_hash,
            )
        )

    def computed_hash(self) -> str:
        return hashlib.sha256(self.canonical_bytes()).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    commitment_id: UUID
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"entry {self.seq}" if self.seq is not None else "chain"
        return f"commitment {self.commitment_id} {where}: {self.problem}"


@dataclass
class VerifyReport:
    chains: int = 0
    entries: int = 0
    ledger_refs_checked: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "chains": self.chains,
            "entries": self.entries,
            "ledger_refs_checked": self.ledger_refs_checked,
            "breaks": [
                {"commitment_id": str(b.commitment_id), "seq": b.seq, "problem": b.problem}
                for b in self.breaks
            ],
        }


#: Checks one ledger reference (chain, tx_hash, ledger_index, ledger_hash) against the
#: ledger it names; returns None if it resolves, else what is wrong.
LedgerRefCheck = Callable[[str, str, int | None, str | None], str | None]

_ENTRY_COLUMNS = (
    "commitment_id, seq, recorded_at, actor, action, from_state, to_state, commitment_version,"
    " idempotency_key, payload, chain, tx_hash, ledger_index, ledger_hash, prev_hash, entry_hash"
)


def read_chain(connection: Connection, commitment_id: UUID) -> list[AuditEntry]:
    try:
        rows = connection.execute(
            text(f"SELECT {_ENTRY_COLUMNS} FROM audit_log WHERE commitment_id = :id ORDER BY seq"),
            {"id": commitment_id},
        )
        return [AuditEntry(*row) for row in rows]
    except SQLAlchemyError as exc:
        raise translate(exc) from exc


def verify_chain(
    commitment_id: UUID,
    entries: Iterable[AuditEntry],
    *,
    current: tuple[int, str] | None,
    check_ledger_ref: LedgerRefCheck | None = None,
    report: VerifyReport | None = None,
) -> VerifyReport:
    """Verify one commitment's chain; record its first break (if any) in the report.

    ``current`` is the commitment row's (version, state): the chain's last state change
    must match it, which reveals a deleted tail (a hash chain alone cannot).
    """
    report = report if report is not None else VerifyReport()
    report.chains += 1
    prev_hash: str | None = None
    expected_seq = 1
    last_versioned: AuditEntry | None = None
    count = 0

    def broken(seq: int | None, problem: str) -> VerifyReport:
        report.breaks.append(ChainBreak(commitment_id, seq, problem))
        return report

    for entry in entries:
        count += 1
        report.entries += 1
        if entry.seq != expected_seq:
            return broken(entry.seq, f"expected seq {expected_seq}: an entry is missing or moved")
        if entry.prev_hash != prev_hash:
            return broken(entry.seq, "prev_hash does not match the previous entry's hash")
        if entry.computed_hash() != entry.entry_hash:
            return broken(entry.seq, "entry_hash does not match its contents (edited)")
        try:
            canonical = canonical_json(json.loads(entry.payload))
        except (ValueError, TypeError):
            canonical = None
        if canonical != entry.payload:
            return broken(entry.seq, "payload is not canonical JSON")
        if entry.tx_hash is not None and check_ledger_ref is not None:
            report.ledger_refs_checked += 1
            problem = check_ledger_ref(
                entry.chain or "", entry.tx_hash, entry.ledger_index, entry.ledger_hash
            )
            if problem is not None:
                return broken(entry.seq, f"ledger reference: {problem}")
        if entry.commitment_version is not None:
            last_versioned = entry
        prev_hash = entry.entry_hash
        expected_seq += 1

    if count == 0:
        return broken(None, "commitment has no audit entries")
    if (
        current is not None
        and last_versioned is not None
        and ((last_versioned.commitment_version, last_versioned.to_state) != current)
    ):
        return broken(
            None,
            f"commitment is at version {current[0]} ({current[1]}) but its last "
            f"audited change is version {last_versioned.commitment_version} "
            f"({last_versioned.to_state})",
        )
    return report


def verify_all(
    connection: Connection,
    *,
    check_ledger_ref: LedgerRefCheck | None = None,
    commitment_ids: Iterable[UUID] | None = None,
) -> VerifyReport:
    """Recompute every chain (or those of ``commitment_ids``) and return the breaks found."""
    report = VerifyReport()
    try:
        where = "" if commitment_ids is None else "WHERE c.id = ANY(:ids)"
        params: dict[str, Any] = {} if commitment_ids is None else {"ids": list(commitment_ids)}
        commitments = connection.execute(
            text(
                f"SELECT c.id, c.version, c.state FROM commitments c {where}"
                " ORDER BY c.created_at, c.id"
            ),
            params,
        ).all()
        entries_by_commitment: dict[UUID, list[AuditEntry]] = {}
        ids = [row[0] for row in commitments]
        for start in range(0, len(ids), 1000):
            batch = ids[start : start + 1000]
            rows = connection.execute(
                text(
                    f"SELECT {_ENTRY_COLUMNS} FROM audit_log WHERE commitment_id = ANY(:ids) "
                    "ORDER BY commitment_id, seq"
                ),
                {"ids": batch},
            )
            for row in rows:
                entry = AuditEntry(*row)
                entries_by_commitment.setdefault(entry.commitment_id, []).append(entry)
    except SQLAlchemyError as exc:
        raise translate(exc) from exc
    for commitment_id, version, state in commitments:
        verify_chain(
            commitment_id,
            entries_by_commitment.get(commitment_id, []),
            current=(version, state),
            check_ledger_ref=check_ledger_ref,
            report=report,
        )
    return report
