"""Audit anchors: the heads of every audit chain, published on the public ledgers.

A hash chain kept only in the database cannot stop the database's owner: with the
triggers off, an entry can be edited and every hash after it recomputed. An anchor
fixes the state of every chain at one moment in a Merkle root (``ledger.merkle``) that
the engine then publishes on each ledger, where nobody can change it afterwards.

- ``audit_anchors``: one row per anchor, append-only and itself hash-chained. The
  database assigns ``seq``, ``prev_hash`` and ``anchor_hash`` on insert (trigger
  ``audit_anchors_chain``), as for ``audit_log``. ``heads`` is the canonical JSON list
  of the chain heads the root covers (``[[commitment_id, seq, entry_hash], ...]`` in
  tree order); ``cutoff`` is the time the anchor covers entries up to (an entry
  recorded at or before it belongs to the anchor). A root is anchored once (unique).
- ``audit_anchor_publications``: the write-ahead rows of the anchoring transactions,
  one per signature, as ``ledger_submissions`` are for settlement: recorded (hash,
  signed blob, expiry) before it is sent; at most one open and at most one applied per
  anchor and chain, so a root lands at most once on each ledger; a final row never
  changes; hashes and blobs never change; nothing is deleted.

Anchor hash (``ledger.anchors.AnchorRow.computed_hash`` recomputes it)::

    sha256(b"settlement-anchor/v1\\n" + field(seq) + field(created_at) + field(cutoff)
           + field(root) + field(chain_count) + field(heads) + field(prev_hash))

with ``field`` the netstring of the audit log (``audit_field``) and times in UTC as
``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

APP_ROLE = "settlement_app"

SCHEMA = """
CREATE TABLE audit_anchors (
    seq          integer PRIMARY KEY CHECK (seq >= 1),
    created_at   timestamptz NOT NULL,
    cutoff       timestamptz NOT NULL,
    root         text NOT NULL UNIQUE CHECK (root ~ '^[0-9a-f]{64}$'),
    chain_count  integer NOT NULL CHECK (chain_count >= 1),
    entry_count  bigint NOT NULL CHECK (entry_count >= chain_count),
    heads        text NOT NULL CHECK (heads::jsonb IS NOT NULL),
    prev_hash    text,
    anchor_hash  text NOT NULL
);

CREATE TABLE audit_anchor_publications (
    id             bigserial PRIMARY KEY,
    anchor_seq     integer NOT NULL REFERENCES audit_anchors (seq),
    chain          text NOT NULL CHECK (chain IN ('xrpl', 'stellar')),
    account        text NOT NULL,
    tx_hash        text NOT NULL UNIQUE,
    blob           text NOT NULL,
    expires_ledger bigint,
    expires_at     timestamptz,
    status         text NOT NULL CHECK (status IN ('SIGNED', 'APPLIED', 'REJECTED', 'EXPIRED')),
    result_code    text,
    ledger_index   bigint,
    ledger_hash    text,
    signed_at      timestamptz NOT NULL,
    finalized_at   timestamptz,
    CHECK (expires_ledger IS NOT NULL OR expires_at IS NOT NULL),
    CHECK ((status = 'APPLIED') <= (ledger_index IS NOT NULL AND ledger_hash IS NOT NULL))
);
-- never a second signature while an earlier one could apply; never two that applied
CREATE UNIQUE INDEX audit_anchor_publications_one_open ON audit_anchor_publications
    (anchor_seq, chain) WHERE status = 'SIGNED';
CREATE UNIQUE INDEX audit_anchor_publications_one_applied ON audit_anchor_publications
    (anchor_seq, chain) WHERE status = 'APPLIED';
"""

RULES = r"""
CREATE FUNCTION audit_anchor_hash(a audit_anchors) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT encode(sha256(convert_to(
        E'settlement-anchor/v1\n'
        || audit_field(a.seq::text)
        || audit_field(to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || audit_field(to_char(a.cutoff AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || audit_field(a.root)
        || audit_field(a.chain_count::text)
        || audit_field(a.heads)
        || audit_field(a.prev_hash), 'UTF8')), 'hex')
$$;

-- Whatever the inserting role wrote, the database assigns seq, prev_hash and the hash;
-- anchors are serialised by a transaction-scoped advisory lock.
CREATE FUNCTION audit_anchors_append() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prior audit_anchors%ROWTYPE;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('audit_anchors', 20261207));
    SELECT * INTO prior FROM audit_anchors ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(prior.seq, 0) + 1;
    NEW.prev_hash := prior.anchor_hash;
    NEW.anchor_hash := audit_anchor_hash(NEW);
    RETURN NEW;
END $$;

CREATE TRIGGER audit_anchors_chain BEFORE INSERT ON audit_anchors
    FOR EACH ROW EXECUTE FUNCTION audit_anchors_append();
CREATE TRIGGER audit_anchors_append_only BEFORE UPDATE OR DELETE ON audit_anchors
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER audit_anchors_no_truncate BEFORE TRUNCATE ON audit_anchors
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();

CREATE FUNCTION anchor_publications_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'SIGNED' THEN
        RAISE EXCEPTION 'anchor publication % is % (final) and cannot change',
            OLD.tx_hash, OLD.status USING ERRCODE = 'SE006';
    END IF;
    IF (NEW.tx_hash, NEW.blob, NEW.anchor_seq, NEW.chain, NEW.account)
       IS DISTINCT FROM (OLD.tx_hash, OLD.blob, OLD.anchor_seq, OLD.chain, OLD.account) THEN
        RAISE EXCEPTION 'a signed transaction never changes (%)', OLD.tx_hash
            USING ERRCODE = 'SE006';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER audit_anchor_publications_guard BEFORE UPDATE ON audit_anchor_publications
    FOR EACH ROW EXECUTE FUNCTION anchor_publications_guard();
CREATE TRIGGER audit_anchor_publications_no_delete BEFORE DELETE ON audit_anchor_publications
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER audit_anchor_publications_no_truncate BEFORE TRUNCATE
    ON audit_anchor_publications FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
"""

GRANTS = f"""
REVOKE ALL ON audit_anchors, audit_anchor_publications FROM PUBLIC;
GRANT SELECT, INSERT ON audit_anchors TO {APP_ROLE};
GRANT SELECT, INSERT, UPDATE ON audit_anchor_publications TO {APP_ROLE};
GRANT USAGE ON SEQUENCE audit_anchor_publications_id_seq TO {APP_ROLE};
REVOKE EXECUTE ON FUNCTION audit_anchor_hash(audit_anchors) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_anchor_hash(audit_anchors) TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(SCHEMA)
    op.execute(RULES)
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute(
        "DROP TABLE audit_anchor_publications; DROP FUNCTION audit_anchor_hash(audit_anchors);"
        " DROP TABLE audit_anchors; DROP FUNCTION anchor_publications_guard();"
        " DROP FUNCTION audit_anchors_append();"
    )
