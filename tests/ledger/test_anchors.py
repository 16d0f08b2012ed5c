"""Audit anchors in the database: the Merkle tree as documented, the anchors' own chain,
what the application role may and may not do, and the write-ahead publications."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from adapters.chain import ANCHOR_MEMO_TYPE, AnchorTx, Applied, ChainName, Outcome, SignedSubmission
from ledger import anchors, proof_verifier
from ledger.errors import ConstraintViolation, LedgerError, PermissionRefused, RecordNotFound
from ledger.merkle import (
    EMPTY_COMPLIANCE,
    ChainHead,
    ComplianceHead,
    ProofStep,
    proof_of,
    root_from_proof,
    root_of,
)
from ledger.proof_verifier import Fetch
from settlement.bootstrap import Services
from settlement.clock import ManualClock
from settlement.domain.states import State
from settlement.services.anchors import (
    Anchorer,
    AnchorNotFound,
    AnchorReport,
    proof_of_commitment,
    verify_anchors,
)
from tests.support import ADMIN, new_commitment


def _head(n: int, seq: int = 1) -> ChainHead:
    return ChainHead(UUID(int=n), seq, hashlib.sha256(str(n).encode()).hexdigest())


def test_head_bytes_and_tree_match_their_documentation() -> None:
    a, b, c = _head(1), _head(2), _head(3)
    by_hand = (
        b"settlement-anchor-head/v1\n36:00000000-0000-0000-0000-000000000001,1:1,64:"
        + a.entry_hash.encode()
        + b","
    )
    assert a.canonical_bytes() == by_hand
    leaf = [hashlib.sha256(b"\x00" + h.canonical_bytes()).digest() for h in (a, b, c)]
    ab = hashlib.sha256(b"\x01" + leaf[0] + leaf[1]).digest()
    # three leaves: the odd one is carried up unchanged, then paired
    assert root_of([c, a, b]) == hashlib.sha256(b"\x01" + ab + leaf[2]).digest()
    assert root_of([a]) == leaf[0]
    assert proof_of([a, b, c], c.commitment_id) == [ProofStep("L", ab)]


def test_a_tree_refuses_no_heads_and_a_chain_twice() -> None:
    with pytest.raises(ValueError, match="at least one"):
        root_of([])
    with pytest.raises(ValueError, match="two heads"):
        root_of([_head(1), _head(1, seq=2)])
    with pytest.raises(KeyError):
        proof_of([_head(1)], UUID(int=9))


def test_the_compliance_leaf_matches_its_documentation() -> None:
    a, b = _head(1), _head(2)
    kyc = ComplianceHead(7, "c" * 64)
    assert kyc.canonical_bytes() == (
        b"settlement-anchor-compliance-head/v1\n1:7,64:" + b"c" * 64 + b","
    )
    assert EMPTY_COMPLIANCE.canonical_bytes() == b"settlement-anchor-compliance-head/v1\n1:0,0:,"
    leaf = [hashlib.sha256(b"\x00" + h.canonical_bytes()).digest() for h in (a, b, kyc)]
    ab = hashlib.sha256(b"\x01" + leaf[0] + leaf[1]).digest()
    # the compliance leaf comes after every commitment's, whatever their ids
    assert root_of([b, a], kyc) == hashlib.sha256(b"\x01" + ab + leaf[2]).digest()
    assert root_of([], kyc) == leaf[2]
    assert proof_of([a, b], a.commitment_id, kyc) == [
        ProofStep("R", leaf[1]),
        ProofStep("R", leaf[2]),
    ]
    # the standalone verifier folds a commitment's path through it without knowing it
    steps = [(s.side, s.sibling) for s in proof_of([a, b], b.commitment_id, kyc)]
    start = proof_verifier.head_leaf(str(b.commitment_id), b.seq, b.entry_hash)
    assert proof_verifier.fold(start, steps) == root_of([a, b], kyc)


def test_stored_heads_keep_the_compliance_head_apart() -> None:
    heads = [_head(2), _head(1)]
    kyc = ComplianceHead(3, "d" * 64)
    text_v2 = anchors.heads_text(heads, kyc)
    assert json.loads(text_v2)[-1] == ["compliance", 3, "d" * 64]
    assert anchors.parse_anchored(text_v2) == (sorted(heads), kyc)
    assert anchors.parse_heads(text_v2) == sorted(heads)
    # an anchor taken before the compliance leaf: no compliance head, the same heads
    assert anchors.parse_anchored(anchors.heads_text(heads)) == (sorted(heads), None)
    with pytest.raises(ValueError, match="twice"):
        anchors.parse_anchored(json.dumps([["compliance", 1, "e"], ["compliance", 2, "f"]]))


@given(
    st.sets(st.integers(min_value=0, max_value=2**64), min_size=1, max_size=40),
    st.integers(min_value=-1, max_value=50),
)
def test_every_proof_leads_to_the_root(ids: set[int], compliance_seq: int) -> None:
    heads = [_head(n) for n in ids]
    kyc = None if compliance_seq < 0 else ComplianceHead(compliance_seq, "f" * 64)
    root = root_of(heads, kyc)
    for head in heads:
        steps = proof_of(heads, head.commitment_id, kyc)
        assert root_from_proof(head.leaf(), steps) == root
        other = ChainHead(head.commitment_id, head.seq + 1, head.entry_hash)
        assert root_from_proof(other.leaf(), steps) != root


def test_leaves_are_ordered_by_the_uuid_bytes() -> None:
    low, high = (
        UUID("0f000000-0000-4000-8000-000000000000"),
        UUID("f0000000-0000-4000-8000-000000000000"),
    )
    heads = [ChainHead(high, 1, "a" * 64), ChainHead(low, 1, "b" * 64)]
    assert anchors.parse_heads(anchors.heads_text(heads))[0].commitment_id == low


@pytest.fixture
def anchored(fresh_engine: Services) -> tuple[Services, anchors.AnchorRow]:
    new_commitment(fresh_engine.commitments, State.VERIFIED)
    new_commitment(fresh_engine.commitments, State.PENDING_REVIEW)
    later = datetime.now(UTC) + timedelta(days=3650)
    with fresh_engine.db.unit_of_work() as uow:
        heads = anchors.chain_heads(uow, later)
        row = anchors.insert_anchor(uow, heads=heads, cutoff=later, at=later)
        uow.commit()
    return fresh_engine, row


def test_the_database_chains_anchors_as_python_recomputes(
    anchored: tuple[Services, anchors.AnchorRow],
) -> None:
    engine, first = anchored
    assert (first.seq, first.prev_hash, first.chain_count) == (1, None, 2)
    assert first.entry_count == 3 + 2
    assert first.anchor_hash == first.computed_hash()
    assert first.root == root_of(first.head_list()).hex()
    new_commitment(engine.commitments, State.DRAFT)
    cutoff = first.cutoff + timedelta(seconds=1)
    with engine.db.unit_of_work() as uow:
        second = anchors.insert_anchor(
            uow, heads=anchors.chain_heads(uow, cutoff), cutoff=cutoff, at=cutoff
        )
        uow.commit()
    assert (second.seq, second.prev_hash) == (2, first.anchor_hash)
    assert second.anchor_hash == second.computed_hash()
    with engine.db.unit_of_work() as uow:
        assert anchors.anchor_chain_problems(anchors.anchors(uow)) == []
        assert anchors.last_anchor(uow) == second


def test_a_root_is_anchored_once(anchored: tuple[Services, anchors.AnchorRow]) -> None:
    engine, first = anchored
    with engine.db.unit_of_work() as uow, pytest.raises(ConstraintViolation):
        anchors.insert_anchor(uow, heads=first.head_list(), cutoff=first.cutoff, at=first.cutoff)


def test_neither_the_application_nor_the_owner_with_triggers_on_rewrites_anchors(
    anchored: tuple[Services, anchors.AnchorRow],
) -> None:
    engine, _ = anchored
    statements = (
        f"UPDATE audit_anchors SET root = '{'0' * 64}' WHERE seq = 1",
        "DELETE FROM audit_anchors WHERE seq = 1",
    )
    for statement in statements:
        with engine.db.unit_of_work() as uow, pytest.raises(PermissionRefused):
            uow.execute(statement)
    owner = create_engine(engine.urls.owner)
    try:
        for statement in statements:
            with owner.begin() as c, pytest.raises(DBAPIError, match="append-only"):
                c.execute(text(statement))
    finally:
        owner.dispose()


def test_publications_are_write_ahead_and_final_once(
    anchored: tuple[Services, anchors.AnchorRow],
) -> None:
    engine, first = anchored
    at = first.created_at

    def record(uow: anchors.Statements, tx_hash: str) -> None:
        anchors.record_publication(
            uow,
            anchor_seq=first.seq,
            chain="xrpl",
            account="rAnchor",
            tx_hash=tx_hash,
            blob="blob-" + tx_hash,
            expires_ledger=100,
            expires_at=None,
            at=at,
        )

    with engine.db.unit_of_work() as uow:
        record(uow, "A1")
        uow.commit()
    with engine.db.unit_of_work() as uow, pytest.raises(ConstraintViolation):
        record(uow, "A2")  # a second signature while the first could still apply
    with engine.db.unit_of_work() as uow:
        anchors.finalize_publication(
            uow,
            tx_hash="A1",
            status="EXPIRED",
            result_code=None,
            ledger_index=None,
            ledger_hash=None,
            at=at,
        )
        record(uow, "A3")
        anchors.finalize_publication(
            uow,
            tx_hash="A3",
            status="APPLIED",
            result_code="tesSUCCESS",
            ledger_index=7,
            ledger_hash="LH",
            at=at,
        )
        uow.commit()
    with engine.db.unit_of_work() as uow:
        assert [p.status for p in anchors.publications(uow, first.seq)] == ["EXPIRED", "APPLIED"]
        assert anchors.unpublished(uow, "xrpl") == []
        assert [a.seq for a in anchors.unpublished(uow, "stellar")] == [1]
    with engine.db.unit_of_work() as uow, pytest.raises(ConstraintViolation, match="APPLIED"):
        record(uow, "A4")  # landed once: never signed again
    with engine.db.unit_of_work() as uow, pytest.raises(RecordNotFound):
        anchors.finalize_publication(
            uow,
            tx_hash="A3",
            status="EXPIRED",
            result_code=None,
            ledger_index=None,
            ledger_hash=None,
            at=at,
        )
    with engine.db.unit_of_work() as uow, pytest.raises(LedgerError):
        uow.execute("UPDATE audit_anchor_publications SET blob = 'x' WHERE tx_hash = 'A3'")


def test_the_owner_sees_the_anchor_tables_as_migrated(
    anchored: tuple[Services, anchors.AnchorRow],
) -> None:
    engine, _ = anchored
    owner: Engine = create_engine(engine.urls.owner)
    with owner.connect() as c:
        grants = c.execute(
            text(
                "SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type)"
                " FROM information_schema.role_table_grants WHERE grantee = 'settlement_app'"
                " AND table_name LIKE 'audit_anchor%' GROUP BY table_name ORDER BY table_name"
            )
        ).all()
    owner.dispose()
    assert [tuple(g) for g in grants] == [
        ("audit_anchor_publications", "INSERT,SELECT,UPDATE"),
        ("audit_anchors", "INSERT,SELECT"),
    ]


# --- the owner rewrites history: `verify` passes, `verify --anchors` does not ----------


class FakeLedger:
    """A ledger that applies every anchor at once and keeps what it carries."""

    name = ChainName.XRPL

    def __init__(self) -> None:
        self.txs: dict[str, AnchorTx] = {}

    def prepare_anchor(self, account: str, root: bytes) -> SignedSubmission:
        tx_hash = hashlib.sha256(account.encode() + root).hexdigest().upper()
        return SignedSubmission(ChainName.XRPL, None, tx_hash, root.hex(), expires_ledger=9)

    def submit(self, submission: SignedSubmission) -> Outcome:
        index = len(self.txs) + 1
        root = bytes.fromhex(submission.blob)
        self.txs[submission.tx_hash] = AnchorTx(
            submission.tx_hash, "rAnchor", root, index, f"L{index}", True, True
        )
        return Applied(submission.tx_hash, index, f"L{index}", "tesSUCCESS")

    def status(self, submission: SignedSubmission) -> Outcome:
        return self.submit(submission)

    def anchor_of(self, tx_hash: str) -> AnchorTx | None:
        return self.txs.get(tx_hash)

    def anchor_history(self, account: str) -> list[AnchorTx]:
        return [tx for tx in self.txs.values() if tx.account == account]


@dataclass
class History:
    engine: Services
    clock: ManualClock
    ledger: FakeLedger
    victim: UUID
    bystander: UUID
    #: a commitment created after the first anchor: only the second covers it
    late: UUID | None = None

    def anchor(self) -> anchors.AnchorRow:
        anchorer = Anchorer(
            self.engine.db,
            {ChainName.XRPL: self.ledger},
            {ChainName.XRPL: "rAnchor"},
            self.clock,
            settle_s=0,
        )
        row = anchorer.anchor()
        assert row is not None
        anchorer.publish()
        return row

    def anchor_or_none(self) -> anchors.AnchorRow | None:
        """An anchor if there is anything new to anchor (published at once)."""
        anchorer = Anchorer(
            self.engine.db,
            {ChainName.XRPL: self.ledger},
            {ChainName.XRPL: "rAnchor"},
            self.clock,
            settle_s=0,
        )
        row = anchorer.anchor()
        anchorer.publish()
        return row

    def verify(self, *, history: bool = True) -> AnchorReport:
        accounts = {ChainName.XRPL: "rAnchor"} if history else None
        return verify_anchors(self.engine.db, {ChainName.XRPL: self.ledger}, accounts)


def _as_owner(owner_url: str, *statements: str) -> None:
    """The owner, with every trigger and foreign key off for the session."""
    eng = create_engine(owner_url)
    with eng.begin() as c:
        c.execute(text("SET session_replication_role = replica"))
        for statement in statements:
            c.execute(text(statement))
    eng.dispose()


def _rehash(commitment_id: UUID) -> str:
    """Recompute every link and hash of a chain, as a careful forger would."""
    return f"""
DO $$
DECLARE r record; prev text := NULL;
BEGIN
    FOR r IN SELECT seq FROM audit_log WHERE commitment_id = '{commitment_id}' ORDER BY seq LOOP
        UPDATE audit_log SET prev_hash = prev
            WHERE commitment_id = '{commitment_id}' AND seq = r.seq;
        UPDATE audit_log SET entry_hash = audit_entry_hash_of(audit_log)
            WHERE commitment_id = '{commitment_id}' AND seq = r.seq
            RETURNING entry_hash INTO prev;
    END LOOP;
END $$;"""


@pytest.fixture
def history(fresh_engine: Services, clock: ManualClock) -> History:
    victim = new_commitment(fresh_engine.commitments, State.VERIFIED)
    bystander = new_commitment(fresh_engine.commitments, State.DRAFT)
    found = History(fresh_engine, clock, FakeLedger(), victim, bystander)
    found.anchor()
    clock.advance(timedelta(minutes=1))
    found.late = new_commitment(fresh_engine.commitments, State.PENDING_REVIEW)
    found.anchor()
    report = found.verify()
    assert report.ok and report.unconfirmed == [], report.as_dict()
    return found


def test_a_rewritten_entry_with_every_hash_recomputed_is_named(history: History) -> None:
    _as_owner(
        history.engine.urls.owner,
        'UPDATE audit_log SET payload = \'{"forged":"yes"}\''
        f" WHERE commitment_id = '{history.victim}' AND seq = 2",
        _rehash(history.victim),
    )
    assert history.engine.commitments.verify_audit().ok, "the chain alone is consistent again"
    report = history.verify()
    first = report.first_mismatch
    assert first is not None and first.seq == 1, "the first anchor that covered it"
    assert first.diff.changed == [history.victim]
    assert first.diff.missing == first.diff.extra == []
    assert str(history.victim) in first.problems[0]
    assert [a.seq for a in report.anchors if not a.ok] == [1, 2]


def test_a_deleted_chain_is_named(history: History) -> None:
    victim = history.bystander
    _as_owner(
        history.engine.urls.owner,
        f"DELETE FROM audit_log WHERE commitment_id = '{victim}'",
        f"DELETE FROM state_transitions WHERE commitment_id = '{victim}'",
        f"DELETE FROM commitments WHERE id = '{victim}'",
    )
    assert history.engine.commitments.verify_audit().ok
    first = history.verify().first_mismatch
    assert first is not None and first.seq == 1
    assert (first.diff.missing, first.diff.changed) == ([victim], [])


def test_a_made_up_chain_backdated_before_an_anchor_is_named(history: History) -> None:
    history.clock.advance(timedelta(minutes=1))
    forged = new_commitment(history.engine.commitments, State.DRAFT)
    _as_owner(
        history.engine.urls.owner,
        "UPDATE audit_log SET recorded_at = recorded_at - interval '1 hour'"
        f" WHERE commitment_id = '{forged}'",
        _rehash(forged),
    )
    assert history.engine.commitments.verify_audit().ok
    first = history.verify().first_mismatch
    assert first is not None and first.seq == 1
    assert (first.diff.extra, first.diff.changed) == ([forged], [])


def test_anchor_records_rewritten_to_match_are_caught_by_the_ledger(history: History) -> None:
    """The owner forges an entry and rewrites the anchors to match: the roots the
    ledger carries do not."""
    _as_owner(
        history.engine.urls.owner,
        f"UPDATE audit_log SET actor = 'mallory' WHERE commitment_id = '{history.victim}'"
        " AND seq = 1",
        _rehash(history.victim),
    )
    with history.engine.db.unit_of_work() as uow:
        rows = anchors.anchors(uow)
        entries = anchors.all_entries(uow)
    statements = []
    for row in rows:
        heads, kyc = anchors.heads_as_of(entries, row.cutoff), row.compliance_head()
        statements.append(
            f"UPDATE audit_anchors SET root = '{root_of(heads, kyc).hex()}',"
            f" heads = '{anchors.heads_text(heads, kyc)}' WHERE seq = {row.seq}"
        )
    statements.append(
        "DO $$ DECLARE r record; prev text := NULL; BEGIN"
        " FOR r IN SELECT seq FROM audit_anchors ORDER BY seq LOOP"
        " UPDATE audit_anchors SET prev_hash = prev WHERE seq = r.seq;"
        " UPDATE audit_anchors SET anchor_hash = audit_anchor_hash(audit_anchors)"
        " WHERE seq = r.seq RETURNING anchor_hash INTO prev; END LOOP; END $$;"
    )
    _as_owner(history.engine.urls.owner, *statements)
    report = history.verify()
    assert report.chain_problems == [], "the anchors' own chain was recomputed too"
    first = report.first_mismatch
    assert first is not None and first.seq == 1
    assert any("carries root" in p for p in first.problems), first.problems


def test_the_latest_anchor_deleted_to_rewrite_what_it_alone_covered_is_caught(
    history: History,
) -> None:
    """The owner deletes the last anchor and its publication (the anchors' chain is
    still whole: a prefix) and rewrites a chain only that anchor covered. The database
    alone cannot tell; the anchor account's history on the ledger can."""
    late = history.late
    _as_owner(
        history.engine.urls.owner,
        "DELETE FROM audit_anchor_publications WHERE anchor_seq = 2",
        "DELETE FROM audit_anchors WHERE seq = 2",
        f"UPDATE audit_log SET actor = 'mallory' WHERE commitment_id = '{late}' AND seq = 1",
        _rehash(late),
    )
    assert history.engine.commitments.verify_audit().ok
    assert history.verify(history=False).ok, "the database alone is consistent"
    report = history.verify()
    assert not report.ok
    assert report.first_mismatch is None and report.chain_problems == []
    (unlisted,) = report.unlisted
    assert "which no anchor in the database has" in unlisted


# --- the compliance chain: one more leaf of every anchor -------------------------------


def _register(engine: Services, name: str) -> int:
    """An officer registered (at the engine's clock): one compliance entry; its seq."""
    engine.compliance.register_officer(ADMIN, f"officer-{name}", display_name=name)
    (entry,) = engine.compliance.audit_entries(subject_kind="officer", subject=f"officer-{name}")
    return entry.seq


def _hash_of(engine: Services, seq: int) -> str:
    (entry,) = [e for e in engine.compliance.audit_entries() if e.seq == seq]
    return entry.entry_hash


_REHASH_COMPLIANCE = """
DO $$
DECLARE r record; prev text := NULL;
BEGIN
    FOR r IN SELECT seq FROM compliance_audit ORDER BY seq LOOP
        UPDATE compliance_audit SET prev_hash = prev WHERE seq = r.seq;
        UPDATE compliance_audit SET entry_hash = compliance_audit_hash_of(compliance_audit)
            WHERE seq = r.seq RETURNING entry_hash INTO prev;
    END LOOP;
END $$;"""


@dataclass
class KycHistory:
    history: History
    #: compliance entries: before the first anchor (two), between the two anchors (one)
    first: int
    second: int
    third: int


@pytest.fixture
def kyc_history(fresh_engine: Services, clock: ManualClock) -> KycHistory:
    victim = new_commitment(fresh_engine.commitments, State.VERIFIED)
    bystander = new_commitment(fresh_engine.commitments, State.DRAFT)
    found = History(fresh_engine, clock, FakeLedger(), victim, bystander)
    first, second = _register(fresh_engine, "first"), _register(fresh_engine, "second")
    one = found.anchor()
    clock.advance(timedelta(minutes=1))
    third = _register(fresh_engine, "third")
    two = found.anchor()
    heads = [one.compliance_head(), two.compliance_head()]
    assert [h.seq if h is not None else None for h in heads] == [second, third]
    report = found.verify()
    assert report.ok and report.unconfirmed == [], report.as_dict()
    return KycHistory(found, first, second, third)


def _compliance_named(report: AnchorReport, anchor_seq: int) -> None:
    first = report.first_mismatch
    assert first is not None and first.seq == anchor_seq, report.as_dict()
    assert first.diff.compliance is not None and "compliance chain" in first.diff.compliance
    assert first.diff.changed == first.diff.missing == first.diff.extra == []
    assert "compliance chain" in first.problems[0]


def test_a_compliance_change_alone_is_anchored(kyc_history: KycHistory) -> None:
    history = kyc_history.history
    assert history.anchor_or_none() is None, "nothing new: no anchor"
    history.clock.advance(timedelta(minutes=1))
    _register(history.engine, "fourth")
    taken = history.anchor()
    kyc = taken.compliance_head()
    assert kyc is not None
    assert taken.entry_count == sum(h.seq for h in taken.head_list()) + kyc.seq


def test_a_rewritten_compliance_entry_with_every_hash_recomputed_is_named(
    kyc_history: KycHistory,
) -> None:
    history = kyc_history.history
    _as_owner(
        history.engine.urls.owner,
        'UPDATE compliance_audit SET payload = \'{"forged":"yes"}\''
        f" WHERE seq = {kyc_history.first}",
        _REHASH_COMPLIANCE,
    )
    assert history.engine.compliance.verify_audit().ok, "the chain alone is consistent again"
    assert history.engine.commitments.verify_audit().ok
    report = history.verify()
    _compliance_named(report, 1)
    assert [a.seq for a in report.anchors if not a.ok] == [1, 2]


def test_deleted_compliance_entries_are_named(kyc_history: KycHistory) -> None:
    history = kyc_history.history
    _as_owner(
        history.engine.urls.owner,
        f"DELETE FROM compliance_audit WHERE seq > {kyc_history.first}",
    )
    assert history.engine.compliance.verify_audit().ok, "what is left is a whole chain"
    report = history.verify()
    _compliance_named(report, 1)
    assert f"now up to entry {kyc_history.first}" in (report.anchors[0].diff.compliance or "")


def test_a_compliance_entry_backdated_before_an_anchor_is_named(
    kyc_history: KycHistory,
) -> None:
    history = kyc_history.history
    history.clock.advance(timedelta(minutes=1))
    forged = _register(history.engine, "backdated")
    _as_owner(
        history.engine.urls.owner,
        "UPDATE compliance_audit SET recorded_at = recorded_at - interval '1 hour'"
        f" WHERE seq = {forged}",
        _REHASH_COMPLIANCE,
    )
    assert history.engine.compliance.verify_audit().ok
    report = history.verify()
    _compliance_named(report, 1)
    assert f"now up to entry {forged}" in (report.anchors[0].diff.compliance or "")


def test_a_commitment_proof_verifies_through_the_compliance_leaf(
    kyc_history: KycHistory,
) -> None:
    history = kyc_history.history
    proof = json.loads(json.dumps(proof_of_commitment(history.engine.db, history.victim)))
    with history.engine.db.unit_of_work() as uow:
        anchor = anchors.anchors(uow)[proof["anchor"]["seq"] - 1]
    kyc = anchor.compliance_head()
    assert kyc is not None and kyc.seq == kyc_history.third
    assert proof["root"] != root_of(anchor.head_list()).hex(), "the compliance leaf counts"
    confirmed = proof_verifier.verify(
        proof_verifier.load(json.dumps(proof)),
        xrpl_url="http://xrpl.invalid",
        fetch=_xrpl_server(history.ledger),
    )
    assert confirmed == [f"xrpl {proof['ledgers'][0]['tx_hash']}"]


def test_anchors_taken_before_the_compliance_leaf_still_verify(
    fresh_engine: Services, clock: ManualClock
) -> None:
    """An anchor as taken before anchors covered the compliance chain (no compliance
    head): it verifies and proves as before, and the compliance chain rewritten before
    its cutoff is named only by the anchors that cover that chain."""
    victim = new_commitment(fresh_engine.commitments, State.VERIFIED)
    registered = _register(fresh_engine, "early")
    history = History(fresh_engine, clock, FakeLedger(), victim, victim)
    with fresh_engine.db.unit_of_work() as uow:
        old = anchors.insert_anchor(
            uow, heads=anchors.chain_heads(uow, clock.now()), cutoff=clock.now(), at=clock.now()
        )
        uow.commit()
    assert old.compliance_head() is None and old.root == root_of(old.head_list()).hex()
    clock.advance(timedelta(minutes=1))
    new = history.anchor()  # publishes the old one too
    assert new.compliance_head() == ComplianceHead(registered, _hash_of(fresh_engine, registered))
    assert history.verify().ok
    proof = proof_of_commitment(fresh_engine.db, victim)
    assert proof["anchor"]["seq"] == new.seq
    old_proof = dict(proof, path=[], root=old.root, anchor={"seq": old.seq})
    old_proof["ledgers"] = [
        {
            "chain": "xrpl",
            "account": "rAnchor",
            "tx_hash": tx,
            "ledger_index": t.ledger_index,
            "ledger_hash": t.ledger_hash,
        }
        for tx, t in history.ledger.txs.items()
        if t.root == bytes.fromhex(old.root)
    ]
    assert proof_verifier.verify(
        proof_verifier.load(json.dumps(old_proof)),
        xrpl_url="http://xrpl.invalid",
        fetch=_xrpl_server(history.ledger),
    )
    _as_owner(
        fresh_engine.urls.owner,
        f"UPDATE compliance_audit SET actor = 'mallory' WHERE seq = {registered}",
        _REHASH_COMPLIANCE,
    )
    report = history.verify()
    assert [a.seq for a in report.anchors if not a.ok] == [new.seq]
    assert report.anchors[0].diff.compliance is None


# --- proofs, and the standalone verifier -----------------------------------------------


def _proof(history: History) -> dict[str, Any]:
    return proof_of_commitment(history.engine.db, history.victim)


def _xrpl_server(ledger: FakeLedger) -> Fetch:
    """A JSON-RPC server answering ``tx`` and ``ledger`` from the fake ledger, as rippled
    shapes them (API v2)."""

    def fetch(url: str, body: dict[str, Any] | None) -> Any:
        assert body is not None
        params = body["params"][0]
        if body["method"] == "ledger":
            return {"result": {"ledger_hash": f"L{params['ledger_index']}"}}
        found = ledger.txs.get(params["transaction"])
        if found is None:
            return {"result": {"error": "txnNotFound"}}
        assert found.root is not None
        memo = {"MemoType": ANCHOR_MEMO_TYPE.encode().hex().upper(), "MemoData": found.root.hex()}
        return {
            "result": {
                "validated": True,
                "ledger_index": found.ledger_index,
                "meta": {"TransactionResult": "tesSUCCESS"},
                "tx_json": {"TransactionType": "AccountSet", "Memos": [{"Memo": memo}]},
            }
        }

    return fetch


def test_a_proof_verifies_on_its_own(history: History) -> None:
    proof = json.loads(json.dumps(_proof(history)))  # as a file holds it
    assert proof["head"]["seq"] == len(proof["entries"]) == 3  # create, submit, approve
    assert len(proof["ledgers"]) == 1
    confirmed = proof_verifier.verify(
        proof_verifier.load(json.dumps(proof)),
        xrpl_url="http://xrpl.invalid",
        fetch=_xrpl_server(history.ledger),
    )
    assert confirmed == [f"xrpl {proof['ledgers'][0]['tx_hash']}"]


def _flip(text: str) -> str:
    """One byte changed: the first hex digit or letter, to another."""
    first = text[0]
    return ("b" if first == "a" else "a") + text[1:]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda p: p["entries"][1].update(actor=_flip(p["entries"][1]["actor"])),
            "entry 2: entry_hash",
        ),
        (lambda p: p["path"][0].__setitem__(1, _flip(p["path"][0][1])), "the Merkle path leads to"),
        (lambda p: p.update(root=_flip(p["root"])), "the Merkle path leads to"),
        (lambda p: p["head"].update(seq=2), "the head is not the last entry"),
        (lambda p: p["ledgers"][0].update(ledger_hash="L99"), "not the proof's"),
    ],
    ids=["entry", "path", "root", "head", "ledger"],
)
def test_a_damaged_proof_fails_clearly(
    history: History, damage: Callable[[dict[str, Any]], None], message: str
) -> None:
    proof = json.loads(json.dumps(_proof(history)))
    damage(proof)
    with pytest.raises(proof_verifier.ProofFailed, match=message):
        proof_verifier.verify(
            proof_verifier.load(json.dumps(proof)),
            xrpl_url="http://xrpl.invalid",
            fetch=_xrpl_server(history.ledger),
        )


def test_a_root_changed_with_its_path_fails_on_the_ledger(history: History) -> None:
    """A forger who recomputes the path to a root of their own: the ledger does not
    carry that root."""
    proof = json.loads(json.dumps(_proof(history)))
    proof["entries"][0]["actor"] = "mallory"
    for index, entry in enumerate(proof["entries"]):
        entry["prev_hash"] = proof["entries"][index - 1]["entry_hash"] if index else None
        entry["entry_hash"] = proof_verifier.entry_hash(entry)
    last = proof["entries"][-1]["entry_hash"]
    proof["head"]["entry_hash"] = last
    leaf = proof_verifier.head_leaf(proof["commitment_id"], proof["head"]["seq"], last)
    steps = [(s, bytes.fromhex(h)) for s, h in proof["path"]]
    proof["root"] = proof_verifier.fold(leaf, steps).hex()
    with pytest.raises(proof_verifier.ProofFailed, match="does not carry root"):
        proof_verifier.verify(
            proof, xrpl_url="http://xrpl.invalid", fetch=_xrpl_server(history.ledger)
        )


def test_the_verifier_and_the_engine_agree_on_every_hash(history: History) -> None:
    proof = _proof(history)
    with history.engine.db.unit_of_work() as uow:
        trail = anchors.all_entries(uow)[history.victim]
    assert [proof_verifier.entry_hash(e) for e in proof["entries"]] == [
        e.computed_hash() for e in trail[: len(proof["entries"])]
    ]
    head = ChainHead(history.victim, proof["head"]["seq"], proof["head"]["entry_hash"])
    assert proof_verifier.head_leaf(str(head.commitment_id), head.seq, head.entry_hash) == (
        head.leaf()
    )


def test_the_status_names_the_newest_anchor_taken_and_landed_per_ledger(
    fresh_engine: Services, clock: ManualClock
) -> None:
    with fresh_engine.db.unit_of_work() as uow:
        empty = anchors.anchor_status(uow, ["xrpl", "stellar"])
    assert (empty.last_taken, empty.landed) == (None, {})
    assert empty.unpublished == {"stellar": 0, "xrpl": 0}

    new_commitment(fresh_engine.commitments, State.VERIFIED)
    ledger = FakeLedger()
    found = History(fresh_engine, clock, ledger, uuid4(), uuid4())
    found.anchor()
    clock.advance(timedelta(minutes=1))
    new_commitment(fresh_engine.commitments, State.DRAFT)
    second = found.anchor()
    clock.advance(timedelta(minutes=1))
    new_commitment(fresh_engine.commitments, State.DRAFT)
    with fresh_engine.db.unit_of_work() as uow:
        # taken, not published: counted as waiting on the ledger, not as landed
        third = anchors.insert_anchor(
            uow, heads=anchors.chain_heads(uow, clock.now()), cutoff=clock.now(), at=clock.now()
        )
        uow.commit()
    with fresh_engine.db.unit_of_work() as uow:
        status = anchors.anchor_status(uow, ["xrpl", "stellar"])
    assert status.last_taken == third
    assert status.landed.keys() == {"xrpl"}
    landed = status.landed["xrpl"]
    (tx_hash,) = [h for h, tx in ledger.txs.items() if tx.root == bytes.fromhex(second.root)]
    assert (landed.seq, landed.created_at, landed.cutoff) == (2, second.created_at, second.cutoff)
    assert (landed.tx_hash, landed.ledger_index) == (tx_hash, 2)
    assert landed.applied_at == second.created_at  # the manual clock stood still
    assert status.unpublished == {"stellar": 3, "xrpl": 1}


def test_no_published_anchor_no_proof(fresh_engine: Services) -> None:
    cid = new_commitment(fresh_engine.commitments, State.DRAFT)
    with pytest.raises(AnchorNotFound, match=str(cid)):
        proof_of_commitment(fresh_engine.db, cid)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all", "not JSON"),
        ('{"version": 1, "kind": "settlement-audit-proof", "entr', "not JSON"),
        ('{"version": 2, "kind": "settlement-audit-proof"}', "proof version 2"),
        ('{"version": 1, "kind": "something else"}', "not a proof"),
        ("[1, 2]", "not a JSON object"),
        ('{"version": 1, "kind": "settlement-audit-proof"}', "commitment_id is missing"),
    ],
    ids=["not-json", "truncated", "version", "kind", "array", "fields"],
)
def test_a_file_that_is_no_proof_exits_2_without_a_traceback(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "proof.json"
    path.write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "ledger.proof_verifier", str(path), "--offline"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 2, done
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_the_verifier_cli_checks_a_proof_offline_and_refuses_no_ledger(
    history: History, tmp_path: Path
) -> None:
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(_proof(history)))
    assert proof_verifier.main([str(path), "--offline"]) == 0
    assert proof_verifier.main([str(path)]) == 1, "no ledger named: nothing confirmed"
    assert proof_verifier.main([str(tmp_path / "missing.json")]) == 2


def test_the_verifier_imports_only_the_standard_library() -> None:
    source = Path(proof_verifier.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative import"
            imported.add((node.module or "").split(".")[0])
    assert imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names
