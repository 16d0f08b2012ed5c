"""The commit protocol that cannot strand one side (issue: no partial settlement).

- A leg records its lock primitive (``lock_kind``): an XRPL ``escrow``, a Stellar
  ``claimable`` balance, or a ``custody`` lock (the lock itself moves the funds into the
  settlement agent's account). It is fixed when the settlement is instructed.
- Two leg states join: ``HELD`` (the agent holds the leg's funds: a claimed balance or a
  custody lock) and ``REFUSED`` (the ledger refused the leg's payout for good; the funds
  are still locked or held, and a person is told). A leg goes PENDING -> LOCKED | HELD |
  NOT_LOCKED; LOCKED -> HELD | COMMITTED | UNWOUND | REFUSED; HELD -> COMMITTED |
  UNWOUND | REFUSED; REFUSED -> COMMITTED | UNWOUND, or back to LOCKED | HELD when an
  admin retries it.
- A lock released by someone else (the receiver finishing an escrow with the public
  fulfillment, the sender reclaiming after T_cancel) is recorded on the leg
  (``released_tx_hash``, ``released_ledger_index``, ``released_ledger_hash``,
  ``released_to``): such a leg has no applied submission of the engine's own.
- A submission may have the purpose ``claim`` (the agent takes a claimable balance).
- A settlement that decided COMMIT may still end UNWOUND: when the ledger refused a
  payout for good before anything was paid out, every leg returns.
- The commitment guard: ESCROWED with every leg LOCKED or HELD; SETTLED with every leg
  COMMITTED by an applied commit of the engine or a recorded release to the receiver.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = """
ALTER TABLE settlement_legs ADD COLUMN lock_kind text;
UPDATE settlement_legs SET lock_kind = CASE chain WHEN 'xrpl' THEN 'escrow' ELSE 'claimable' END;
ALTER TABLE settlement_legs ALTER COLUMN lock_kind SET NOT NULL;
ALTER TABLE settlement_legs ADD CONSTRAINT settlement_legs_lock_kind_check
    CHECK (lock_kind IN ('escrow', 'claimable', 'custody'));
ALTER TABLE settlement_legs ADD COLUMN released_tx_hash text;
ALTER TABLE settlement_legs ADD COLUMN released_ledger_index bigint;
ALTER TABLE settlement_legs ADD COLUMN released_ledger_hash text;
ALTER TABLE settlement_legs ADD COLUMN released_to text;
ALTER TABLE settlement_legs ADD CONSTRAINT settlement_legs_release_whole
    CHECK ((released_tx_hash IS NULL) = (released_ledger_hash IS NULL)
       AND (released_tx_hash IS NULL) = (released_to IS NULL));
ALTER TABLE settlement_legs DROP CONSTRAINT settlement_legs_state_check;
ALTER TABLE settlement_legs ADD CONSTRAINT settlement_legs_state_check CHECK (state IN
    ('PENDING', 'LOCKED', 'HELD', 'REFUSED', 'COMMITTED', 'UNWOUND', 'NOT_LOCKED'));
ALTER TABLE ledger_submissions DROP CONSTRAINT ledger_submissions_purpose_check;
ALTER TABLE ledger_submissions ADD CONSTRAINT ledger_submissions_purpose_check
    CHECK (purpose IN ('lock', 'claim', 'commit', 'unwind'));
"""

COLUMNS_BEFORE = """
ALTER TABLE ledger_submissions DROP CONSTRAINT ledger_submissions_purpose_check;
ALTER TABLE ledger_submissions ADD CONSTRAINT ledger_submissions_purpose_check
    CHECK (purpose IN ('lock', 'commit', 'unwind'));
ALTER TABLE settlement_legs DROP CONSTRAINT settlement_legs_state_check;
ALTER TABLE settlement_legs ADD CONSTRAINT settlement_legs_state_check CHECK (state IN
    ('PENDING', 'LOCKED', 'COMMITTED', 'UNWOUND', 'NOT_LOCKED'));
ALTER TABLE settlement_legs DROP COLUMN lock_kind, DROP COLUMN released_tx_hash,
    DROP COLUMN released_ledger_index, DROP COLUMN released_ledger_hash,
    DROP COLUMN released_to;
"""

# The three rules below are written once for both revisions: ``now`` gives this
# revision's text, ``before`` the text 0003/0005 left (restored on downgrade).

LEGS_GUARD = """
CREATE OR REPLACE FUNCTION legs_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.chain, NEW.asset_code, NEW.asset_issuer, NEW.amount, NEW.sender, NEW.receiver,
        NEW.kind{new_lock_kind}) IS DISTINCT FROM
       (OLD.chain, OLD.asset_code, OLD.asset_issuer, OLD.amount, OLD.sender, OLD.receiver,
        OLD.kind{old_lock_kind}) THEN
        RAISE EXCEPTION 'the terms of leg % of settlement % never change',
            OLD.leg_no, OLD.settlement_id USING ERRCODE = 'SE006';
    END IF;{release_rule}
    IF NEW.state <> OLD.state AND NOT ({moves}) THEN
        RAISE EXCEPTION 'leg % of settlement % cannot go from % to %',
            OLD.leg_no, OLD.settlement_id, OLD.state, NEW.state USING ERRCODE = 'SE006';
    END IF;
    RETURN NEW;
END $$;
"""

RELEASE_RULE = """
    IF OLD.released_tx_hash IS NOT NULL AND (NEW.released_tx_hash, NEW.released_to)
            IS DISTINCT FROM (OLD.released_tx_hash, OLD.released_to) THEN
        RAISE EXCEPTION 'leg % of settlement % was released by %; that never changes',
            OLD.leg_no, OLD.settlement_id, OLD.released_tx_hash USING ERRCODE = 'SE006';
    END IF;"""

LEG_MOVES = """
           (OLD.state = 'PENDING' AND NEW.state IN ('LOCKED', 'HELD', 'NOT_LOCKED'))
        OR (OLD.state = 'LOCKED' AND NEW.state IN ('HELD', 'COMMITTED', 'UNWOUND', 'REFUSED'))
        OR (OLD.state = 'HELD' AND NEW.state IN ('COMMITTED', 'UNWOUND', 'REFUSED'))
        OR (OLD.state = 'REFUSED' AND NEW.state IN ('COMMITTED', 'UNWOUND', 'LOCKED', 'HELD'))"""

LEG_MOVES_BEFORE = """
           (OLD.state = 'PENDING' AND NEW.state IN ('LOCKED', 'NOT_LOCKED'))
        OR (OLD.state = 'LOCKED' AND NEW.state IN ('COMMITTED', 'UNWOUND'))"""

SETTLEMENTS_GUARD = """
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
        OR (OLD.status = 'COMMITTING' AND NEW.status IN ({after_commit}))
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

COMMITMENTS_GUARD = """
CREATE OR REPLACE FUNCTION commitments_settlement_guard() RETURNS trigger
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
               WHEN NEW.state = 'ESCROWED' THEN l.state IN ({escrowed})
               WHEN NEW.state = 'SETTLED' THEN l.state = 'COMMITTED' AND ({released}EXISTS (
                   SELECT 1 FROM ledger_submissions s
                   WHERE s.settlement_id = l.settlement_id AND s.leg_no = l.leg_no
                     AND s.purpose = 'commit' AND s.status = 'APPLIED'))
               ELSE l.state IN ('UNWOUND', 'NOT_LOCKED') END)
        INTO legs_total, legs_ready
        FROM settlement_legs l WHERE l.settlement_id = open_id;
    IF legs_ready <> legs_total THEN
        RAISE EXCEPTION 'commitment % cannot become %: % of % legs of settlement % are ready',
            NEW.id, NEW.state, legs_ready, legs_total, open_id USING ERRCODE = 'SE422';
    END IF;
    RETURN NEW;
END $$;
"""


def _rules(*, now: bool) -> str:
    legs = LEGS_GUARD.format(
        new_lock_kind=", NEW.lock_kind" if now else "",
        old_lock_kind=", OLD.lock_kind" if now else "",
        release_rule=RELEASE_RULE if now else "",
        moves=LEG_MOVES if now else LEG_MOVES_BEFORE,
    )
    settlements = SETTLEMENTS_GUARD.format(
        after_commit="'SETTLED', 'UNWOUND'" if now else "'SETTLED'"
    )
    commitments = COMMITMENTS_GUARD.format(
        escrowed="'LOCKED', 'HELD'" if now else "'LOCKED'",
        released="l.released_to = l.receiver OR " if now else "",
    )
    return legs + settlements + commitments


def upgrade() -> None:
    op.execute(COLUMNS)
    op.execute(_rules(now=True))


def downgrade() -> None:
    op.execute(_rules(now=False))
    op.execute(COLUMNS_BEFORE)
