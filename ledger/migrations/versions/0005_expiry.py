"""Expiry, what a commitment's open settlement allows, and the settlement review desk.

- ``expire``: DRAFT, PENDING_REVIEW and VERIFIED commitments past their expiry are
  cancelled by the system (three rows of ``valid_transitions``, copied from
  ``settlement/domain/states.py`` as of this revision).
- While a commitment has an open settlement (locking, committing or unwinding), the
  database refuses a state change its legs do not support, whatever the application
  sends: no cancel of a VERIFIED commitment (withdraw, expire) while it is settling;
  ESCROWED only with every leg locked; SETTLED only with every leg committed by an
  applied submission; back to VERIFIED or CANCELLED from ESCROWED only with every leg
  unwound or never locked.
- The review desk: an admin's retry resets a flagged settlement's attempt count
  (``attempts_reset_at``); a resolution records who closed the flag and how.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

EXPIRE_ROWS = (
    ("DRAFT", "expire", "CANCELLED"),
    ("PENDING_REVIEW", "expire", "CANCELLED"),
    ("VERIFIED", "expire", "CANCELLED"),
)

GUARD = """
CREATE FUNCTION commitments_settlement_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    open_id uuid;
    legs_total integer;
    legs_ready integer;
BEGIN
    SELECT id INTO open_id FROM settlements
        WHERE commitment_id = NEW.id AND status IN ('LOCKING', 'COMMITTING', 'UNWINDING');
    IF open_id IS NULL THEN
        RETURN NEW;
    END IF;
    IF OLD.state = 'VERIFIED' AND NEW.state = 'CANCELLED' THEN
        RAISE EXCEPTION 'commitment % is settling (settlement %); cancel the settlement first',
            NEW.id, open_id USING ERRCODE = 'SE422';
    END IF;
    SELECT count(*),
           count(*) FILTER (WHERE CASE
               WHEN NEW.state = 'ESCROWED' THEN l.state = 'LOCKED'
               WHEN NEW.state = 'SETTLED' THEN l.state = 'COMMITTED' AND EXISTS (
                   SELECT 1 FROM ledger_submissions s
                   WHERE s.settlement_id = l.settlement_id AND s.leg_no = l.leg_no
                     AND s.purpose = 'commit' AND s.status = 'APPLIED')
               ELSE l.state IN ('UNWOUND', 'NOT_LOCKED') END)
        INTO legs_total, legs_ready
        FROM settlement_legs l WHERE l.settlement_id = open_id;
    IF legs_ready <> legs_total THEN
        RAISE EXCEPTION 'commitment % cannot become %: % of % legs of settlement % are ready',
            NEW.id, NEW.state, legs_ready, legs_total, open_id USING ERRCODE = 'SE422';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER commitments_settlement_guard BEFORE UPDATE OF state ON commitments
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION commitments_settlement_guard();
"""


REVIEW = """
-- an admin's retry after a settlement needed a person: rejections before this time no
-- longer count against the attempts a leg is allowed
ALTER TABLE settlements ADD COLUMN attempts_reset_at timestamptz;
ALTER TABLE settlements ADD COLUMN resolved_by text;
ALTER TABLE settlements ADD COLUMN resolution text;

CREATE OR REPLACE FUNCTION settlements_guard() RETURNS trigger
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
    -- a closed settlement stays closed; its review flag may only be cleared (resolved)
    IF OLD.status IN ('SETTLED', 'UNWOUND') AND (NEW.status <> OLD.status
            OR (NEW.needs_review AND NOT OLD.needs_review)) THEN
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
"""


# 0003's rule, restored on downgrade
GUARD_0003 = """
CREATE OR REPLACE FUNCTION settlements_guard() RETURNS trigger
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
"""


def upgrade() -> None:
    op.execute(REVIEW)
    rows = ", ".join(f"('{f}', '{e}', '{t}')" for f, e, t in EXPIRE_ROWS)
    op.execute(f"INSERT INTO valid_transitions (from_state, event, to_state) VALUES {rows}")
    op.execute(GUARD)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS commitments_settlement_guard ON commitments")
    op.execute("DROP FUNCTION IF EXISTS commitments_settlement_guard")
    op.execute("DELETE FROM valid_transitions WHERE event = 'expire'")
    op.execute(GUARD_0003)
    op.execute(
        "ALTER TABLE settlements DROP COLUMN attempts_reset_at, DROP COLUMN resolved_by,"
        " DROP COLUMN resolution"
    )
