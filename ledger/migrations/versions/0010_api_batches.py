"""The signed API in batches: a mutating request's key check, nonce and idempotency
claim in one call, for many requests at once.

``api_request_claims`` takes parallel arrays, one element per request, and decides
them in array order, each exactly as these three steps one after another would:

1. the key must be registered ("key_unknown") and not revoked ("key_revoked");
2. the nonce is recorded for the key, or the request is "nonce_reused";
3. ``api_idempotency_claim`` (migration 0004) claims the Idempotency-Key.

Nothing is recorded for a request refused at step 1 or 2. Because the elements run
one after another in one transaction, two elements with one (key, nonce) find each
other (the second is "nonce_reused"), and two with one Idempotency-Key too (the second
finds the first's live claim: "in_flight"). The call commits as any transaction does
(synchronously, by default): the nonces are durable before any route acts on their
requests. An error in any element rolls the whole call back.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

APP_ROLE = "settlement_app"

UP = f"""
CREATE FUNCTION api_request_claims(
    p_key_ids text[], p_nonces text[], p_ats timestamptz[], p_keys text[],
    p_fingerprints text[], p_claims uuid[], p_lease_untils timestamptz[])
RETURNS TABLE (ord integer, outcome text, response_status smallint, response_type text,
               response_etag text, response_location text, response_body bytea)
LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(array_length(p_key_ids, 1), 0);
    k_revoked timestamptz;
    c record;
BEGIN
    IF coalesce(array_length(p_nonces, 1), 0) <> n
       OR coalesce(array_length(p_ats, 1), 0) <> n
       OR coalesce(array_length(p_keys, 1), 0) <> n
       OR coalesce(array_length(p_fingerprints, 1), 0) <> n
       OR coalesce(array_length(p_claims, 1), 0) <> n
       OR coalesce(array_length(p_lease_untils, 1), 0) <> n THEN
        RAISE EXCEPTION 'api_request_claims: the arrays differ in length'
            USING ERRCODE = '22023';
    END IF;
    FOR i IN 1 .. n LOOP
        ord := i;
        response_status := NULL;
        response_type := NULL;
        response_etag := NULL;
        response_location := NULL;
        response_body := NULL;
        SELECT revoked_at INTO k_revoked FROM api_keys WHERE key_id = p_key_ids[i];
        IF NOT FOUND THEN
            outcome := 'key_unknown';
        ELSIF k_revoked IS NOT NULL THEN
            outcome := 'key_revoked';
        ELSE
            INSERT INTO api_nonces (key_id, nonce, created_at)
                VALUES (p_key_ids[i], p_nonces[i], p_ats[i])
                ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                outcome := 'nonce_reused';
            ELSE
                SELECT * INTO c FROM api_idempotency_claim(p_key_ids[i], p_keys[i],
                    p_fingerprints[i], p_claims[i], p_ats[i], p_lease_untils[i]);
                outcome := c.outcome;
                response_status := c.response_status;
                response_type := c.response_type;
                response_etag := c.response_etag;
                response_location := c.response_location;
                response_body := c.response_body;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION api_request_claims FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_request_claims TO {APP_ROLE};
"""

DOWN = """
DROP FUNCTION IF EXISTS api_request_claims;
"""


def upgrade() -> None:
    op.execute(UP)


def downgrade() -> None:
    op.execute(DOWN)
