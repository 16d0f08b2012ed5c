"""Delivery versus payment: settlements, their legs, and every ledger transaction signed.

What the database itself enforces from this revision on:

- one open settlement per commitment (a settlement still locking, committing or
  unwinding blocks a new one);
- a settlement's decision is written once: COMMIT or ABORT never changes, and after
  COMMIT the settlement only rolls forward (COMMITTING -> SETTLED, never unwinding);
- write-ahead submissions: every transaction the engine signs is recorded (hash, signed
  blob, expiry) before it is sent; at most one submission per leg and purpose may be
  open (signed, not final) at a time, and at most one may be applied, so no purpose is
  ever signed twice while an earlier signature could still apply (DESIGN 8.5);
- a final submission (APPLIED, REJECTED, EXPIRED) never changes again; hashes and
  blobs never change.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APP_ROLE = "settlement_app"

SCHEMA = """
CREATE TABLE settlements (
    id              uuid PRIMARY KEY,
    commitment_id   uuid NOT NULL REFERENCES commitments (id),
    status          text NOT NULL CHECK (status IN
                        ('LOCKING', 'COMMITTING', 'UNWINDING', 'SETTLED', 'UNWOUND')),
    decision        text CHECK (decision IN ('COMMIT', 'ABORT')),
    decision_reason text,
    decided_at      timestamptz,
    settle_not_before timestamptz,
    commit_deadline timestamptz NOT NULL,
    cancel_after    timestamptz NOT NULL,
    condition_hex   text NOT NULL,
    secret_sealed   bytea NOT NULL,
    needs_review    boolean NOT NULL DEFAULT false,
    review_reason   text,
    cancel_requested_by text,
    cancel_reason   text,
    lease_owner     text,
    lease_until     timestamptz,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CHECK (cancel_after > commit_deadline),
    CHECK (settle_not_before IS NULL OR settle_not_before < commit_deadline),
    CHECK ((decision IS NULL) = (decided_at IS NULL))
);
CREATE UNIQUE INDEX settlements_one_open_per_commitment ON settlements (commitment_id)
    WHERE status IN ('LOCKING', 'COMMITTING', 'UNWINDING');
CREATE INDEX settlements_due ON settlements (lease_until NULLS FIRST)
    WHERE status IN ('LOCKING', 'COMMITTING', 'UNWINDING');

CREATE TABLE settlement_legs (
    settlement_id uuid NOT NULL REFERENCES settlements (id),
    leg_no        smallint NOT NULL CHECK (leg_no >= 0),
    kind          text NOT NULL CHECK (kind IN ('principal', 'fee')),
    chain         text NOT NULL CHECK (chain IN ('xrpl', 'stellar')),
    asset_code    text NOT NULL CHECK (length(asset_code) BETWEEN 1 AND 40),
    asset_issuer  text,
    amount        numeric(38, 18) NOT NULL CHECK (amount > 0),
    sender        text NOT NULL,
    receiver      text NOT NULL,
    state         text NOT NULL CHECK (state IN
                      ('PENDING', 'LOCKED', 'COMMITTED', 'UNWOUND', 'NOT_LOCKED')),
    lock_owner    text,
    lock_sequence bigint,
    lock_balance_id text,
    PRIMARY KEY (settlement_id, leg_no),
    CHECK (sender <> receiver)
);

CREATE TABLE ledger_submissions (
    id             bigserial PRIMARY KEY,
    settlement_id  uuid NOT NULL,
    leg_no         smallint NOT NULL,
    purpose        text NOT NULL CHECK (purpose IN ('lock', 'commit', 'unwind')),
    chain          text NOT NULL CHECK (chain IN ('xrpl', 'stellar')),
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
    FOREIGN KEY (settlement_id, leg_no) REFERENCES settlement_legs (settlement_id, leg_no),
    CHECK (expires_ledger IS NOT NULL OR expires_at IS NOT NULL),
    CHECK ((status = 'APPLIED') <= (ledger_index IS NOT NULL AND ledger_hash IS NOT NULL))
);
-- DESIGN 8.5: never a second signature for a purpose while an earlier one could apply
CREATE UNIQUE INDEX ledger_submissions_one_open ON ledger_submissions
    (settlement_id, leg_no, purpose) WHERE status = 'SIGNED';
CREATE UNIQUE INDEX ledger_submissions_one_applied ON ledger_submissions
    (settlement_id, leg_no, purpose) WHERE status = 'APPLIED';
"""

RULES = """
CREATE FUNCTION settlements_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.decision IS NOT NULL AND NEW.decision IS DISTINCT FROM OLD.decision THEN
        RAISE EXCEPTION 'settlement % decided % at %; a decision never changes',
            OLD.id, OLD.decision, OLD.decided_at USING ERRCODE = 'SE006';
    END IF;
    IF NEW.status <> OLD.status AND NOT (
           (OLD.status = 'LOCKING' AND NEW.status = 'COMMITTING' AND NEW.decision = 'COMMIT')
        OR (OLD.status = 'LOCKING' AND NEW.status = 'UNWINDING' AND NEW.decision = 'ABORT')
        OR (OLD.status = 'COMMITTING' AND NEW.status = 'SETTLED')
        OR (OLD.status = 'UNWINDING' AND NEW.status = 'UNWOUND')) THEN
        RAISE EXCEPTION 'settlement % cannot go from % to % (decision %)',
            OLD.id, OLD.status, NEW.status, NEW.decision USING ERRCODE = 'SE006';
    END IF;
    IF OLD.status IN ('SETTLED', 'UNWOUND') AND (NEW.status, NEW.needs_review)
            IS DISTINCT FROM (OLD.status, OLD.needs_review) THEN
        RAISE EXCEPTION 'settlement % is % and closed', OLD.id, OLD.status USING ERRCODE = 'SE006';
    END IF;
    IF NEW.secret_sealed <> OLD.secret_sealed OR NEW.condition_hex <> OLD.condition_hex
       OR NEW.commit_deadline <> OLD.commit_deadline OR NEW.cancel_after <> OLD.cancel_after
       OR NEW.settle_not_before IS DISTINCT FROM OLD.settle_not_before
       OR NEW.commitment_id <> OLD.commitment_id THEN
        RAISE EXCEPTION 'the terms of settlement % never change', OLD.id USING ERRCODE = 'SE006';
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION legs_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.chain, NEW.asset_code, NEW.asset_issuer, NEW.amount, NEW.sender, NEW.receiver,
        NEW.kind) IS DISTINCT FROM
       (OLD.chain, OLD.asset_code, OLD.asset_issuer, OLD.amount, OLD.sender, OLD.receiver,
        OLD.kind) THEN
        RAISE EXCEPTION 'the terms of leg % of settlement % never change',
            OLD.leg_no, OLD.settlement_id USING ERRCODE = 'SE006';
    END IF;
    IF NEW.state <> OLD.state AND NOT (
           (OLD.state = 'PENDING' AND NEW.state IN ('LOCKED', 'NOT_LOCKED'))
        OR (OLD.state = 'LOCKED' AND NEW.state IN ('COMMITTED', 'UNWOUND'))) THEN
        RAISE EXCEPTION 'leg % of settlement % cannot go from % to %',
            OLD.leg_no, OLD.settlement_id, OLD.state, NEW.state USING ERRCODE = 'SE006';
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION submissions_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'SIGNED' THEN
        RAISE EXCEPTION 'submission % is % (final) and cannot change', OLD.tx_hash, OLD.status
            USING ERRCODE = 'SE006';
    END IF;
    IF (NEW.tx_hash, NEW.blob, NEW.purpose, NEW.settlement_id, NEW.leg_no)
       IS DISTINCT FROM (OLD.tx_hash, OLD.blob, OLD.purpose, OLD.settlement_id, OLD.leg_no) THEN
        RAISE EXCEPTION 'a signed transaction never changes (%)', OLD.tx_hash
            USING ERRCODE = 'SE006';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER settlements_guard BEFORE UPDATE ON settlements
    FOR EACH ROW EXECUTE FUNCTION settlements_guard();
CREATE TRIGGER settlement_legs_guard BEFORE UPDATE ON settlement_legs
    FOR EACH ROW EXECUTE FUNCTION legs_guard();
CREATE TRIGGER ledger_submissions_guard BEFORE UPDATE ON ledger_submissions
    FOR EACH ROW EXECUTE FUNCTION submissions_guard();
CREATE TRIGGER settlements_no_delete BEFORE DELETE ON settlements
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER settlement_legs_no_delete BEFORE DELETE ON settlement_legs
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER ledger_submissions_no_delete BEFORE DELETE ON ledger_submissions
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
"""

GRANTS = f"""
REVOKE ALL ON settlements, settlement_legs, ledger_submissions FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON settlements, settlement_legs, ledger_submissions TO {APP_ROLE};
GRANT USAGE ON SEQUENCE ledger_submissions_id_seq TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(SCHEMA)
    op.execute(RULES)
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS ledger_submissions, settlement_legs, settlements CASCADE;
        DROP FUNCTION IF EXISTS submissions_guard, legs_guard, settlements_guard;
        """
    )
