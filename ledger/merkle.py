"""The Merkle tree over the heads of the audit chains, and inclusion proofs.

Pure functions of bytes; nothing here reads the database. ``ledger.proof_verifier``
repeats these rules with the standard library alone (a test holds the two equal), so an
auditor's verifier, in any language, needs only this description.

A chain head is (commitment id, last seq, last entry hash). Its canonical bytes::

    b"settlement-anchor-head/v1\\n" + field(commitment_id) + field(seq) + field(entry_hash)

with ``field`` the netstring of ``ledger.audit`` (``len:utf-8 text,``): the commitment id
as a lowercase hyphenated UUID, ``seq`` in decimal, ``entry_hash`` as 64 lowercase hex
digits.

An anchor also covers the compliance chain (``compliance_audit``: one chain, not tied
to a commitment) as one more leaf of its own kind. Its head is (last seq, last entry
hash), with the canonical bytes::

    b"settlement-anchor-compliance-head/v1\\n" + field(seq) + field(entry_hash)

and, while that chain is still empty, seq 0 and the empty text as the hash. Its tag
differs from a commitment head's in its first bytes, so the one never reads as the
other. Its leaf comes after every commitment's. It is an addition: the leaves of the
commitment chains and their encoding are those of anchors taken before it, and a
commitment's inclusion proof is read as before (the compliance leaf is only a sibling
hash on some paths). An anchor taken before the compliance leaf existed has none.

The tree (every hash SHA-256, 32 bytes)::

    leaf = SHA-256(0x00 || head bytes)
    node = SHA-256(0x01 || left || right)

The two prefixes keep a leaf from ever passing for a node. Leaves are ordered by
commitment id ascending, compared as the 16 bytes of the UUID (the same order as its
lowercase hex text). Each level pairs its hashes left to right; an odd last hash is
carried up to the next level unchanged (never paired with itself, so no two different
sets of leaves give the same root). The root of one leaf is that leaf; there is no
tree of no leaves (an anchor covers at least one chain).

An inclusion proof is the list of steps from the leaf up: each step is the sibling's
side (``"L"``: the sibling is the left operand, ``"R"``: the right) and its hash; a
level where the hash was carried up adds no step.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

HEAD_TAG = b"settlement-anchor-head/v1\n"
COMPLIANCE_HEAD_TAG = b"settlement-anchor-compliance-head/v1\n"
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

Side = Literal["L", "R"]


@dataclass(frozen=True, order=True)
class ChainHead:
    """The last entry of one commitment's audit chain; ordered as the tree orders them."""

    commitment_id: UUID
    seq: int
    entry_hash: str

    def canonical_bytes(self) -> bytes:
        return HEAD_TAG + b"".join(
            _field(v) for v in (str(self.commitment_id), str(self.seq), self.entry_hash)
        )

    def leaf(self) -> bytes:
        return leaf_hash(self.canonical_bytes())


@dataclass(frozen=True)
class ComplianceHead:
    """The last entry of the compliance chain (seq 0, hash "": the chain is empty)."""

    seq: int
    entry_hash: str

    def canonical_bytes(self) -> bytes:
        return COMPLIANCE_HEAD_TAG + _field(str(self.seq)) + _field(self.entry_hash)

    def leaf(self) -> bytes:
        return leaf_hash(self.canonical_bytes())


#: the compliance chain's head before its first entry
EMPTY_COMPLIANCE = ComplianceHead(0, "")


@dataclass(frozen=True)
class ProofStep:
    side: Side
    sibling: bytes


def _field(text: str) -> bytes:
    encoded = text.encode("utf-8")
    return str(len(encoded)).encode("ascii") + b":" + encoded + b","


def leaf_hash(head_bytes: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + head_bytes).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def ordered(heads: Sequence[ChainHead]) -> list[ChainHead]:
    """The heads in tree order; ``ValueError`` for none, or for one commitment twice."""
    if not heads:
        raise ValueError("a Merkle tree needs at least one chain head")
    result = sorted(heads, key=lambda h: h.commitment_id.bytes)
    for before, after in itertools.pairwise(result):
        if before.commitment_id == after.commitment_id:
            raise ValueError(f"commitment {after.commitment_id} has two heads")
    return result


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    levels = [leaves]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        levels.append(above)
    return levels


def _leaves(heads: Sequence[ChainHead], compliance: ComplianceHead | None) -> list[bytes]:
    """The leaves in tree order: the commitments', then the compliance chain's."""
    if not heads and compliance is None:
        raise ValueError("a Merkle tree needs at least one chain head")
    leaves = [h.leaf() for h in ordered(heads)] if heads else []
    if compliance is not None:
        leaves.append(compliance.leaf())
    return leaves


def root_of(heads: Sequence[ChainHead], compliance: ComplianceHead | None = None) -> bytes:
    """The Merkle root of ``heads`` (any order given; the tree orders them) and, when
    given, the compliance chain's head (None: an anchor without that leaf)."""
    return _levels(_leaves(heads, compliance))[-1][0]


def proof_of(
    heads: Sequence[ChainHead], commitment_id: UUID, compliance: ComplianceHead | None = None
) -> list[ProofStep]:
    """The inclusion proof of ``commitment_id``'s head in the tree of ``heads`` (and the
    compliance head, when the tree has one); ``KeyError`` when no head is that
    commitment's."""
    tree = ordered(heads)
    index = next((i for i, h in enumerate(tree) if h.commitment_id == commitment_id), None)
    if index is None:
        raise KeyError(f"commitment {commitment_id} is not among the anchored chains")
    steps: list[ProofStep] = []
    for level in _levels(_leaves(tree, compliance))[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            steps.append(ProofStep("L" if sibling < index else "R", level[sibling]))
        index //= 2
    return steps


def root_from_proof(leaf: bytes, steps: Sequence[ProofStep]) -> bytes:
    """The root a leaf and its proof lead to."""
    current = leaf
    for step in steps:
        if step.side == "L":
            current = node_hash(step.sibling, current)
        else:
            current = node_hash(current, step.sibling)
    return current
