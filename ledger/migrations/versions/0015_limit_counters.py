"""The limit totals screening reads on every submit, kept as counters: O(1) per submit.

Screening a submit reads two totals (``compliance.records.lock_for_submit``):

- the party's rolling 24 h total: the amounts of the owner's commitments in the currency
  that are PENDING_REVIEW, VERIFIED, ESCROWED or SETTLED and have a ``submit`` in the
  last 24 hours (to the instant);
- the currency's open total: the amounts in PENDING_REVIEW, VERIFIED or ESCROWED.

Both were sums over the commitments table, so a submit cost grew with every commitment
the party (or anyone, in the currency) ever made. From this revision a trigger on
``commitments`` keeps them in the same transaction as the state change, so they are
exact at every commit:

- ``commitment_submit_marks``: per submitted commitment its owner, currency, amount, the
  latest instant it was submitted (the ``updated_at`` that ``commitment_transition``
  writes with the submit, the same ``p_at`` as the history row) and whether it is now
  counted (in one of the four states above). A resubmit after ``request_info`` moves it
  to the new instant; a move to DRAFT or CANCELLED uncounts it; ESCROWED -> VERIFIED and
  SETTLED keep it. Indexed on (owner, currency, instant) where counted.
- ``party_submit_buckets``: per (owner, currency, bucket, shard) the sum of the amounts
  of counted commitments whose latest submit falls in the bucket. A bucket is
  ``BUCKET_SECONDS`` long, aligned to the Unix epoch (``limit_bucket``).
- ``open_totals``: per (currency, shard) the open amount.

Shards: a writer adds to the shard of its own database session
(``pg_backend_pid() % SHARDS``), not of the commitment. A counter is a sum, so an amount
may be added on one shard and taken off on another; what is read is the sum of the
shards. Sixteen sessions of one party submitting at once then update (mostly) distinct
rows and do not wait for each other's commit, which a single row per party, or a shard
chosen by commitment id (collisions by chance), would make them do.

Exactness: the reader takes whole buckets that start after the bucket holding the
window's start (``limit_bucket_next``; all of their submits are inside the window) from
the counters, and the
commitments whose latest submit falls in that edge bucket after the window's start from
the marks (an index range of at most one bucket's submits). The result equals the old
sum to the instant.

The upgrade backfills from the commitments and their history; the downgrade drops the
trigger, the function and the tables. The application role may read the counters, not
write them: the trigger function runs as its owner.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

APP_ROLE = "settlement_app"

#: bucket length: 24 h / 600 s = 144 buckets in a window, times SHARDS rows at most;
#: the edge bucket's submits are read one by one, so it is short
BUCKET_SECONDS = 600
#: sessions of one party that can submit at once without sharing a counter row
SHARDS = 16

COUNTED = "('PENDING_REVIEW', 'VERIFIED', 'ESCROWED', 'SETTLED')"
OPEN = "('PENDING_REVIEW', 'VERIFIED', 'ESCROWED')"

TABLES = f"""
CREATE FUNCTION limit_bucket(p_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_timestamp(floor(extract(epoch FROM p_at) / {BUCKET_SECONDS}) * {BUCKET_SECONDS})
$$;
-- the start of the bucket after the one holding p_at
CREATE FUNCTION limit_bucket_next(p_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT limit_bucket(p_at) + make_interval(secs => {BUCKET_SECONDS})
$$;

CREATE TABLE commitment_submit_marks (
    commitment_id uuid PRIMARY KEY REFERENCES commitments (id),
    owner_party   text NOT NULL,
    currency      text NOT NULL,
    amount        numeric(38, 18) NOT NULL,
    submitted_at  timestamptz NOT NULL,
    counted       boolean NOT NULL
);
CREATE INDEX commitment_submit_marks_window
    ON commitment_submit_marks (owner_party, currency, submitted_at) INCLUDE (amount)
    WHERE counted;

CREATE TABLE party_submit_buckets (
    owner_party text NOT NULL,
    currency    text NOT NULL,
    bucket      timestamptz NOT NULL,
    shard       smallint NOT NULL CHECK (shard BETWEEN 0 AND {SHARDS - 1}),
    amount      numeric NOT NULL,
    PRIMARY KEY (owner_party, currency, bucket, shard)
);

CREATE TABLE open_totals (
    currency text NOT NULL,
    shard    smallint NOT NULL CHECK (shard BETWEEN 0 AND {SHARDS - 1}),
    amount   numeric NOT NULL,
    PRIMARY KEY (currency, shard)
);
"""

COUNT = f"""
-- Runs after each state change of a commitment, in its transaction. A commitment enters
-- the counted states only by submit (DRAFT -> PENDING_REVIEW) and its terms cannot change
-- outside DRAFT, so the amount added at submit is the amount taken off later.
CREATE FUNCTION commitments_count_limits() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    was_counted boolean := OLD.state IN {COUNTED};
    now_counted boolean := NEW.state IN {COUNTED};
    open_delta numeric := (CASE WHEN NEW.state IN {OPEN} THEN NEW.amount ELSE 0 END)
                        - (CASE WHEN OLD.state IN {OPEN} THEN OLD.amount ELSE 0 END);
    v_shard smallint := pg_backend_pid() % {SHARDS};
    v_at timestamptz;
    v_delta numeric;
BEGIN
    -- the open row first: every change of a party bucket changes it too, so two sessions
    -- on one shard changing several commitments of a currency queue on it, not deadlock
    IF open_delta <> 0 THEN
        INSERT INTO open_totals AS o (currency, shard, amount)
            VALUES (NEW.currency, v_shard, open_delta)
            ON CONFLICT (currency, shard) DO UPDATE SET amount = o.amount + EXCLUDED.amount;
    END IF;
    IF now_counted AND NOT was_counted THEN
        INSERT INTO commitment_submit_marks AS m (commitment_id, owner_party, currency, amount,
                                                 submitted_at, counted)
            VALUES (NEW.id, NEW.owner_party, NEW.currency, NEW.amount, NEW.updated_at, true)
            ON CONFLICT (commitment_id) DO UPDATE
                SET amount = EXCLUDED.amount, currency = EXCLUDED.currency, counted = true,
                    -- the window asks whether any submit is recent: the latest one decides
                    submitted_at = greatest(m.submitted_at, EXCLUDED.submitted_at)
            RETURNING submitted_at INTO v_at;
        v_delta := NEW.amount;
    ELSIF was_counted AND NOT now_counted THEN
        UPDATE commitment_submit_marks SET counted = false
            WHERE commitment_id = NEW.id
            RETURNING submitted_at INTO v_at;
        v_delta := -OLD.amount;
    END IF;
    IF v_at IS NOT NULL THEN
        INSERT INTO party_submit_buckets AS b (owner_party, currency, bucket, shard, amount)
            VALUES (NEW.owner_party, NEW.currency, limit_bucket(v_at), v_shard, v_delta)
            ON CONFLICT (owner_party, currency, bucket, shard) DO UPDATE
                SET amount = b.amount + EXCLUDED.amount;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER commitments_count_limits AFTER UPDATE OF state ON commitments
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION commitments_count_limits();
"""

BACKFILL = f"""
INSERT INTO commitment_submit_marks (commitment_id, owner_party, currency, amount,
                                     submitted_at, counted)
    SELECT c.id, c.owner_party, c.currency, c.amount, s.at, c.state IN {COUNTED}
    FROM commitments c
    JOIN (SELECT commitment_id, max(at) AS at FROM state_transitions
          WHERE event = 'submit' GROUP BY commitment_id) s ON s.commitment_id = c.id;
INSERT INTO party_submit_buckets (owner_party, currency, bucket, shard, amount)
    SELECT owner_party, currency, limit_bucket(submitted_at), 0, sum(amount)
    FROM commitment_submit_marks WHERE counted
    GROUP BY owner_party, currency, limit_bucket(submitted_at);
INSERT INTO open_totals (currency, shard, amount)
    SELECT currency, 0, sum(amount) FROM commitments WHERE state IN {OPEN}
    GROUP BY currency;
"""

GRANTS = f"""
REVOKE EXECUTE ON FUNCTION commitments_count_limits, limit_bucket, limit_bucket_next FROM PUBLIC;
GRANT EXECUTE ON FUNCTION limit_bucket, limit_bucket_next TO {APP_ROLE};
GRANT SELECT ON commitment_submit_marks, party_submit_buckets, open_totals TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(COUNT)
    op.execute(BACKFILL)
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER commitments_count_limits ON commitments;"
        " DROP FUNCTION commitments_count_limits;"
        " DROP TABLE open_totals, party_submit_buckets, commitment_submit_marks;"
        " DROP FUNCTION limit_bucket_next, limit_bucket;"
    )
