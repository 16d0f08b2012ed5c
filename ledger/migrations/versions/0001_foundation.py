"""Foundation: commitments, the transition table, history, audit log, idempotency keys.

The transition rows below are a frozen copy of ``settlement/domain/states.py`` as of this
revision. A migration must not import live application code (a later edit of the table
would silently rewrite history); ``tests/ledger/test_schema.py`` asserts the database
and the Python table agree, so a change to one without a migration fails the suite.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATES = ("DRAFT", "PENDING_REVIEW", "VERIFIED", "ESCROWED", "SETTLED", "CANCELLED")
TERMINAL = ("SETTLED", "CANCELLED")
TRANSITIONS = (
    ("DRAFT", "submit", "PENDING_REVIEW"),
    ("DRAFT", "withdraw", "CANCELLED"),
    ("PENDING_REVIEW", "approve", "VERIFIED"),
    ("PENDING_REVIEW", "reject", "CANCELLED"),
    ("PENDING_REVIEW", "request_info", "DRAFT"),
    ("VERIFIED", "lock", "ESCROWED"),
    ("VERIFIED", "withdraw", "CANCELLED"),
    ("ESCROWED", "settle", "SETTLED"),
    ("ESCROWED", "release", "VERIFIED"),
    ("ESCROWED", "force_cancel", "CANCELLED"),
)
APP_ROLE = "settlement_app"


def _in_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


SCHEMA = f"""
DO $$
BEGIN
    IF (SELECT pg_encoding_to_char(encoding) FROM pg_database
        WHERE datname = current_database()) <> 'UTF8' THEN
        RAISE EXCEPTION 'the settlement database must use UTF8 encoding';
    END IF;
END $$;

CREATE TABLE valid_transitions (
    from_state text NOT NULL CHECK (from_state IN {_in_list(STATES)}),
    event      text NOT NULL,
    to_state   text NOT NULL CHECK (to_state IN {_in_list(STATES)}),
    PRIMARY KEY (from_state, event)
);

CREATE TABLE commitments (
    id           uuid PRIMARY KEY,
    owner_party  text NOT NULL CHECK (length(owner_party) BETWEEN 1 AND 200),
    deal_ref     text NOT NULL CHECK (length(deal_ref) BETWEEN 1 AND 200),
    amount       numeric(38, 18) NOT NULL CHECK (amount > 0),
    currency     text NOT NULL CHECK (currency ~ '^[A-Za-z0-9]{{1,12}}$'),
    state        text NOT NULL CHECK (state IN {_in_list(STATES)}),
    last_event   text NOT NULL,
    version      integer NOT NULL CHECK (version >= 1),
    created_by   text NOT NULL,
    submitted_by text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    expires_at   timestamptz
);
CREATE INDEX commitments_open_by_state ON commitments (state, updated_at)
    WHERE state NOT IN {_in_list(TERMINAL)};
CREATE INDEX commitments_by_owner ON commitments (owner_party, created_at);

CREATE TABLE state_transitions (
    commitment_id uuid NOT NULL REFERENCES commitments (id),
    version       integer NOT NULL,
    from_state    text,
    to_state      text NOT NULL,
    event         text NOT NULL,
    actor         text NOT NULL,
    reason        text,
    at            timestamptz NOT NULL,
    PRIMARY KEY (commitment_id, version)
);

CREATE TABLE audit_log (
    commitment_id      uuid NOT NULL REFERENCES commitments (id),
    seq                integer NOT NULL,
    recorded_at        timestamptz NOT NULL,
    actor              text NOT NULL,
    action             text NOT NULL,
    from_state         text,
    to_state           text,
    commitment_version integer,
    idempotency_key    text,
    payload            text NOT NULL DEFAULT '{{}}' CHECK (payload::jsonb IS NOT NULL),
    chain              text,
    tx_hash            text,
    ledger_index       bigint,
    ledger_hash        text,
    prev_hash          text,
    entry_hash         text NOT NULL,
    PRIMARY KEY (commitment_id, seq)
);
-- exactly one audit entry per commitment version (each change of the row)
CREATE UNIQUE INDEX audit_log_one_per_version ON audit_log (commitment_id, commitment_version)
    WHERE commitment_version IS NOT NULL;
CREATE INDEX audit_log_by_tx_hash ON audit_log (tx_hash) WHERE tx_hash IS NOT NULL;

CREATE TABLE idempotency_keys (
    actor        text NOT NULL,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint  text NOT NULL,
    status       text NOT NULL CHECK (status IN ('in_flight', 'completed')),
    response     text,
    created_at   timestamptz NOT NULL,
    completed_at timestamptz,
    PRIMARY KEY (actor, key)
);
"""

AUDIT = r"""
-- Canonical encoding v1 of an audit entry (ledger/audit.py recomputes it in Python):
--   'settlement-audit/v1' '\n', then each field as a netstring '<octets>:<utf-8 text>,'
--   or '~,' for NULL, in this order: commitment_id, seq, recorded_at (UTC,
--   YYYY-MM-DDTHH:MM:SS.ffffffZ), actor, action, from_state, to_state,
--   commitment_version, idempotency_key, payload, chain, tx_hash, ledger_index,
--   ledger_hash, prev_hash. entry_hash = lowercase hex SHA-256 of those octets.
CREATE FUNCTION audit_field(v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL THEN '~,' ELSE octet_length(v)::text || ':' || v || ',' END
$$;

CREATE FUNCTION audit_entry_hash(
    p_commitment_id uuid, p_seq integer, p_recorded_at timestamptz, p_actor text,
    p_action text, p_from_state text, p_to_state text, p_commitment_version integer,
    p_idempotency_key text, p_payload text, p_chain text, p_tx_hash text,
    p_ledger_index bigint, p_ledger_hash text, p_prev_hash text
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT encode(sha256(convert_to(
        E'settlement-audit/v1\n'
        || audit_field(p_commitment_id::text)
        || audit_field(p_seq::text)
        || audit_field(to_char(p_recorded_at AT TIME ZONE 'UTC',
                               'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || audit_field(p_actor)
        || audit_field(p_action)
        || audit_field(p_from_state)
        || audit_field(p_to_state)
        || audit_field(p_commitment_version::text)
        || audit_field(p_idempotency_key)
        || audit_field(p_payload)
        || audit_field(p_chain)
        || audit_field(p_tx_hash)
        || audit_field(p_ledger_index::text)
        || audit_field(p_ledger_hash)
        || audit_field(p_prev_hash), 'UTF8')), 'hex')
$$;

-- Whatever the inserting role wrote, the database assigns seq, prev_hash and the hash,
-- so no role can append an entry that breaks its chain. Appends to one chain are
-- serialised by a lock on the commitment row (free when a transition already holds it).
CREATE FUNCTION audit_chain_append() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prior_seq integer;
    prior_hash text;
BEGIN
    PERFORM 1 FROM commitments WHERE id = NEW.commitment_id FOR NO KEY UPDATE;
    SELECT seq, entry_hash INTO prior_seq, prior_hash FROM audit_log
        WHERE commitment_id = NEW.commitment_id ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(prior_seq, 0) + 1;
    NEW.prev_hash := prior_hash;
    IF NEW.recorded_at IS NULL THEN
        NEW.recorded_at := clock_timestamp();
    END IF;
    NEW.entry_hash := audit_entry_hash(
        NEW.commitment_id, NEW.seq, NEW.recorded_at, NEW.actor, NEW.action,
        NEW.from_state, NEW.to_state, NEW.commitment_version, NEW.idempotency_key,
        NEW.payload, NEW.chain, NEW.tx_hash, NEW.ledger_index, NEW.ledger_hash,
        NEW.prev_hash);
    RETURN NEW;
END $$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_chain_append();

CREATE FUNCTION refuse_history_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'SE003';
END $$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER state_transitions_append_only BEFORE UPDATE OR DELETE ON state_transitions
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER state_transitions_no_truncate BEFORE TRUNCATE ON state_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
"""

MACHINE = f"""
CREATE FUNCTION commitments_guard_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state <> 'DRAFT' OR NEW.version <> 1 OR NEW.last_event <> 'create' THEN
        RAISE EXCEPTION 'a commitment is created in DRAFT at version 1 (got % at %)',
            NEW.state, NEW.version USING ERRCODE = 'SE001';
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION commitments_guard_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state IN {_in_list(TERMINAL)} THEN
        RAISE EXCEPTION 'commitment % is % (terminal) and cannot change', OLD.id, OLD.state
            USING ERRCODE = 'SE002';
    END IF;
    IF NEW.id <> OLD.id OR NEW.owner_party <> OLD.owner_party
       OR NEW.created_by <> OLD.created_by OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'the identity of commitment % cannot change', OLD.id
            USING ERRCODE = 'SE004';
    END IF;
    IF NEW.version <> OLD.version + 1 THEN
        RAISE EXCEPTION 'commitment % version must advance by one (% -> %)',
            OLD.id, OLD.version, NEW.version USING ERRCODE = 'SE004';
    END IF;
    IF NEW.state <> OLD.state THEN
        PERFORM 1 FROM valid_transitions
            WHERE from_state = OLD.state AND event = NEW.last_event AND to_state = NEW.state;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'invalid transition: % -> %', OLD.state, NEW.state
                USING ERRCODE = 'SE001';
        END IF;
    ELSIF OLD.state <> 'DRAFT' AND (NEW.amount <> OLD.amount OR NEW.currency <> OLD.currency
                                   OR NEW.deal_ref <> OLD.deal_ref) THEN
        RAISE EXCEPTION 'the terms of commitment % can change only in DRAFT', OLD.id
            USING ERRCODE = 'SE004';
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION commitments_refuse_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'commitments are never deleted (%)', TG_OP USING ERRCODE = 'SE002';
END $$;

-- Checked at COMMIT: every version of a commitment row has exactly one audit entry
-- (unique index above) and every state change its history row.
CREATE FUNCTION commitments_change_is_audited() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM audit_log
        WHERE commitment_id = NEW.id AND commitment_version = NEW.version
          AND to_state = NEW.state;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'commitment % version % (%) has no audit entry',
            NEW.id, NEW.version, NEW.state USING ERRCODE = 'SE005';
    END IF;
    IF TG_OP = 'INSERT' OR NEW.state <> OLD.state THEN
        PERFORM 1 FROM state_transitions WHERE commitment_id = NEW.id AND version = NEW.version;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'commitment % version % has no state_transitions row',
                NEW.id, NEW.version USING ERRCODE = 'SE005';
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER commitments_guard_insert BEFORE INSERT ON commitments
    FOR EACH ROW EXECUTE FUNCTION commitments_guard_insert();
CREATE TRIGGER commitments_guard_update BEFORE UPDATE ON commitments
    FOR EACH ROW EXECUTE FUNCTION commitments_guard_update();
CREATE TRIGGER commitments_refuse_delete BEFORE DELETE ON commitments
    FOR EACH ROW EXECUTE FUNCTION commitments_refuse_delete();
CREATE TRIGGER commitments_refuse_truncate BEFORE TRUNCATE ON commitments
    FOR EACH STATEMENT EXECUTE FUNCTION commitments_refuse_delete();
CREATE CONSTRAINT TRIGGER commitments_change_is_audited AFTER INSERT OR UPDATE ON commitments
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION commitments_change_is_audited();
"""

SERVICE = r"""
-- Idempotency probe, first step of every keyed call. Outcomes:
--   NULL        no record: go ahead (the caller records the key in the same transaction)
--   'in_flight' another transaction holds the key right now (HTTP 409)
--   'mismatch'  the key was used with a different request fingerprint (HTTP 422)
--   'replay'    the key completed; response is the stored result
CREATE FUNCTION idempotency_probe(p_actor text, p_key text, p_fingerprint text,
                                  OUT outcome text, OUT response text)
LANGUAGE plpgsql AS $$
DECLARE
    prior idempotency_keys%ROWTYPE;
BEGIN
    IF NOT pg_try_advisory_xact_lock(
            hashtextextended(p_actor || E'\x1f' || p_key, 20261122)) THEN
        outcome := 'in_flight';
        RETURN;
    END IF;
    -- a fresh snapshot: a holder that just committed is visible here
    SELECT * INTO prior FROM idempotency_keys WHERE actor = p_actor AND key = p_key;
    IF NOT FOUND THEN
        RETURN;
    ELSIF prior.fingerprint <> p_fingerprint THEN
        outcome := 'mismatch';
    ELSIF prior.status <> 'completed' THEN
        outcome := 'in_flight';
    ELSE
        outcome := 'replay';
        response := prior.response;
    END IF;
END $$;

CREATE FUNCTION commitment_create(
    p_id uuid, p_owner_party text, p_deal_ref text, p_amount numeric, p_currency text,
    p_expires_at timestamptz, p_actor text, p_idempotency_key text, p_fingerprint text,
    p_payload text, p_at timestamptz
) RETURNS TABLE (outcome text, response text)
LANGUAGE plpgsql AS $$
DECLARE
    v_seq integer;
    v_hash text;
BEGIN
    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO outcome, response
            FROM idempotency_probe(p_actor, p_idempotency_key, p_fingerprint);
        IF outcome IS NOT NULL THEN
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    INSERT INTO commitments (id, owner_party, deal_ref, amount, currency, state, last_event,
                             version, created_by, created_at, updated_at, expires_at)
        VALUES (p_id, p_owner_party, p_deal_ref, p_amount, p_currency, 'DRAFT', 'create',
                1, p_actor, p_at, p_at, p_expires_at);
    INSERT INTO state_transitions (commitment_id, version, from_state, to_state, event, actor,
                                   at)
        VALUES (p_id, 1, NULL, 'DRAFT', 'create', p_actor, p_at);
    INSERT INTO audit_log (commitment_id, recorded_at, actor, action, from_state, to_state,
                           commitment_version, idempotency_key, payload, entry_hash)
        VALUES (p_id, p_at, p_actor, 'create', NULL, 'DRAFT', 1, p_idempotency_key, p_payload, '')
        RETURNING seq, entry_hash INTO v_seq, v_hash;
    response := json_build_object(
        'commitment_id', p_id, 'event', 'create', 'from_state', NULL, 'to_state', 'DRAFT',
        'version', 1, 'audit_seq', v_seq, 'entry_hash', v_hash)::text;
    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (actor, key, fingerprint, status, response, created_at,
                                      completed_at)
            VALUES (p_actor, p_idempotency_key, p_fingerprint, 'completed', response, p_at, p_at);
    END IF;
    outcome := 'applied';
    RETURN NEXT;
END $$;

-- One round trip per transition: lock the row, check version, guards and the
-- transition table, update, write history and audit, record the idempotency key.
CREATE FUNCTION commitment_transition(
    p_id uuid, p_expected_version integer, p_event text, p_actor text, p_reason text,
    p_require_owner text, p_forbid_submitter text, p_idempotency_key text,
    p_fingerprint text, p_payload text, p_at timestamptz, p_chain text, p_tx_hash text,
    p_ledger_index bigint, p_ledger_hash text
) RETURNS TABLE (outcome text, response text)
LANGUAGE plpgsql AS $$
DECLARE
    cur commitments%ROWTYPE;
    v_to text;
    v_seq integer;
    v_hash text;
BEGIN
    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO outcome, response
            FROM idempotency_probe(p_actor, p_idempotency_key, p_fingerprint);
        IF outcome IS NOT NULL THEN
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    SELECT * INTO cur FROM commitments WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'commitment % not found', p_id USING ERRCODE = 'SE404';
    END IF;
    IF p_expected_version IS NOT NULL AND cur.version <> p_expected_version THEN
        RAISE EXCEPTION 'commitment % is at version %, not %', p_id, cur.version, p_expected_version
            USING ERRCODE = 'SE409';
    END IF;
    IF p_require_owner IS NOT NULL AND cur.owner_party <> p_require_owner THEN
        RAISE EXCEPTION 'party % does not own commitment %', p_require_owner, p_id
            USING ERRCODE = 'SE403';
    END IF;
    IF p_forbid_submitter IS NOT NULL AND cur.submitted_by = p_forbid_submitter THEN
        RAISE EXCEPTION '% submitted commitment % and cannot %', p_forbid_submitter, p_id, p_event
            USING ERRCODE = 'SE403';
    END IF;
    SELECT to_state INTO v_to FROM valid_transitions
        WHERE from_state = cur.state AND event = p_event;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % is not allowed in state %', p_event, cur.state
            USING ERRCODE = 'SE422';
    END IF;
    UPDATE commitments
        SET state = v_to, last_event = p_event, version = cur.version + 1, updated_at = p_at,
            submitted_by = CASE WHEN p_event = 'submit' THEN p_actor ELSE submitted_by END
        WHERE id = p_id;
    INSERT INTO state_transitions (commitment_id, version, from_state, to_state, event, actor,
                                   reason, at)
        VALUES (p_id, cur.version + 1, cur.state, v_to, p_event, p_actor, p_reason, p_at);
    INSERT INTO audit_log (commitment_id, recorded_at, actor, action, from_state, to_state,
                           commitment_version, idempotency_key, payload, chain, tx_hash,
                           ledger_index, ledger_hash, entry_hash)
        VALUES (p_id, p_at, p_actor, p_event, cur.state, v_to, cur.version + 1,
                p_idempotency_key, p_payload, p_chain, p_tx_hash, p_ledger_index,
                p_ledger_hash, '')
        RETURNING seq, entry_hash INTO v_seq, v_hash;
    response := json_build_object(
        'commitment_id', p_id, 'event', p_event, 'from_state', cur.state, 'to_state', v_to,
        'version', cur.version + 1, 'audit_seq', v_seq, 'entry_hash', v_hash)::text;
    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (actor, key, fingerprint, status, response, created_at,
                                      completed_at)
            VALUES (p_actor, p_idempotency_key, p_fingerprint, 'completed', response, p_at, p_at);
    END IF;
    outcome := 'applied';
    RETURN NEXT;
END $$;
"""

GRANTS = f"""
DO $$
DECLARE
    r pg_roles%ROWTYPE;
BEGIN
    SELECT * INTO r FROM pg_roles WHERE rolname = '{APP_ROLE}';
    IF NOT FOUND THEN
        CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    ELSIF r.rolsuper OR r.rolbypassrls OR r.rolcreaterole THEN
        RAISE EXCEPTION 'role {APP_ROLE} exists with superuser, bypassrls or createrole; '
                        'the engine must not connect with such powers';
    END IF;
END $$;

REVOKE ALL ON valid_transitions, commitments, state_transitions, audit_log, idempotency_keys
    FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION commitment_create, commitment_transition, idempotency_probe,
                           audit_chain_append FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO {APP_ROLE};
GRANT SELECT ON valid_transitions, alembic_version TO {APP_ROLE};
GRANT SELECT, INSERT, UPDATE ON commitments TO {APP_ROLE};
GRANT SELECT, INSERT ON state_transitions, audit_log TO {APP_ROLE};
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO {APP_ROLE};
GRANT EXECUTE ON FUNCTION commitment_create, commitment_transition, idempotency_probe,
                          audit_entry_hash, audit_field TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(SCHEMA)
    rows = ", ".join(f"('{f}', '{e}', '{t}')" for f, e, t in TRANSITIONS)
    op.execute(f"INSERT INTO valid_transitions (from_state, event, to_state) VALUES {rows}")
    op.execute(AUDIT)
    op.execute(MACHINE)
    op.execute(SERVICE)
    op.execute(GRANTS)
    password = context.config.attributes.get("app_password")
    if password:
        # a literal, not a bind parameter: utility statements take no parameters
        quoted = "'" + str(password).replace("'", "''") + "'"
        op.execute(f"ALTER ROLE {APP_ROLE} PASSWORD {quoted}")


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS idempotency_keys, audit_log, state_transitions,
                             commitments, valid_transitions CASCADE;
        DROP FUNCTION IF EXISTS commitment_transition, commitment_create, idempotency_probe,
            commitments_change_is_audited, commitments_refuse_delete, commitments_guard_update,
            commitments_guard_insert, refuse_history_change, audit_chain_append,
            audit_entry_hash, audit_field;
        """
    )
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")
