"""The append-only, hash-chained audit log, and its independent verification.

Each commitment has its own chain. The database assigns ``seq``, ``prev_hash``,
``encoding_version`` and ``entry_hash`` on insert (trigger ``audit_log_chain``); this
module recomputes every hash in Python from the documented canonical encodings, so a
verifier need not trust the database's own functions.

An entry names who acted (``actor``: the person, ``system`` for the engine itself, or the
operator of a command run on the database host) and, beside it, the API key that signed
the request (``key_id``; None when no key signed). A person keeps their name when their
key is rotated, so the log says who did what whichever key they used.

Canonical encoding, version 2 (every entry written since migration 0012; identical to
``audit_entry_hash_v2`` there)::

    b"settlement-audit/v2\\n" + field(commitment_id) + field(seq) + field(recorded_at)
      + field(actor) + field(key_id) + field(action) + field(from_state) + field(to_state)
      + field(commitment_version) + field(idempotency_key) + field(payload) + field(chain)
      + field(tx_hash) + field(ledger_index) + field(ledger_hash) + field(prev_hash)

Canonical encoding, version 1 (entries written before migration 0012; identical to
``audit_entry_hash`` in migration 0001): the same without ``field(key_id)``, after
``b"settlement-audit/v1\\n"``.

In both::

    field(None) = b"~,"
    field(v)    = str(len(b)).encode() + b":" + b + b","   where b = text(v).encode("utf-8")

Texts: a UUID in lowercase hyphenated form, integers in decimal, ``recorded_at`` in UTC
as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, ``payload`` as canonical JSON (keys sorted, no
whitespace, UTF-8, no floats). ``entry_hash`` is the lowercase hex SHA-256 of the bytes.

Each entry stores the version it was hashed with (``encoding_version``), and the version
is the first line of the hashed bytes, so relabelling an entry to another version breaks
its hash. The verifier also refuses what the versions alone would not show: a version 1
entry that names a key (version 1 does not cover ``key_id``, so the key could have been
written in afterwards), a version it does not know, and a chain whose versions go down
(an entry appended since 0012 is version 2; one that reads version 1 after a version 2
entry was rewritten).
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

from ledger.database import Statements
from ledger.errors import translate

#: the first line of the hashed bytes, per canonical encoding version
ENCODING_TAGS = {1: b"settlement-audit/v1\n", 2: b"settlement-audit/v2\n"}
#: the version every new entry is hashed with (the chain trigger sets it)
CURRENT_ENCODING = 2


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


def canonical_fields(tag: bytes, values: Iterable[str | int | None]) -> bytes:
    """``tag`` then each value as a netstring (``len:utf-8 bytes,``; ``~,`` for NULL):
    the canonical encoding both audit logs hash (this one and ``compliance.audit``)."""
    return tag + b"".join(_field(v) for v in values)


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
    #: who acted: a person, ``system``, or an operator
    actor: str
    #: the API key that signed the request; None when no key signed
    key_id: str | None
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
    #: the canonical encoding ``entry_hash`` was computed with (1 or 2)
    encoding_version: int

    def canonical_bytes(self) -> bytes:
        """The bytes hashed, in the encoding the entry names; ``ValueError`` for a
        version this module does not know."""
        tag = ENCODING_TAGS.get(self.encoding_version)
        if tag is None:
            raise ValueError(f"unknown canonical encoding version {self.encoding_version}")
        key: tuple[str | None, ...] = (self.key_id,) if self.encoding_version >= 2 else ()
        return canonical_fields(
            tag,
            (
                str(self.commitment_id),
                self.seq,
                format_timestamp(self.recorded_at),
                self.actor,
                *key,
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
            ),
        )

    def computed_hash(self) -> str:
        return hashlib.sha256(self.canonical_bytes()).hexdigest()


def keys_by_version(entries: Iterable[AuditEntry]) -> dict[int, str | None]:
    """The key that signed each commitment version's change (None: no key did), from the
    audit entry of that version: each change of a commitment has exactly one (migration
    0001), and the history rows of the same versions name no key of their own."""
    return {e.commitment_version: e.key_id for e in entries if e.commitment_version is not None}


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
    "commitment_id, seq, recorded_at, actor, key_id, action, from_state, to_state,"
    " commitment_version, idempotency_key, payload, chain, tx_hash, ledger_index, ledger_hash,"
    " prev_hash, entry_hash, encoding_version"
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


@dataclass(frozen=True)
class LedgerRefEntry:
    """An audit entry that names a ledger transaction, as far as a reader lists it."""

    commitment_id: UUID
    seq: int
    recorded_at: datetime
    action: str
    chain: str
    tx_hash: str
    ledger_index: int | None
    ledger_hash: str | None


def recent_ledger_refs(uow: Statements, *, limit: int) -> list[LedgerRefEntry]:
    """The latest ``limit`` entries, of any commitment, that name a ledger transaction;
    newest first."""
    rows = uow.execute(
        "SELECT commitment_id, seq, recorded_at, action, chain, tx_hash, ledger_index,"
        " ledger_hash FROM audit_log WHERE tx_hash IS NOT NULL"
        " ORDER BY recorded_at DESC, commitment_id, seq DESC LIMIT :limit",
        {"limit": limit},
    )
    return [LedgerRefEntry(*tuple(row)) for row in rows]


def encoding_problem(version: int, key_id: str | None, prior_version: int) -> str | None:
    """What is wrong with an entry's encoding version, given the previous entry's (1 for
    the first entry of a chain); None when nothing is. Shared with the compliance chain.

    A version this module cannot recompute, a version 1 entry naming a key (version 1
    does not cover ``key_id``: the key could have been written in after the fact), and
    a version lower than the previous entry's (every entry since migration 0012 is
    version 2, so a lower one after it was relabelled) are each a break.
    """
    if version not in ENCODING_TAGS:
        return f"unknown canonical encoding version {version}"
    if version < 2 and key_id is not None:
        return f"names key {key_id} under encoding version {version}, which does not cover it"
    if version < prior_version:
        return f"encoding version {version} after version {prior_version} (downgraded)"
    return None


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
    prior_encoding = 1
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
        problem = encoding_problem(entry.encoding_version, entry.key_id, prior_encoding)
        if problem is not None:
            return broken(entry.seq, problem)
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
        prior_encoding = entry.encoding_version
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
