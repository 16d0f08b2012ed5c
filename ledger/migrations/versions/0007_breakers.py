"""API operations state: shared circuit-breaker states and reset requests; list indexes.

Every process that talks to ledgers (the API process, each worker) keeps one circuit
breaker per chain in memory. To make them visible and resettable from one place, each
process publishes its breakers into ``breaker_states`` (one row per process scope and
chain) and, when it publishes, applies the reset requests of ``breaker_resets`` it has
not applied yet (``applied_reset_id`` is the highest one it applied). A reset request is
append-only: who asked, for which chain, when; it is the audit trace of the reset.

The two indexes serve the API's keyset pagination of commitments on (created_at, id),
all of them or one party's.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APP_ROLE = "settlement_app"

UP = f"""
CREATE TABLE breaker_resets (
    id           bigserial PRIMARY KEY,
    chain        text NOT NULL CHECK (chain IN ('xrpl', 'stellar')),
    requested_by text NOT NULL CHECK (length(requested_by) BETWEEN 1 AND 200),
    requested_at timestamptz NOT NULL
);
CREATE TRIGGER breaker_resets_append_only BEFORE UPDATE OR DELETE ON breaker_resets
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER breaker_resets_no_truncate BEFORE TRUNCATE ON breaker_resets
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();

CREATE TABLE breaker_states (
    scope            text NOT NULL CHECK (length(scope) BETWEEN 1 AND 200),
    chain            text NOT NULL CHECK (chain IN ('xrpl', 'stellar')),
    state            text NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    failure_count    integer NOT NULL CHECK (failure_count >= 0),
    opened_at        timestamptz,
    updated_at       timestamptz NOT NULL,
    applied_reset_id bigint NOT NULL DEFAULT 0,
    last_reset_at    timestamptz,
    PRIMARY KEY (scope, chain)
);

CREATE INDEX commitments_by_created ON commitments (created_at, id);
CREATE INDEX commitments_by_party_created ON commitments (owner_party, created_at, id);

REVOKE ALL ON breaker_resets, breaker_states FROM PUBLIC;
GRANT SELECT, INSERT ON breaker_resets TO {APP_ROLE};
GRANT USAGE ON SEQUENCE breaker_resets_id_seq TO {APP_ROLE};
GRANT SELECT, INSERT, UPDATE ON breaker_states TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(UP)


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS commitments_by_party_created;
        DROP INDEX IF EXISTS commitments_by_created;
        DROP TABLE IF EXISTS breaker_states;
        DROP TABLE IF EXISTS breaker_resets;
        """
    )
