"""Audit anchors: publish the root of every audit chain on the ledgers, and check it.

``Anchorer`` takes an anchor (``anchor``: the heads of every commitment's chain and of
the compliance chain as of a cutoff, one Merkle root, recorded in ``audit_anchors``)
and publishes each anchor on every configured ledger from that ledger's anchor account
(``publish``), with the write-ahead discipline of settlement submissions: the signed
transaction is recorded and committed before it is sent; while it could still apply
nothing else is signed for that anchor on that ledger; only a final outcome (expired,
rejected) allows a new signature. So a root lands at most once per ledger, and a ledger
that is down only delays it: each ``publish`` picks up where the last stopped, in this
process or another. Nothing here touches a settlement or waits on one.

``verify_anchors`` recomputes every anchored root from the audit entries (and the
compliance entries, for anchors that cover that chain) as they are now and checks, on
each ledger, that the anchoring transaction is validated and carries that root.
``proof_of_commitment`` builds the self-contained proof that ``ledger.proof_verifier``
checks without the engine.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from adapters.chain import (
    Anchoring,
    Applied,
    ChainName,
    Expired,
    Outcome,
    Pending,
    Rejected,
    SignedSubmission,
    Unavailable,
)
from adapters.errors import AdapterError
from compliance import records as compliance_records
from compliance.audit import ComplianceEntry
from ledger import anchors
from ledger.anchors import AnchorRow, HeadsDiff, LandedAnchor, PublicationRow
from ledger.audit import AuditEntry, format_timestamp
from ledger.database import Database
from ledger.errors import ConstraintViolation, LedgerError
from ledger.merkle import proof_of, root_of
from settlement.clock import Clock
from settlement.domain import errors

log = logging.getLogger(__name__)

#: the version of the proof document ``proof_of_commitment`` writes
PROOF_VERSION = 1
PROOF_KIND = "settlement-audit-proof"


class AnchorNotFound(errors.NotFound):
    """No anchor published on a ledger covers what was asked for."""


@dataclass(frozen=True)
class ChainProgress:
    """Where one ledger's publication stands after a ``publish`` step."""

    chain: ChainName
    #: anchors applied on this ledger by this step (seq)
    landed: list[int] = field(default_factory=list)
    #: the anchor whose publication is in flight, if one is
    pending: int | None = None
    #: why the ledger could not be asked, if it could not
    unavailable: str | None = None
    #: why the ledger refused the last signature (a new one follows on the next step)
    refused: str | None = None


class Anchorer:
    """Takes anchors and publishes them; restartable, idempotent, never blocking.

    ``accounts`` names the anchor account per ledger (its key in the chain's signer);
    a ledger without one is not published on. ``settle_s`` is how far before now the
    cutoff lies: an entry recorded before the cutoff in a transaction still open when the
    anchor reads would otherwise be left out of it, and found by the verifier.
    """

    def __init__(
        self,
        db: Database,
        chains: Mapping[ChainName, Anchoring],
        accounts: Mapping[ChainName, str],
        clock: Clock,
        *,
        settle_s: float = 5.0,
    ) -> None:
        self._db = db
        self._chains = {name: chains[name] for name in accounts if name in chains}
        self._accounts = dict(accounts)
        self._clock = clock
        self._settle = timedelta(seconds=settle_s)

    def anchor(self) -> AnchorRow | None:
        """Record an anchor of every chain (each commitment's and the compliance chain)
        as of now minus ``settle_s``; None (skipped) when there is no entry yet, or none
        since the last anchor (the same root)."""
        now = self._clock.now()
        cutoff = now - self._settle
        with self._db.unit_of_work() as uow:
            heads = anchors.chain_heads(uow, cutoff)
            compliance = anchors.compliance_head(uow, cutoff)
            last = anchors.last_anchor(uow)
            if not heads and compliance.seq == 0:
                return None
            if last is not None and last.root == root_of(heads, compliance).hex():
                return None
            try:
                row = anchors.insert_anchor(
                    uow, heads=heads, cutoff=cutoff, at=now, compliance=compliance
                )
            except ConstraintViolation:
                return None  # another process anchored this root a moment ago
            uow.commit()
        log.info("audit anchor %s: root %s over %s chains", row.seq, row.root, row.chain_count)
        return row

    def due(self, *, every_s: float | None, every_entries: int | None) -> bool:
        """Whether a new anchor is due: ``every_s`` since the last one, or
        ``every_entries`` new entries (None: that trigger is off)."""
        now = self._clock.now()
        with self._db.unit_of_work() as uow:
            last = anchors.last_anchor(uow)
            if last is None:
                return True
            if every_s is not None and (now - last.created_at).total_seconds() >= every_s:
                return True
            if every_entries is None:
                return False
            heads = anchors.chain_heads(uow, now - self._settle)
            compliance = anchors.compliance_head(uow, now - self._settle)
        total = sum(h.seq for h in heads) + compliance.seq
        return total - last.entry_count >= every_entries

    def publish(self) -> list[ChainProgress]:
        """One step on every ledger: finish the publication in flight, or sign the
        oldest anchor not yet applied there. Never raises for a ledger that is down."""
        return [self._publish_on(name, chain) for name, chain in self._chains.items()]

    def _publish_on(self, name: ChainName, chain: Anchoring) -> ChainProgress:
        landed: list[int] = []
        with self._db.unit_of_work() as uow:
            waiting = anchors.unpublished(uow, name.value)
        for anchor in waiting:
            try:
                outcome = self._step(name, chain, anchor)
            except AdapterError as exc:
                return ChainProgress(name, landed, anchor.seq, f"{type(exc).__name__}: {exc}")
            if isinstance(outcome, Applied):
                landed.append(anchor.seq)
                continue
            unavailable = outcome.reason if isinstance(outcome, Unavailable) else None
            refused = None
            if isinstance(outcome, Rejected | Expired):
                refused = f"{type(outcome).__name__.lower()}: {_why(outcome)}"
                log.warning("audit anchor %s on %s %s", anchor.seq, name.value, refused)
            return ChainProgress(name, landed, anchor.seq, unavailable, refused)
        return ChainProgress(name, landed)

    def _step(self, name: ChainName, chain: Anchoring, anchor: AnchorRow) -> Outcome:
        """Advance ``anchor`` on one ledger: poll the open publication, or sign anew
        (write-ahead: the row is committed before the transaction is sent)."""
        with self._db.unit_of_work() as uow:
            rows = anchors.publications(uow, anchor.seq)
        open_row = next((r for r in rows if r.chain == name.value and r.status == "SIGNED"), None)
        if open_row is not None:
            submission = _submission(name, open_row)
            outcome = chain.status(submission)
            if isinstance(outcome, Pending) and not outcome.held:
                outcome = chain.submit(submission)  # resending the same blob is safe
            return self._settle_outcome(outcome)
        submission = chain.prepare_anchor(self._accounts[name], bytes.fromhex(anchor.root))
        if any(r.tx_hash == submission.tx_hash for r in rows):
            # the very transaction refused before (same sequence, same expiry): a new
            # one differs once the ledger has moved on
            return Pending(submission.tx_hash, "identical to a refused signature; not resent")
        try:
            self._record(name, anchor, submission)
        except ConstraintViolation:
            # another process recorded a signature for this anchor a moment ago
            return Pending(submission.tx_hash, "another signature is open; not sent")
        return self._settle_outcome(chain.submit(submission))

    def _record(self, name: ChainName, anchor: AnchorRow, submission: SignedSubmission) -> None:
        with self._db.unit_of_work() as uow:
            anchors.record_publication(
                uow,
                anchor_seq=anchor.seq,
                chain=name.value,
                account=self._accounts[name],
                tx_hash=submission.tx_hash,
                blob=submission.blob,
                expires_ledger=submission.expires_ledger,
                expires_at=submission.expires_at,
                at=self._clock.now(),
            )
            uow.commit()

    def _settle_outcome(self, outcome: Outcome) -> Outcome:
        """Record a final outcome on its publication; other outcomes change nothing."""
        final = _final(outcome)
        if final is None:
            return outcome
        tx_hash, status, code, index, ledger_hash = final
        with self._db.unit_of_work() as uow:
            anchors.finalize_publication(
                uow,
                tx_hash=tx_hash,
                status=status,
                result_code=code,
                ledger_index=index,
                ledger_hash=ledger_hash,
                at=self._clock.now(),
            )
            uow.commit()
        return outcome


class AnchorLoop:
    """Anchors in the background of a long-running process (``settle worker``): every
    ``poll_s`` a thread of its own takes an anchor when one is due (``every_s`` since the
    last, or ``every_entries`` new entries; None turns a trigger off) and steps the
    publications. It shares nothing with settlement but the database, so a slow or
    unreachable ledger delays anchors only; a failed round is logged and tried again."""

    def __init__(
        self,
        anchorer: Anchorer,
        *,
        every_s: float | None,
        every_entries: int | None,
        poll_s: float = 5.0,
    ) -> None:
        self.anchorer = anchorer
        self.every_s = every_s
        self.every_entries = every_entries
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        """One round: anchor if due, then one publish step on every ledger."""
        try:
            if self.anchorer.due(every_s=self.every_s, every_entries=self.every_entries):
                self.anchorer.anchor()
            self.anchorer.publish()
        except (LedgerError, AdapterError) as exc:
            log.warning("audit anchoring round failed, tried again later: %s", exc)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-anchors", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.poll_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)


def _why(outcome: Rejected | Expired) -> str:
    if isinstance(outcome, Rejected):
        return f"{outcome.code} {outcome.detail}".strip()
    return outcome.detail


def _final(outcome: Outcome) -> tuple[str, str, str | None, int | None, str | None] | None:
    """(tx hash, status, result code, ledger index, ledger hash) of a final outcome."""
    if isinstance(outcome, Applied):
        return (outcome.tx_hash, "APPLIED", outcome.code, outcome.ledger_index, outcome.ledger_hash)
    if isinstance(outcome, Rejected):
        return (
            outcome.tx_hash,
            "REJECTED",
            outcome.code,
            outcome.ledger_index,
            outcome.ledger_hash,
        )
    if isinstance(outcome, Expired):
        return (outcome.tx_hash, "EXPIRED", None, None, None)
    return None


def _submission(name: ChainName, row: PublicationRow) -> SignedSubmission:
    return SignedSubmission(
        chain=name,
        purpose=None,
        tx_hash=row.tx_hash,
        blob=row.blob,
        expires_ledger=row.expires_ledger,
        expires_at=row.expires_at,
    )


# --- verification --------------------------------------------------------------------


@dataclass(frozen=True)
class AnchorCheck:
    """One anchor as the verifier found it."""

    seq: int
    root: str
    #: the root recomputed from the entries as they are now (None: no chain as of then)
    recomputed: str | None
    #: ledger -> tx hash of the publication checked there
    confirmed: dict[str, str]
    problems: list[str]
    diff: HeadsDiff

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "root": self.root,
            "recomputed_root": self.recomputed,
            "confirmed_on": self.confirmed,
            "problems": self.problems,
            "changed": [str(c) for c in self.diff.changed],
            "missing": [str(c) for c in self.diff.missing],
            "added": [str(c) for c in self.diff.extra],
        }


@dataclass
class AnchorReport:
    anchors: list[AnchorCheck] = field(default_factory=list)
    #: problems of the anchors' own chain (seq, problem)
    chain_problems: list[tuple[int, str]] = field(default_factory=list)
    #: anchors confirmed on no ledger yet (seq)
    unconfirmed: list[int] = field(default_factory=list)
    #: what the anchor accounts' ledger history shows that the database does not: a root
    #: no anchor has (anchors deleted or rewritten), or a history that could not be read
    unlisted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.chain_problems and not self.unlisted and all(a.ok for a in self.anchors)

    @property
    def first_mismatch(self) -> AnchorCheck | None:
        return next((a for a in self.anchors if not a.ok), None)

    def as_dict(self) -> dict[str, Any]:
        first = self.first_mismatch
        return {
            "ok": self.ok,
            "anchors": len(self.anchors),
            "first_mismatch": first.as_dict() if first is not None else None,
            "anchor_chain_problems": [{"seq": s, "problem": p} for s, p in self.chain_problems],
            "unconfirmed": self.unconfirmed,
            "unlisted": self.unlisted,
            "checks": [a.as_dict() for a in self.anchors],
        }


def verify_anchors(
    db: Database,
    chains: Mapping[ChainName, Anchoring],
    accounts: Mapping[ChainName, str] | None = None,
) -> AnchorReport:
    """Recompute every anchored root from the audit entries (and, for an anchor that
    covers it, the compliance chain's head from its entries) and check each applied
    publication on its ledger (``chains``; a ledger not given is not checked, and an
    anchor confirmed on none is listed as ``unconfirmed``). ``first_mismatch`` names the
    first anchor whose root no longer matches and the chains that differ (the
    compliance chain by that name, in ``diff.compliance``).

    With ``accounts`` (the anchor account per ledger, known to the auditor apart from
    the database) the accounts' ledger history is read too: a root published there that
    no anchor in the database has is ``unlisted`` (the owner deleted the latest anchors
    to rewrite what only they covered), which fails the report."""
    with db.unit_of_work() as uow:
        rows = anchors.anchors(uow)
        published = anchors.publications(uow)
        entries = anchors.all_entries(uow)
        compliance = compliance_records.read_audit(uow.connection)
    report = AnchorReport(chain_problems=anchors.anchor_chain_problems(rows))
    applied_by_seq: dict[int, list[PublicationRow]] = {}
    for publication in published:
        if publication.status == "APPLIED":
            applied_by_seq.setdefault(publication.anchor_seq, []).append(publication)
    for row in rows:
        applied = applied_by_seq.get(row.seq, [])
        check = _check_anchor(row, applied, entries, compliance, chains)
        report.anchors.append(check)
        if not check.confirmed:
            report.unconfirmed.append(row.seq)
    roots = {row.root for row in rows}
    for name, account in (accounts or {}).items():
        if name in chains:
            report.unlisted.extend(_unlisted(chains[name], account, roots))
    return report


def _unlisted(chain: Anchoring, account: str, roots: set[str]) -> list[str]:
    """The anchoring transactions of ``account`` whose root no anchor has."""
    try:
        history = chain.anchor_history(account)
    except AdapterError as exc:
        return [f"{chain.name.value} history of {account} could not be read: {exc}"]
    return [
        f"{chain.name.value} {tx.tx_hash} (ledger {tx.ledger_index}) carries root "
        f"{tx.root.hex()}, which no anchor in the database has"
        for tx in history
        if tx.root is not None and tx.root.hex() not in roots
    ]


def _check_anchor(
    row: AnchorRow,
    applied: Sequence[PublicationRow],
    entries: Mapping[UUID, Sequence[AuditEntry]],
    compliance: Sequence[ComplianceEntry],
    chains: Mapping[ChainName, Anchoring],
) -> AnchorCheck:
    problems: list[str] = []
    confirmed: dict[str, str] = {}
    for publication in applied:
        chain = chains.get(ChainName(publication.chain))
        if chain is None:
            continue
        problem = _ledger_problem(chain, publication, row.root)
        if problem is None:
            confirmed[publication.chain] = publication.tx_hash
        else:
            problems.append(f"{publication.chain} {publication.tx_hash}: {problem}")
    recomputed, diff = _recompute(row, entries, compliance)
    if recomputed != row.root:
        what = diff.describe() or "the recorded heads were altered too"
        problems.insert(0, f"root recomputed from the audit log is {recomputed}: {what}")
    return AnchorCheck(row.seq, row.root, recomputed, confirmed, problems, diff)


def _recompute(
    row: AnchorRow,
    entries: Mapping[UUID, Sequence[AuditEntry]],
    compliance: Sequence[ComplianceEntry],
) -> tuple[str | None, HeadsDiff]:
    """The root of ``row``'s chains recomputed from the entries as they are now (None:
    no chain as of its cutoff), and how their heads differ from those it recorded. The
    compliance chain counts only for an anchor that covers it; an anchor whose recorded
    heads cannot be read is recomputed over the commitment chains alone (its root then
    differs, and the anchors' own chain reports the heads)."""
    try:
        anchored, anchored_compliance = anchors.parse_anchored(row.heads)
    except ValueError:
        anchored, anchored_compliance = None, None
    now = anchors.heads_as_of(entries, row.cutoff)
    now_compliance = (
        None
        if anchored_compliance is None
        else anchors.compliance_head_as_of(compliance, row.cutoff)
    )
    recomputed = root_of(now, now_compliance).hex() if now or now_compliance else None
    if anchored is None:
        return recomputed, HeadsDiff()
    diff = anchors.diff_heads(
        anchored, now, anchored_compliance=anchored_compliance, now_compliance=now_compliance
    )
    return recomputed, diff


def _ledger_problem(chain: Anchoring, publication: PublicationRow, root: str) -> str | None:
    """What is wrong with an applied publication as its ledger holds it; None if it is
    validated, successful, in the recorded ledger, and carries ``root``."""
    try:
        found = chain.anchor_of(publication.tx_hash)
    except AdapterError as exc:
        return f"ledger could not be asked: {exc}"
    if found is None:
        return "the ledger does not know this transaction"
    if not (found.validated and found.successful):
        return "not a validated, successful transaction"
    if found.root is None:
        return "carries no anchor root"
    if found.root.hex() != root:
        return f"carries root {found.root.hex()}, not the recorded {root}"
    if (found.ledger_index, found.ledger_hash.upper()) != (
        publication.ledger_index,
        (publication.ledger_hash or "").upper(),
    ):
        return (
            f"in ledger {found.ledger_index} {found.ledger_hash}, not the recorded "
            f"{publication.ledger_index} {publication.ledger_hash}"
        )
    return None


# --- how far anchoring has come, for operators ----------------------------------------


@dataclass(frozen=True)
class LedgerAnchorAge:
    """One ledger's anchoring as an operator reads it: the newest anchor applied there
    (None: none yet), how long ago it was taken, and how many anchors wait to land."""

    chain: str
    landed: LandedAnchor | None
    #: seconds since ``landed`` was taken, never negative (None: nothing landed)
    age_s: float | None
    #: anchors taken but not applied here (None: the ledger has no anchor account)
    unpublished: int | None


@dataclass(frozen=True)
class AnchorAges:
    last_taken: AnchorRow | None
    #: the ledgers with an anchor account or an anchor applied, by name
    ledgers: list[LedgerAnchorAge]


def anchor_ages(db: Database, clock: Clock, chains: Iterable[ChainName]) -> AnchorAges:
    """How old the newest anchor is on each ledger of ``chains`` (those with an anchor
    account) and on any other ledger an anchor landed on. Reads the database only."""
    wanted = [name.value for name in chains]
    with db.unit_of_work() as uow:
        status = anchors.anchor_status(uow, wanted)
    now = clock.now()
    ledgers = []
    for chain in sorted(set(wanted) | status.landed.keys()):
        landed = status.landed.get(chain)
        age = None if landed is None else max((now - landed.created_at).total_seconds(), 0.0)
        ledgers.append(LedgerAnchorAge(chain, landed, age, status.unpublished.get(chain)))
    return AnchorAges(status.last_taken, ledgers)


# --- proofs --------------------------------------------------------------------------


def proof_of_commitment(db: Database, commitment_id: UUID) -> dict[str, Any]:
    """The proof document of one commitment: its entries up to the head the latest
    published anchor covering it fixed, the Merkle path to that anchor's root, and the
    ledger transactions carrying the root (``ledger.proof_verifier`` documents it).
    ``AnchorNotFound`` when no published anchor covers the commitment."""
    with db.unit_of_work() as uow:
        rows = anchors.anchors(uow)
        published = anchors.publications(uow)
        entries = anchors.all_entries(uow).get(commitment_id, [])
    for row in reversed(rows):
        applied = [p for p in published if p.anchor_seq == row.seq and p.status == "APPLIED"]
        heads, compliance = anchors.parse_anchored(row.heads)
        head = next((h for h in heads if h.commitment_id == commitment_id), None)
        if not applied or head is None:
            continue
        return {
            "version": PROOF_VERSION,
            "kind": PROOF_KIND,
            "commitment_id": str(commitment_id),
            "entries": [_entry_json(e) for e in entries if e.seq <= head.seq],
            "head": {"seq": head.seq, "entry_hash": head.entry_hash},
            "path": [[s.side, s.sibling.hex()] for s in proof_of(heads, commitment_id, compliance)],
            "root": row.root,
            "anchor": {"seq": row.seq, "cutoff": format_timestamp(row.cutoff)},
            "ledgers": [_ledger_json(p) for p in applied],
        }
    raise AnchorNotFound(f"no anchor published on a ledger covers commitment {commitment_id}")


def _entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "commitment_id": str(entry.commitment_id),
        "seq": entry.seq,
        "recorded_at": format_timestamp(entry.recorded_at),
        "actor": entry.actor,
        "key_id": entry.key_id,
        "action": entry.action,
        "from_state": entry.from_state,
        "to_state": entry.to_state,
        "commitment_version": entry.commitment_version,
        "idempotency_key": entry.idempotency_key,
        "payload": entry.payload,
        "chain": entry.chain,
        "tx_hash": entry.tx_hash,
        "ledger_index": entry.ledger_index,
        "ledger_hash": entry.ledger_hash,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
        "encoding_version": entry.encoding_version,
    }


def _ledger_json(publication: PublicationRow) -> dict[str, Any]:
    return {
        "chain": publication.chain,
        "account": publication.account,
        "tx_hash": publication.tx_hash,
        "ledger_index": publication.ledger_index,
        "ledger_hash": publication.ledger_hash,
    }


__all__ = [
    "AnchorAges",
    "AnchorCheck",
    "AnchorLoop",
    "AnchorNotFound",
    "AnchorReport",
    "Anchorer",
    "ChainProgress",
    "LedgerAnchorAge",
    "anchor_ages",
    "proof_of_commitment",
    "verify_anchors",
]
