"""The signed API: registered keys, seen nonces, HTTP-level idempotency records.

What the database itself enforces from this revision on:

- a key's id, role, party, public key and creation time never change; revocation is
  one-way (``revoked_at`` goes from NULL to a time once) and a key is never deleted, so
  the actor named in an audit entry always resolves to the key that signed it;
- an allocator key names a party; the role is one of the four API roles;
- a nonce is accepted once per key (primary key); old ones may be pruned;
- an HTTP idempotency record is (key, Idempotency-Key) unique; its fingerprint never
  changes, and once completed neither does its stored response.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

APP_ROLE = "settlement_app"

SCHEMA = """
CREATE TABLE api_keys (
    key_id      text PRIMARY KEY CHECK (key_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    role        text NOT NULL CHECK (role IN
                    ('allocator', 'compliance_officer', 'admin', 'auditor')),
    party       text CHECK (party IS NULL OR length(party) BETWEEN 1 AND 200),
    -- raw 32-byte Ed25519 public key
    public_key  bytea NOT NULL UNIQUE CHECK (octet_length(public_key) = 32),
    created_at  timestamptz NOT NULL,
    created_by  text NOT NULL,
    revoked_at  timestamptz,
    revoked_by  text,
    CHECK (role <> 'allocator' OR party IS NOT NULL),
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);

CREATE TABLE api_nonces (
    key_id     text NOT NULL REFERENCES api_keys (key_id),
    nonce      text NOT NULL CHECK (length(nonce) BETWEEN 1 AND 128),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX api_nonces_by_age ON api_nonces (created_at);

CREATE TABLE api_idempotency (
    key_id          text NOT NULL REFERENCES api_keys (key_id),
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    fingerprint     text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    status          text NOT NULL CHECK (status IN ('in_flight', 'completed')),
    claim           uuid NOT NULL,
    lease_until     timestamptz NOT NULL,
    response_status smallint CHECK (response_status BETWEEN 100 AND 599),
    response_type   text,
    response_etag   text,
    response_location text,
    response_body   bytea,
    created_at      timestamptz NOT NULL,
    completed_at    timestamptz,
    PRIMARY KEY (key_id, idempotency_key),
    CHECK ((status = 'completed') = (response_status IS NOT NULL AND completed_at IS NOT NULL
                                     AND response_body IS NOT NULL))
);
CREATE INDEX api_idempotency_by_age ON api_idempotency (created_at);
"""

RULES = """
CREATE FUNCTION api_keys_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'api keys are never deleted; revoke %', OLD.key_id
            USING ERRCODE = 'SE004';
    END IF;
    IF NEW.key_id <> OLD.key_id OR NEW.role <> OLD.role
       OR NEW.party IS DISTINCT FROM OLD.party OR NEW.public_key <> OLD.public_key
       OR NEW.created_at <> OLD.created_at OR NEW.created_by <> OLD.created_by THEN
        RAISE EXCEPTION 'api key % : only revocation may change a key', OLD.key_id
            USING ERRCODE = 'SE004';
    END IF;
    IF OLD.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'api key % is revoked; revocation is final', OLD.key_id
            USING ERRCODE = 'SE004';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER api_keys_guard BEFORE UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_guard();

CREATE FUNCTION api_idempotency_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'completed' THEN
        RAISE EXCEPTION 'idempotency record % / % is completed and final',
            OLD.key_id, OLD.idempotency_key USING ERRCODE = 'SE004';
    END IF;
    IF (NEW.key_id <> OLD.key_id
            OR NEW.idempotency_key <> OLD.idempotency_key
            OR NEW.fingerprint <> OLD.fingerprint OR NEW.created_at <> OLD.created_at) THEN
        RAISE EXCEPTION 'idempotency record identity and fingerprint never change'
            USING ERRCODE = 'SE004';
    END IF;
    RETURN NEW;
END $$;
-- DELETE stays allowed: a failed request releases its claim, and records past their
-- retention are pruned
CREATE TRIGGER api_idempotency_guard BEFORE UPDATE ON api_idempotency
    FOR EACH ROW EXECUTE FUNCTION api_idempotency_guard();

-- One round trip decides what a keyed request may do (DESIGN 6 at the HTTP level):
--   claimed   no record, or an in-flight record whose lease ran out (its holder died):
--             the caller now holds the claim ``p_claim`` until ``p_lease_until``
--   replay    a completed record with the same fingerprint: its stored response
--   mismatch  the key was used for a different request
--   in_flight another request holds a live claim
CREATE FUNCTION api_idempotency_claim(
    p_key_id text, p_key text, p_fingerprint text, p_claim uuid, p_at timestamptz,
    p_lease_until timestamptz,
    OUT outcome text, OUT response_status smallint, OUT response_type text,
    OUT response_etag text, OUT response_location text, OUT response_body bytea)
LANGUAGE plpgsql AS $$
DECLARE
    prior api_idempotency%ROWTYPE;
BEGIN
    INSERT INTO api_idempotency (key_id, idempotency_key, fingerprint, status, claim,
                                 lease_until, created_at)
    VALUES (p_key_id, p_key, p_fingerprint, 'in_flight', p_claim, p_lease_until, p_at)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        outcome := 'claimed';
        RETURN;
    END IF;
    SELECT * INTO prior FROM api_idempotency
        WHERE key_id = p_key_id AND idempotency_key = p_key FOR UPDATE;
    IF NOT FOUND THEN
        -- released between the insert and this read: the caller may simply retry
        outcome := 'in_flight';
    ELSIF prior.fingerprint <> p_fingerprint THEN
        outcome := 'mismatch';
    ELSIF prior.status = 'completed' THEN
        outcome := 'replay';
        response_status := prior.response_status;
        response_type := prior.response_type;
        response_etag := prior.response_etag;
        response_location := prior.response_location;
        response_body := prior.response_body;
    ELSIF prior.lease_until > p_at THEN
        outcome := 'in_flight';
    ELSE
        UPDATE api_idempotency SET claim = p_claim, lease_until = p_lease_until
            WHERE key_id = p_key_id AND idempotency_key = p_key;
        outcome := 'claimed';
    END IF;
END $$;
"""

GRANTS = f"""
REVOKE ALL ON api_keys, api_nonces, api_idempotency FROM PUBLIC;
GRANT SELECT, INSERT ON api_keys TO {APP_ROLE};
GRANT UPDATE (revoked_at, revoked_by) ON api_keys TO {APP_ROLE};
GRANT SELECT, INSERT, DELETE ON api_nonces TO {APP_ROLE};
GRANT SELECT, INSERT, UPDATE, DELETE ON api_idempotency TO {APP_ROLE};
GRANT EXECUTE ON FUNCTION api_idempotency_claim TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(SCHEMA)
    op.execute(RULES)
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS api_idempotency, api_nonces, api_keys CASCADE;
        DROP FUNCTION IF EXISTS api_idempotency_claim, api_idempotency_guard, api_keys_guard;
        """
    )
