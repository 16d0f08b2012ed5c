"""Webhooks: endpoints, and an outbox the database fills in the transaction of the change.

Every change the engine reports (a commitment transition, a settlement event, a review
outcome) already writes an audit entry in its own transaction. An ``AFTER INSERT``
trigger on ``audit_log`` (``webhook_outbox``) turns the entries whose action has an
event type (``webhook_event_types``, a frozen copy of ``ledger.webhooks.ACTIONS``; a
test holds the two equal) into an event and one delivery per active endpoint that
wants that type for that party. So an event exists exactly when its change committed:
no code path has to remember to emit, and a rolled-back change takes its event with it.

With no active endpoint the trigger answers after one probe of an empty (or small)
table, so the commitment write paths pay next to nothing until someone subscribes.

Tables:

- ``webhook_endpoints``: who registered which URL for which event types; ``party`` NULL
  is every party (an admin's). Disabling sets ``active`` false; rows are never deleted.
- ``webhook_events``: one per reported audit entry (``UNIQUE (commitment_id,
  audit_seq)``): the id a receiver deduplicates on, the type, the party, when the change
  happened, and the payload sent. Append-only.
- ``webhook_deliveries``: one per (endpoint, event): ``pending`` until ``delivered`` or
  ``dead``; ``next_attempt_at`` is both the retry timer and the claim's lease (a
  worker that dies holding a claim leaves the delivery due again when it runs out).
  ``commitment_id`` and ``audit_seq`` are copied from the event for the order rule: a
  delivery is due only when every earlier event of its commitment to its endpoint is
  delivered.

The application role reads everything, registers and disables endpoints, and updates
the delivery columns the worker and a replay need; it cannot write events (only the
trigger, running as its owner, does), delete anything, or change a delivery that is
delivered (``webhook_deliveries_guard``, SE003).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

APP_ROLE = "settlement_app"

#: audit action -> event type, frozen as of this revision (``ledger.webhooks.ACTIONS``)
EVENT_TYPES = (
    ("create", "commitment.created"),
    ("submit", "commitment.submitted"),
    ("withdraw", "commitment.withdrawn"),
    ("expire", "commitment.expired"),
    ("approval_recorded", "review.approval_recorded"),
    ("approve", "review.approved"),
    ("reject", "review.rejected"),
    ("request_info", "review.info_requested"),
    ("settlement_instructed", "settlement.instructed"),
    ("lock", "settlement.locked"),
    ("settle", "settlement.committed"),
    ("release", "settlement.unwound"),
    ("settlement_unwound", "settlement.unwound"),
    ("force_cancel", "settlement.cancelled"),
    ("settlement_flagged", "settlement.flagged"),
)

TABLES = """
CREATE TABLE webhook_event_types (
    action     text PRIMARY KEY,
    event_type text NOT NULL
);

CREATE TABLE webhook_endpoints (
    id          uuid PRIMARY KEY,
    party       text,
    url         text NOT NULL CHECK (length(url) BETWEEN 8 AND 2048),
    event_types text[] NOT NULL CHECK (cardinality(event_types) >= 1),
    active      boolean NOT NULL DEFAULT true,
    created_by  text NOT NULL,
    key_id      text,
    created_at  timestamptz NOT NULL,
    disabled_at timestamptz,
    disabled_by text,
    CHECK (active = (disabled_at IS NULL))
);
CREATE INDEX webhook_endpoints_active ON webhook_endpoints (party) WHERE active;

CREATE TABLE webhook_events (
    id            uuid PRIMARY KEY,
    type          text NOT NULL,
    commitment_id uuid NOT NULL REFERENCES commitments (id),
    party         text NOT NULL,
    audit_seq     integer NOT NULL,
    occurred_at   timestamptz NOT NULL,
    payload       jsonb NOT NULL,
    UNIQUE (commitment_id, audit_seq)
);

CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id),
    event_id         uuid NOT NULL REFERENCES webhook_events (id),
    commitment_id    uuid NOT NULL,
    audit_seq        integer NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL,
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    last_status      integer,
    last_error       text,
    delivered_at     timestamptz,
    UNIQUE (endpoint_id, event_id),
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
-- the order rule's probe: the undelivered earlier events of one commitment to one endpoint
CREATE INDEX webhook_deliveries_order ON webhook_deliveries
    (endpoint_id, commitment_id, audit_seq) WHERE status <> 'delivered';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, status, id);
"""

OUTBOX = r"""
-- Runs after every audit entry, in its transaction. As the table owner: the application
-- role cannot write events itself.
CREATE FUNCTION webhook_outbox() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_type text;
    v_party text;
    v_event uuid;
    v_body jsonb;
    v_data jsonb;
    v_settlement uuid;
BEGIN
    -- the common case first and cheapest: nobody subscribed
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE active) THEN
        RETURN NULL;
    END IF;
    SELECT event_type INTO v_type FROM webhook_event_types WHERE action = NEW.action;
    IF v_type IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT owner_party INTO v_party FROM commitments WHERE id = NEW.commitment_id;
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.active
                   AND (e.party IS NULL OR e.party = v_party)
                   AND v_type = ANY (e.event_types)) THEN
        RETURN NULL;
    END IF;
    v_body := NEW.payload::jsonb;
    v_data := jsonb_strip_nulls(jsonb_build_object(
        'from_state', NEW.from_state, 'to_state', NEW.to_state,
        'commitment_version', NEW.commitment_version,
        'settlement_id', v_body -> 'settlement_id', 'reason', v_body -> 'reason',
        'leg_no', v_body -> 'leg_no', 'chain', NEW.chain, 'tx_hash', NEW.tx_hash,
        'ledger_index', NEW.ledger_index, 'ledger_hash', NEW.ledger_hash));
    IF v_type LIKE 'settlement.%' AND jsonb_typeof(v_body -> 'settlement_id') = 'string' THEN
        v_settlement := (v_body ->> 'settlement_id')::uuid;
        v_data := v_data || jsonb_build_object('legs', webhook_legs(v_settlement));
    END IF;
    v_event := gen_random_uuid();
    INSERT INTO webhook_events (id, type, commitment_id, party, audit_seq, occurred_at, payload)
        VALUES (v_event, v_type, NEW.commitment_id, v_party, NEW.seq, NEW.recorded_at, v_data);
    INSERT INTO webhook_deliveries (endpoint_id, event_id, commitment_id, audit_seq, status,
                                    next_attempt_at)
        SELECT e.id, v_event, NEW.commitment_id, NEW.seq, 'pending', NEW.recorded_at
        FROM webhook_endpoints e
        WHERE e.active AND (e.party IS NULL OR e.party = v_party)
          AND v_type = ANY (e.event_types);
    RETURN NULL;
END $$;

-- a settlement's legs with the ledger transactions that applied to each, for a receiver
-- to tie the event to the ledgers
CREATE FUNCTION webhook_legs(p_settlement uuid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
        'leg_no', l.leg_no, 'kind', l.kind, 'chain', l.chain, 'asset_code', l.asset_code,
        'asset_issuer', l.asset_issuer, 'amount', l.amount::text, 'state', l.state,
        'transactions', (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                'purpose', s.purpose, 'tx_hash', s.tx_hash, 'ledger_index', s.ledger_index,
                'ledger_hash', s.ledger_hash) ORDER BY s.id), '[]'::jsonb)
            FROM ledger_submissions s
            WHERE s.settlement_id = l.settlement_id AND s.leg_no = l.leg_no
              AND s.status = 'APPLIED')
        ) ORDER BY l.leg_no), '[]'::jsonb)
    FROM settlement_legs l WHERE l.settlement_id = p_settlement
$$;

CREATE TRIGGER audit_log_webhook_outbox AFTER INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION webhook_outbox();

-- A delivered delivery is history: nothing changes it. Otherwise only the worker's and a
-- replay's moves: pending -> pending | delivered | dead, dead -> pending.
CREATE FUNCTION webhook_deliveries_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'delivered' THEN
        RAISE EXCEPTION 'webhook delivery % was delivered; its record is final', OLD.id
            USING ERRCODE = 'SE003';
    END IF;
    IF OLD.status = 'dead' AND NEW.status = 'delivered' THEN
        RAISE EXCEPTION 'webhook delivery % is dead; replay it first', OLD.id
            USING ERRCODE = 'SE004';
    END IF;
    IF NEW.endpoint_id <> OLD.endpoint_id OR NEW.event_id <> OLD.event_id
       OR NEW.commitment_id <> OLD.commitment_id OR NEW.audit_seq <> OLD.audit_seq THEN
        RAISE EXCEPTION 'webhook delivery % keeps its endpoint and event', OLD.id
            USING ERRCODE = 'SE004';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER webhook_deliveries_guard BEFORE UPDATE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION webhook_deliveries_guard();
"""

GRANTS = f"""
REVOKE EXECUTE ON FUNCTION webhook_outbox, webhook_legs, webhook_deliveries_guard FROM PUBLIC;
GRANT SELECT ON webhook_event_types, webhook_events TO {APP_ROLE};
GRANT SELECT, INSERT ON webhook_endpoints TO {APP_ROLE};
GRANT UPDATE (active, disabled_at, disabled_by) ON webhook_endpoints TO {APP_ROLE};
GRANT SELECT ON webhook_deliveries TO {APP_ROLE};
GRANT UPDATE (status, attempts, next_attempt_at, first_attempt_at, last_attempt_at,
              last_status, last_error, delivered_at) ON webhook_deliveries TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(TABLES)
    values = ", ".join(f"('{action}', '{kind}')" for action, kind in EVENT_TYPES)
    op.execute(f"INSERT INTO webhook_event_types (action, event_type) VALUES {values}")
    op.execute(OUTBOX)
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER audit_log_webhook_outbox ON audit_log;"
        " DROP TRIGGER webhook_deliveries_guard ON webhook_deliveries;"
        " DROP TABLE webhook_deliveries, webhook_events, webhook_endpoints, webhook_event_types;"
        " DROP FUNCTION webhook_outbox, webhook_legs, webhook_deliveries_guard;"
    )
