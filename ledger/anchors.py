"""Audit anchors: the records of the roots published on the ledgers, and their SQL.

An anchor (migration 0014) fixes every audit chain at one moment: for each commitment,
the last entry recorded at or before the anchor's ``cutoff`` (its head: commitment id,
seq, entry hash), all of them folded into one Merkle root (``ledger.merkle``). The root
is then published on each ledger; ``audit_anchor_publications`` holds the write-ahead
rows of those transactions.

Which entries an anchor covers is a function of the database alone: in each chain, the
entries up to the highest ``seq`` whose ``recorded_at`` is at or before the cutoff. So a
verifier recomputes each anchored root from the entries as they are now, and anything
the owner rewrote, deleted or added (backdated) before an anchor changes that root. The
engine takes the cutoff a little before the moment it reads (``settle_s``), so that an
entry in a transaction still open when the anchor reads, recorded before the cutoff but
committed after, is not left out.

The compliance chain (``compliance_audit``, one chain for changes not tied to a
commitment) is covered the same way, as one more leaf (``ledger.merkle.ComplianceHead``):
its entry of the highest ``seq`` recorded at or before the cutoff, or seq 0 while none
is. Anchors taken before that leaf existed do not have it, and are verified as taken.

``heads`` is stored as canonical JSON, ``[["<commitment id>", seq, "<entry hash>"],
...]`` in tree order, then, in an anchor that covers the compliance chain,
``["compliance", seq, "<entry hash>"]`` last; the anchor's own hash covers it (see the
migration for the encoding, recomputed by ``AnchorRow.computed_hash``). So whether an
anchor covers the compliance chain is fixed in the anchor itself, and its root on the
ledgers: removing the compliance row from ``heads`` changes the root.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar
from uuid import UUID

from ledger.audit import _ENTRY_COLUMNS, AuditEntry, canonical_fields, format_timestamp
from ledger.database import Statements
from ledger.errors import ConstraintViolation, RecordNotFound
from ledger.merkle import EMPTY_COMPLIANCE, ChainHead, ComplianceHead, ordered, root_of

ANCHOR_TAG = b"settlement-anchor/v1\n"
#: the first element of the compliance chain's row in a stored ``heads``
COMPLIANCE_CHAIN = "compliance"


def heads_text(heads: Sequence[ChainHead], compliance: ComplianceHead | None = None) -> str:
    """The canonical JSON of ``heads``, in tree order, and of the compliance head last
    when given."""
    rows: list[list[str | int]] = [
        [str(h.commitment_id), h.seq, h.entry_hash] for h in (ordered(heads) if heads else [])
    ]
    if compliance is not None:
        rows.append([COMPLIANCE_CHAIN, compliance.seq, compliance.entry_hash])
    return json.dumps(rows, separators=(",", ":"))


def parse_anchored(text: str) -> tuple[list[ChainHead], ComplianceHead | None]:
    """The commitment heads of a stored ``heads`` text, and its compliance head (None:
    the anchor does not cover that chain); ``ValueError`` if it is not one."""
    try:
        rows = json.loads(text)
        commitments = [
            ChainHead(UUID(str(cid)), int(seq), str(h))
            for cid, seq, h in rows
            if cid != COMPLIANCE_CHAIN
        ]
        compliance = [
            ComplianceHead(int(seq), str(h)) for cid, seq, h in rows if cid == COMPLIANCE_CHAIN
        ]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a list of chain heads: {exc}") from exc
    if len(compliance) > 1:
        raise ValueError("not a list of chain heads: the compliance chain twice")
    return commitments, (compliance[0] if compliance else None)


def parse_heads(text: str) -> list[ChainHead]:
    """The commitment heads of a stored ``heads`` text; ``ValueError`` if it is not one."""
    return parse_anchored(text)[0]


@dataclass(frozen=True)
class AnchorRow:
    seq: int
    created_at: datetime
    cutoff: datetime
    #: the Merkle root, 64 lowercase hex digits
    root: str
    chain_count: int
    entry_count: int
    heads: str
    prev_hash: str | None
    anchor_hash: str

    def head_list(self) -> list[ChainHead]:
        """The commitment chains' heads the anchor covers."""
        return parse_heads(self.heads)

    def compliance_head(self) -> ComplianceHead | None:
        """The compliance chain's head the anchor covers; None for an anchor taken before
        anchors covered that chain."""
        return parse_anchored(self.heads)[1]

    def computed_hash(self) -> str:
        return hashlib.sha256(
            canonical_fields(
                ANCHOR_TAG,
                (
                    self.seq,
                    format_timestamp(self.created_at),
                    format_timestamp(self.cutoff),
                    self.root,
                    self.chain_count,
                    self.heads,
                    self.prev_hash,
                ),
            )
        ).hexdigest()


@dataclass(frozen=True)
class PublicationRow:
    id: int
    anchor_seq: int
    chain: str
    account: str
    tx_hash: str
    blob: str
    expires_ledger: int | None
    expires_at: datetime | None
    status: str
    result_code: str | None
    ledger_index: int | None
    ledger_hash: str | None
    signed_at: datetime
    finalized_at: datetime | None


_ANCHOR_COLUMNS = (
    "seq, created_at, cutoff, root, chain_count, entry_count, heads, prev_hash, anchor_hash"
)
_PUBLICATION_COLUMNS = (
    "id, anchor_seq, chain, account, tx_hash, blob, expires_ledger, expires_at, status,"
    " result_code, ledger_index, ledger_hash, signed_at, finalized_at"
)


def chain_heads(uow: Statements, cutoff: datetime) -> list[ChainHead]:
    """The head of every commitment chain as of ``cutoff`` (the database's own entry
    hashes), in tree order: what a new anchor covers."""
    rows = uow.execute(
        "SELECT DISTINCT ON (commitment_id) commitment_id, seq, entry_hash FROM audit_log"
        " WHERE recorded_at <= :cutoff ORDER BY commitment_id, seq DESC",
        {"cutoff": cutoff},
    )
    heads = [ChainHead(row[0], int(row[1]), str(row[2])) for row in rows]
    return ordered(heads) if heads else []


def compliance_head(uow: Statements, cutoff: datetime) -> ComplianceHead:
    """The compliance chain's head as of ``cutoff`` (its entry of the highest seq
    recorded at or before it, with the database's own hash; ``EMPTY_COMPLIANCE`` when
    there is none): what a new anchor covers of that chain."""
    row = uow.execute(
        "SELECT seq, entry_hash FROM compliance_audit WHERE recorded_at <= :cutoff"
        " ORDER BY seq DESC LIMIT 1",
        {"cutoff": cutoff},
    ).one_or_none()
    return EMPTY_COMPLIANCE if row is None else ComplianceHead(int(row[0]), str(row[1]))


def insert_anchor(
    uow: Statements,
    *,
    heads: Sequence[ChainHead],
    cutoff: datetime,
    at: datetime,
    compliance: ComplianceHead | None = None,
) -> AnchorRow:
    """Record an anchor of ``heads`` and, when given, the compliance chain's head (the
    database assigns its seq and chains it); ``ConstraintViolation`` if this root is
    anchored already. ``chain_count`` and ``entry_count`` count the chains that have
    entries (an empty compliance chain is a leaf, not a chain) and their entries."""
    extra = compliance.seq if compliance is not None else 0
    row = uow.execute(
        "INSERT INTO audit_anchors (seq, created_at, cutoff, root, chain_count, entry_count,"
        " heads, anchor_hash) VALUES (0, :at, :cutoff, :root, :chains, :entries, :heads, '')"
        f" RETURNING {_ANCHOR_COLUMNS}",
        {
            "at": at,
            "cutoff": cutoff,
            "root": root_of(heads, compliance).hex(),
            "chains": len(heads) + (1 if extra else 0),
            "entries": sum(h.seq for h in heads) + extra,
            "heads": heads_text(heads, compliance),
        },
    ).one()
    return AnchorRow(*row)


def anchors(uow: Statements) -> list[AnchorRow]:
    """Every anchor, oldest first."""
    rows = uow.execute(f"SELECT {_ANCHOR_COLUMNS} FROM audit_anchors ORDER BY seq")
    return [AnchorRow(*row) for row in rows]


def last_anchor(uow: Statements) -> AnchorRow | None:
    row = uow.execute(
        f"SELECT {_ANCHOR_COLUMNS} FROM audit_anchors ORDER BY seq DESC LIMIT 1"
    ).one_or_none()
    return AnchorRow(*row) if row is not None else None


def record_publication(
    uow: Statements,
    *,
    anchor_seq: int,
    chain: str,
    account: str,
    tx_hash: str,
    blob: str,
    expires_ledger: int | None,
    expires_at: datetime | None,
    at: datetime,
) -> None:
    """Write-ahead: record a signed anchoring transaction before it is sent. Refused
    (``ConstraintViolation``) when a signature for the same anchor and chain is open or
    applied already: checked under a lock per anchor that every recorder takes, so a
    signature prepared before another process's applied cannot be recorded after it."""
    uow.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('audit_anchor_publications', :seq))",
        {"seq": anchor_seq},
    )
    taken = uow.execute(
        "SELECT tx_hash, status FROM audit_anchor_publications WHERE anchor_seq = :seq"
        " AND chain = :chain AND status IN ('SIGNED', 'APPLIED')",
        {"seq": anchor_seq, "chain": chain},
    ).one_or_none()
    if taken is not None:
        raise ConstraintViolation(
            f"anchor {anchor_seq} has a signature {taken[1]} on {chain} already ({taken[0]})"
        )
    uow.execute(
        "INSERT INTO audit_anchor_publications (anchor_seq, chain, account, tx_hash, blob,"
        " expires_ledger, expires_at, status, signed_at) VALUES (:anchor_seq, :chain,"
        " :account, :tx_hash, :blob, :expires_ledger, :expires_at, 'SIGNED', :at)",
        {
            "anchor_seq": anchor_seq,
            "chain": chain,
            "account": account,
            "tx_hash": tx_hash,
            "blob": blob,
            "expires_ledger": expires_ledger,
            "expires_at": expires_at,
            "at": at,
        },
    )


def finalize_publication(
    uow: Statements,
    *,
    tx_hash: str,
    status: str,
    result_code: str | None,
    ledger_index: int | None,
    ledger_hash: str | None,
    at: datetime,
) -> None:
    """Record the final outcome of an open publication; ``RecordNotFound`` if it is
    not open."""
    updated = uow.execute(
        "UPDATE audit_anchor_publications SET status = :status, result_code = :code,"
        " ledger_index = :ledger_index, ledger_hash = :ledger_hash, finalized_at = :at"
        " WHERE tx_hash = :tx_hash AND status = 'SIGNED'",
        {
            "status": status,
            "code": result_code,
            "ledger_index": ledger_index,
            "ledger_hash": ledger_hash,
            "at": at,
            "tx_hash": tx_hash,
        },
    ).rowcount
    if updated != 1:
        raise RecordNotFound(f"no open anchor publication {tx_hash}")


def publications(uow: Statements, anchor_seq: int | None = None) -> list[PublicationRow]:
    """The publications of one anchor (or of all), in the order they were signed."""
    where = "" if anchor_seq is None else " WHERE anchor_seq = :seq"
    rows = uow.execute(
        f"SELECT {_PUBLICATION_COLUMNS} FROM audit_anchor_publications{where} ORDER BY id",
        {"seq": anchor_seq},
    )
    return [PublicationRow(*row) for row in rows]


def unpublished(uow: Statements, chain: str) -> list[AnchorRow]:
    """The anchors not yet applied on ``chain``, oldest first."""
    rows = uow.execute(
        f"SELECT {_ANCHOR_COLUMNS} FROM audit_anchors a WHERE NOT EXISTS (SELECT 1"
        " FROM audit_anchor_publications p WHERE p.anchor_seq = a.seq AND p.chain = :chain"
        " AND p.status = 'APPLIED') ORDER BY seq",
        {"chain": chain},
    )
    return [AnchorRow(*row) for row in rows]


@dataclass(frozen=True)
class LandedAnchor:
    """The newest anchor applied on one ledger, and where."""

    chain: str
    seq: int
    #: when the anchor was taken; the entries recorded up to ``cutoff`` are fixed there
    created_at: datetime
    cutoff: datetime
    tx_hash: str
    ledger_index: int
    #: when the engine saw the transaction applied
    applied_at: datetime


@dataclass(frozen=True)
class AnchorStatus:
    """How far anchoring has come: the newest anchor taken (None: none yet), the newest
    applied per ledger (a ledger with none is absent), and per ledger asked about the
    number of anchors waiting to land there (taken after the newest applied)."""

    last_taken: AnchorRow | None
    landed: dict[str, LandedAnchor]
    unpublished: dict[str, int]


#: the ledgers a publication may name (the table's check)
PUBLICATION_CHAINS = ("xrpl", "stellar")


def anchor_status(uow: Statements, chains: Iterable[str] = ()) -> AnchorStatus:
    """Where anchoring stands, for operators (metrics, readiness, the console): every
    ledger with an anchor applied is in ``landed``; ``unpublished`` counts, for each of
    ``chains`` (the ledgers anchors are meant for), the anchors taken after the newest
    one applied there. Index reads only, however many anchors there are: it is read on
    every scrape and readiness probe."""
    landed = {}
    for chain in PUBLICATION_CHAINS:
        row = uow.execute(
            "SELECT a.seq, a.created_at, a.cutoff, p.tx_hash, p.ledger_index, p.finalized_at"
            " FROM audit_anchor_publications p JOIN audit_anchors a ON a.seq = p.anchor_seq"
            " WHERE p.chain = :chain AND p.status = 'APPLIED'"
            " ORDER BY p.anchor_seq DESC LIMIT 1",
            {"chain": chain},
        ).one_or_none()
        if row is not None:
            seq, created_at, cutoff, tx_hash, index, applied_at = row
            landed[chain] = LandedAnchor(
                chain, int(seq), created_at, cutoff, str(tx_hash), int(index), applied_at
            )
    # anchors land on a ledger in order, oldest first (the next is signed only once the
    # one before applied), so the ones waiting are those after the newest landed: a
    # range of the primary key, not an anti-join over every anchor ever taken
    unpublished = {
        chain: int(
            uow.execute(
                "SELECT count(*) FROM audit_anchors WHERE seq > :after",
                {"after": landed[chain].seq if chain in landed else 0},
            ).scalar_one()
        )
        for chain in sorted(set(chains))
    }
    return AnchorStatus(last_anchor(uow), landed, unpublished)


def all_entries(uow: Statements) -> dict[UUID, list[AuditEntry]]:
    """Every audit entry, by commitment, in seq order (the verifier's input)."""
    rows = uow.execute(f"SELECT {_ENTRY_COLUMNS} FROM audit_log ORDER BY commitment_id, seq")
    out: dict[UUID, list[AuditEntry]] = {}
    for row in rows:
        entry = AuditEntry(*row)
        out.setdefault(entry.commitment_id, []).append(entry)
    return out


def heads_as_of(entries: Mapping[UUID, Sequence[AuditEntry]], cutoff: datetime) -> list[ChainHead]:
    """The heads an anchor with ``cutoff`` covers, recomputed from the entries: in each
    chain, the entry of the highest seq recorded at or before the cutoff, its hash
    recomputed from its contents (not the stored column)."""
    heads = []
    for commitment_id, chain in entries.items():
        last = _last_covered(chain, cutoff)
        if last is not None:
            heads.append(ChainHead(commitment_id, last.seq, last.computed_hash()))
    return ordered(heads) if heads else []


class ChainedEntry(Protocol):
    """What the compliance head is recomputed from: an entry of that chain as read
    (``compliance.audit.ComplianceEntry``; ledger does not import compliance)."""

    @property
    def seq(self) -> int: ...

    @property
    def recorded_at(self) -> datetime: ...

    def computed_hash(self) -> str: ...


def compliance_head_as_of(entries: Iterable[ChainedEntry], cutoff: datetime) -> ComplianceHead:
    """The compliance head an anchor with ``cutoff`` covers, recomputed from the chain's
    entries as ``heads_as_of`` does for the commitment chains: the entry of the highest
    seq recorded at or before the cutoff, its hash recomputed from its contents;
    ``EMPTY_COMPLIANCE`` when there is none."""
    last = _last_covered(entries, cutoff)
    if last is None:
        return EMPTY_COMPLIANCE
    return ComplianceHead(last.seq, last.computed_hash())


E = TypeVar("E", bound=ChainedEntry)


def _last_covered(chain: Iterable[E], cutoff: datetime) -> E | None:
    """The entry of the highest seq recorded at or before ``cutoff`` (None: none is)."""
    covered = [e for e in chain if e.recorded_at <= cutoff]
    return max(covered, key=lambda e: e.seq) if covered else None


@dataclass(frozen=True)
class HeadsDiff:
    """How the heads recomputed from the database differ from those an anchor covers."""

    changed: list[UUID] = field(default_factory=list)
    missing: list[UUID] = field(default_factory=list)
    extra: list[UUID] = field(default_factory=list)
    #: how the compliance chain's head differs (None: it does not, or is not anchored)
    compliance: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.changed or self.missing or self.extra or self.compliance)

    def describe(self) -> str:
        parts = []
        for label, ids in (("changed", self.changed), ("missing", self.missing)):
            if ids:
                parts.append(f"{label}: " + ", ".join(str(i) for i in ids))
        if self.extra:
            parts.append("not anchored (added): " + ", ".join(str(i) for i in self.extra))
        if self.compliance:
            parts.append(self.compliance)
        return "; ".join(parts)


def diff_heads(
    anchored: Iterable[ChainHead],
    now: Iterable[ChainHead],
    *,
    anchored_compliance: ComplianceHead | None = None,
    now_compliance: ComplianceHead | None = None,
) -> HeadsDiff:
    """Chains whose head differs (``changed``), that the anchor covers and the database
    no longer holds (``missing``), and that the database holds as of the anchor but the
    anchor does not cover (``extra``), each in tree order; and, for an anchor that
    covers the compliance chain, how that chain's head differs (``compliance``)."""
    before = {h.commitment_id: h for h in anchored}
    after = {h.commitment_id: h for h in now}
    key = UUID.__str__
    return HeadsDiff(
        changed=sorted((c for c in before if c in after and before[c] != after[c]), key=key),
        missing=sorted((c for c in before if c not in after), key=key),
        extra=sorted((c for c in after if c not in before), key=key),
        compliance=diff_compliance(anchored_compliance, now_compliance),
    )


def diff_compliance(anchored: ComplianceHead | None, now: ComplianceHead | None) -> str | None:
    """What differs in the compliance chain's head, in words naming the chain; None when
    nothing does, or when the anchor does not cover that chain (``anchored`` None)."""
    if anchored is None or anchored == now:
        return None
    found = now if now is not None else EMPTY_COMPLIANCE
    return (
        f"compliance chain changed: anchored {_compliance_text(anchored)}, "
        f"now {_compliance_text(found)}"
    )


def _compliance_text(head: ComplianceHead) -> str:
    if head.seq == 0:
        return "empty"
    return f"up to entry {head.seq} ({head.entry_hash[:16]})"


def anchor_chain_problems(rows: Sequence[AnchorRow]) -> list[tuple[int, str]]:
    """What is wrong with the anchors' own chain: (anchor seq, problem) for a seq out of
    order, a ``prev_hash`` that is not the previous anchor's hash, an ``anchor_hash``
    that does not match the row, a root that is not the root of its heads."""
    problems: list[tuple[int, str]] = []
    prev: str | None = None
    for expected, row in enumerate(rows, start=1):
        if row.seq != expected:
            problems.append((row.seq, f"expected anchor {expected}: one is missing or moved"))
        if row.prev_hash != prev:
            problems.append((row.seq, "prev_hash does not match the previous anchor's hash"))
        if row.computed_hash() != row.anchor_hash:
            problems.append((row.seq, "anchor_hash does not match its contents (edited)"))
        try:
            heads, compliance = parse_anchored(row.heads)
            if not (heads or compliance) or root_of(heads, compliance).hex() != row.root:
                problems.append((row.seq, "root is not the Merkle root of its recorded heads"))
        except ValueError as exc:
            problems.append((row.seq, f"recorded heads unreadable: {exc}"))
        prev = row.anchor_hash
    return problems
