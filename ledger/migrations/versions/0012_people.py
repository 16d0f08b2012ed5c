"""People: a key is bound to the person it belongs to, and the audit logs name the person
with the key that signed beside it.

An auditor reads the audit log to learn who did what. Until this revision an entry named
the API key (``key-f18bcc50de7fc210``), so rotating a key changed who a reader thought
had acted. From this revision on:

- every API key names its ``person``: for an officer key the registered officer id
  (the database refuses a key for an officer that is not registered), for an allocator
  key ``<party>/<user>`` (refused unless it starts with the key's party and a slash),
  for an admin or auditor key the person's name. The person never changes. Keys
  registered before this revision are given their own key id as their person: they
  keep working, and their acts are recorded under the name they always had;
- ``audit_log`` and ``compliance_audit`` record the person (or ``system``, or the
  operator) as ``actor`` and the key that signed the request in ``key_id`` (NULL when no
  key signed: the engine itself, operator commands, console sessions). On insert the
  database refuses a key that is not a key of the entry's actor;
- the hash of an entry covers ``key_id`` through a second canonical encoding. Each
  entry stores the encoding it was hashed with (``encoding_version``); entries written
  before this revision keep version 1 and verify as they always did, every new entry is
  version 2 (the chain triggers set it, whatever the inserting role wrote). The version
  is also the first line of the hashed bytes, so a version 2 hash never verifies as
  version 1: an entry cannot be relabelled to an encoding that does not cover its key.
  A version 1 entry cannot carry a key at all (CHECK), and ``ledger.audit`` refuses a
  chain whose versions go down. Both encodings are documented in ``ledger/audit.py``
  and ``compliance/audit.py``; ``audit_entry_hash_of`` and ``compliance_audit_hash_of``
  recompute an entry's hash in SQL with the encoding it names;
- ``commitment_create``, ``commitment_transition`` and ``commitment_approve`` take the
  signing key as a last argument (``p_key_id``, default NULL, so a call without it
  still works and records no key). Idempotency keys stay per (actor, key) and the actor
  is the person: a retry signed with a rotated key of the same person replays the first
  result instead of acting a second time;
- a settlement remembers the key that signed its force-cancel request
  (``cancel_requested_key_id``), so the transition the worker makes for that admin can
  name it.

Downgrading refuses while any version 2 entry exists: its hash covers a column the
downgrade would drop, and it could never be verified again.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

APP_ROLE = "settlement_app"

COLUMNS = r"""
ALTER TABLE api_keys ADD COLUMN person text;
-- the backfill changes no identity column; 0004's guard would refuse revoked rows
ALTER TABLE api_keys DISABLE TRIGGER api_keys_guard;
UPDATE api_keys SET person = key_id;
ALTER TABLE api_keys ENABLE TRIGGER api_keys_guard;
ALTER TABLE api_keys ALTER COLUMN person SET NOT NULL;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_person_check
    CHECK (length(person) BETWEEN 1 AND 200 AND person !~ '[[:cntrl:]]' AND person <> 'system');
CREATE INDEX api_keys_by_person ON api_keys (person);

ALTER TABLE audit_log ADD COLUMN key_id text;
ALTER TABLE audit_log ADD COLUMN encoding_version smallint NOT NULL DEFAULT 1;
ALTER TABLE audit_log ALTER COLUMN encoding_version SET DEFAULT 2;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_encoding_version_check
    CHECK (encoding_version IN (1, 2));
ALTER TABLE audit_log ADD CONSTRAINT audit_log_v1_names_no_key
    CHECK (encoding_version = 2 OR key_id IS NULL);

ALTER TABLE compliance_audit ADD COLUMN key_id text;
ALTER TABLE compliance_audit ADD COLUMN encoding_version smallint NOT NULL DEFAULT 1;
ALTER TABLE compliance_audit ALTER COLUMN encoding_version SET DEFAULT 2;
ALTER TABLE compliance_audit ADD CONSTRAINT compliance_audit_encoding_version_check
    CHECK (encoding_version IN (1, 2));
ALTER TABLE compliance_audit ADD CONSTRAINT compliance_audit_v1_names_no_key
    CHECK (encoding_version = 2 OR key_id IS NULL);

ALTER TABLE settlements ADD COLUMN cancel_requested_key_id text;
"""

COLUMNS_BEFORE = """
ALTER TABLE settlements DROP COLUMN cancel_requested_key_id;
ALTER TABLE compliance_audit DROP CONSTRAINT compliance_audit_v1_names_no_key,
    DROP CONSTRAINT compliance_audit_encoding_version_check,
    DROP COLUMN encoding_version, DROP COLUMN key_id;
ALTER TABLE audit_log DROP CONSTRAINT audit_log_v1_names_no_key,
    DROP CONSTRAINT audit_log_encoding_version_check,
    DROP COLUMN encoding_version, DROP COLUMN key_id;
DROP INDEX api_keys_by_person;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_person_check, DROP COLUMN person;
"""

KEYS = r"""
-- A new key names a person who may act in its role. Keys registered before 0012 were
-- backfilled (person = key id) and are not re-judged.
CREATE FUNCTION api_keys_person_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.role = 'compliance_officer' AND NOT EXISTS (
            SELECT 1 FROM compliance_officers WHERE officer_id = NEW.person) THEN
        RAISE EXCEPTION '% is not a registered compliance officer: register the officer '
                        '(settle officers add) before giving them a key', NEW.person
            USING ERRCODE = 'SE433';
    END IF;
    IF NEW.role = 'allocator' AND left(NEW.person, length(NEW.party) + 1) <> NEW.party || '/' THEN
        RAISE EXCEPTION 'an allocator key names a user of its party (%/<user>), not %',
            NEW.party, NEW.person USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER api_keys_person_guard BEFORE INSERT ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_person_guard();
"""

# 0004's guard, with the person among what never changes (``person`` True) or without
KEYS_GUARD = """
CREATE OR REPLACE FUNCTION api_keys_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'api keys are never deleted; revoke %', OLD.key_id
            USING ERRCODE = 'SE004';
    END IF;
    IF NEW.key_id <> OLD.key_id OR NEW.role <> OLD.role
       OR NEW.party IS DISTINCT FROM OLD.party OR NEW.public_key <> OLD.public_key
       OR NEW.created_at <> OLD.created_at OR NEW.created_by <> OLD.created_by{person} THEN
        RAISE EXCEPTION 'api key % : only revocation may change a key', OLD.key_id
            USING ERRCODE = 'SE004';
    END IF;
    IF OLD.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'api key % is revoked; revocation is final', OLD.key_id
            USING ERRCODE = 'SE004';
    END IF;
    RETURN NEW;
END $$;
"""

HASHES = r"""
-- Canonical encoding v2 of an audit entry (ledger/audit.py recomputes it in Python):
--   'settlement-audit/v2' '\n', then the netstrings of v1 (audit_field) of
--   commitment_id, seq, recorded_at, actor, key_id, action, from_state, to_state,
--   commitment_version, idempotency_key, payload, chain, tx_hash, ledger_index,
--   ledger_hash, prev_hash. entry_hash = lowercase hex SHA-256 of those octets.
CREATE FUNCTION audit_entry_hash_v2(
    p_commitment_id uuid, p_seq integer, p_recorded_at timestamptz, p_actor text,
    p_key_id text, p_action text, p_from_state text, p_to_state text,
    p_commitment_version integer, p_idempotency_key text, p_payload text, p_chain text,
    p_tx_hash text, p_ledger_index bigint, p_ledger_hash text, p_prev_hash text
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT encode(sha256(convert_to(
        E'settlement-audit/v2\n'
        || audit_field(p_commitment_id::text)
        || audit_field(p_seq::text)
        || audit_field(to_char(p_recorded_at AT TIME ZONE 'UTC',
                               'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || audit_field(p_actor)
        || audit_field(p_key_id)
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

-- An entry's hash recomputed with the encoding the entry names (NULL for an unknown one).
CREATE FUNCTION audit_entry_hash_of(e audit_log) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE e.encoding_version
        WHEN 1 THEN audit_entry_hash(
            e.commitment_id, e.seq, e.recorded_at, e.actor, e.action, e.from_state,
            e.to_state, e.commitment_version, e.idempotency_key, e.payload, e.chain,
            e.tx_hash, e.ledger_index, e.ledger_hash, e.prev_hash)
        WHEN 2 THEN audit_entry_hash_v2(
            e.commitment_id, e.seq, e.recorded_at, e.actor, e.key_id, e.action,
            e.from_state, e.to_state, e.commitment_version, e.idempotency_key, e.payload,
            e.chain, e.tx_hash, e.ledger_index, e.ledger_hash, e.prev_hash)
    END
$$;

-- Canonical encodings of a compliance audit entry (compliance/audit.py recomputes them):
--   v1 'settlement-compliance-audit/v1' '\n', then the netstrings of seq, recorded_at,
--      actor, action, subject_kind, subject, subject_version, payload, prev_hash;
--   v2 'settlement-compliance-audit/v2' '\n', then the same with key_id after actor.
CREATE FUNCTION compliance_audit_hash_of(e compliance_audit) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT encode(sha256(convert_to(
        CASE e.encoding_version
            WHEN 1 THEN E'settlement-compliance-audit/v1\n'
            WHEN 2 THEN E'settlement-compliance-audit/v2\n'
        END
        || audit_field(e.seq::text)
        || audit_field(to_char(e.recorded_at AT TIME ZONE 'UTC',
                               'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || audit_field(e.actor)
        || CASE WHEN e.encoding_version = 1 THEN '' ELSE audit_field(e.key_id) END
        || audit_field(e.action)
        || audit_field(e.subject_kind)
        || audit_field(e.subject)
        || audit_field(e.subject_version::text)
        || audit_field(e.payload)
        || audit_field(e.prev_hash), 'UTF8')), 'hex')
$$;

-- An entry that names a key names that key's person as its actor.
CREATE FUNCTION audit_check_key(p_key_id text, p_actor text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_key_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM api_keys WHERE key_id = p_key_id AND person = p_actor) THEN
        RAISE EXCEPTION 'key % is not a key of %: an audit entry names the person whose key '
                        'signed', p_key_id, p_actor USING ERRCODE = '23514';
    END IF;
END $$;
"""

# The two chain triggers of 0001 and 0002, hashing with v2 (``now``) or as before.
AUDIT_APPEND = r"""
CREATE OR REPLACE FUNCTION audit_chain_append() RETURNS trigger
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
    END IF;{hash}
    RETURN NEW;
END $$;
"""

AUDIT_HASH_NOW = """
    PERFORM audit_check_key(NEW.key_id, NEW.actor);
    NEW.encoding_version := 2;
    NEW.entry_hash := audit_entry_hash_of(NEW);"""

AUDIT_HASH_BEFORE = """
    NEW.entry_hash := audit_entry_hash(
        NEW.commitment_id, NEW.seq, NEW.recorded_at, NEW.actor, NEW.action,
        NEW.from_state, NEW.to_state, NEW.commitment_version, NEW.idempotency_key,
        NEW.payload, NEW.chain, NEW.tx_hash, NEW.ledger_index, NEW.ledger_hash,
        NEW.prev_hash);"""

COMPLIANCE_APPEND = r"""
CREATE OR REPLACE FUNCTION compliance_audit_append() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prior_seq bigint;
    prior_hash text;
BEGIN
    -- one chain: appends are serialised (rare: officer and admin actions)
    PERFORM pg_advisory_xact_lock(hashtextextended('compliance_audit', 20261123));
    SELECT seq, entry_hash INTO prior_seq, prior_hash FROM compliance_audit
        ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(prior_seq, 0) + 1;
    NEW.prev_hash := prior_hash;
    IF NEW.recorded_at IS NULL THEN
        NEW.recorded_at := clock_timestamp();
    END IF;{hash}
    RETURN NEW;
END $$;
"""

COMPLIANCE_HASH_NOW = """
    PERFORM audit_check_key(NEW.key_id, NEW.actor);
    NEW.encoding_version := 2;
    NEW.entry_hash := compliance_audit_hash_of(NEW);"""

COMPLIANCE_HASH_BEFORE = r"""
    NEW.entry_hash := encode(sha256(convert_to(
        E'settlement-compliance-audit/v1\n'
        || audit_field(NEW.seq::text)
        || audit_field(to_char(NEW.recorded_at AT TIME ZONE 'UTC',
                               'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || audit_field(NEW.actor)
        || audit_field(NEW.action)
        || audit_field(NEW.subject_kind)
        || audit_field(NEW.subject)
        || audit_field(NEW.subject_version::text)
        || audit_field(NEW.payload)
        || audit_field(NEW.prev_hash), 'UTF8')), 'hex');"""

# The three service functions of 0001 and 0002. ``{key_param}`` adds the signing key as
# a last argument (default NULL), ``{key_col}`` / ``{key_val}`` write it beside the actor.
CREATE = r"""
CREATE FUNCTION commitment_create(
    p_id uuid, p_owner_party text, p_deal_ref text, p_amount numeric, p_currency text,
    p_expires_at timestamptz, p_actor text, p_idempotency_key text, p_fingerprint text,
    p_payload text, p_at timestamptz{key_param}
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
                           commitment_version, idempotency_key, payload, entry_hash{key_col})
        VALUES (p_id, p_at, p_actor, 'create', NULL, 'DRAFT', 1, p_idempotency_key, p_payload,
                ''{key_val})
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
"""

TRANSITION = r"""
CREATE FUNCTION commitment_transition(
    p_id uuid, p_expected_version integer, p_event text, p_actor text, p_reason text,
    p_require_owner text, p_forbid_submitter text, p_idempotency_key text,
    p_fingerprint text, p_payload text, p_at timestamptz, p_chain text, p_tx_hash text,
    p_ledger_index bigint, p_ledger_hash text{key_param}
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
                           ledger_index, ledger_hash, entry_hash{key_col})
        VALUES (p_id, p_at, p_actor, p_event, cur.state, v_to, cur.version + 1,
                p_idempotency_key, p_payload, p_chain, p_tx_hash, p_ledger_index,
                p_ledger_hash, ''{key_val})
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

APPROVE = r"""
CREATE FUNCTION commitment_approve(
    p_id uuid, p_expected_version integer, p_actor text, p_override_reason text,
    p_idempotency_key text, p_fingerprint text, p_payload text, p_at timestamptz{key_param}
) RETURNS TABLE (outcome text, response text)
LANGUAGE plpgsql AS $$
DECLARE
    cur commitments%ROWTYPE;
    officer compliance_officers%ROWTYPE;
    s screenings%ROWTYPE;
    v_count integer;
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
    IF cur.submitted_by = p_actor THEN
        RAISE EXCEPTION '% submitted commitment % and cannot approve', p_actor, p_id
            USING ERRCODE = 'SE430';
    END IF;
    IF cur.state <> 'PENDING_REVIEW' THEN
        RAISE EXCEPTION 'event approve is not allowed in state % (commitment % is not under '
                        'review)', cur.state, p_id USING ERRCODE = 'SE422';
    END IF;
    SELECT * INTO officer FROM compliance_officers WHERE officer_id = p_actor;
    IF NOT FOUND OR NOT officer.active THEN
        RAISE EXCEPTION '% is not an active registered compliance officer and cannot approve',
            p_actor USING ERRCODE = 'SE433';
    END IF;
    SELECT * INTO s FROM screenings WHERE commitment_id = p_id AND review_version = cur.version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'commitment % has no screening for review round %', p_id, cur.version
            USING ERRCODE = 'SE435';
    END IF;
    IF EXISTS (SELECT 1 FROM commitment_approvals WHERE commitment_id = p_id
               AND review_version = cur.version AND officer_id = p_actor) THEN
        RAISE EXCEPTION '% already approved commitment % in this review; the second approval '
                        'must come from another officer', p_actor, p_id USING ERRCODE = 'SE431';
    END IF;
    -- a hard fail: the first approval of the round must be a senior officer's override;
    -- after it, a second officer (four eyes) may approve without one
    IF s.outcome = 'hard_fail' AND (p_override_reason IS NULL OR NOT officer.senior)
       AND NOT EXISTS (SELECT 1 FROM commitment_approvals WHERE commitment_id = p_id
                       AND review_version = cur.version AND senior
                       AND override_reason IS NOT NULL) THEN
        RAISE EXCEPTION 'screening of commitment % has a hard fail: approval needs an '
                        'override reason from a senior officer (% is %)', p_id, p_actor,
                        CASE WHEN officer.senior THEN 'senior but gave no override reason'
                             ELSE 'not senior' END
            USING ERRCODE = 'SE432';
    END IF;
    INSERT INTO commitment_approvals (commitment_id, review_version, officer_id, senior,
                                      override_reason, approved_at)
        VALUES (p_id, cur.version, p_actor, officer.senior, p_override_reason, p_at);
    SELECT count(*) INTO v_count FROM commitment_approvals
        WHERE commitment_id = p_id AND review_version = cur.version;
    IF v_count >= s.approvals_required THEN
        RETURN QUERY SELECT * FROM commitment_transition(
            p_id, cur.version, 'approve', p_actor, p_override_reason, NULL, p_actor,
            p_idempotency_key, p_fingerprint, p_payload, p_at, NULL, NULL, NULL, NULL{key_val});
        RETURN;
    END IF;
    INSERT INTO audit_log (commitment_id, recorded_at, actor, action, from_state, to_state,
                           commitment_version, idempotency_key, payload, entry_hash{key_col})
        VALUES (p_id, p_at, p_actor, 'approval_recorded', NULL, NULL, NULL,
                p_idempotency_key, p_payload, ''{key_val})
        RETURNING seq, entry_hash INTO v_seq, v_hash;
    response := json_build_object(
        'commitment_id', p_id, 'event', 'approve', 'from_state', cur.state,
        'to_state', cur.state, 'version', cur.version, 'audit_seq', v_seq,
        'entry_hash', v_hash)::text;
    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (actor, key, fingerprint, status, response, created_at,
                                      completed_at)
            VALUES (p_actor, p_idempotency_key, p_fingerprint, 'completed', response, p_at, p_at);
    END IF;
    outcome := 'applied';
    RETURN NEXT;
END $$;
"""

#: the argument types of the service functions before this revision, to drop them by
_SIGNATURES_BEFORE = {
    "commitment_create": "uuid, text, text, numeric, text, timestamptz, text, text, text, text,"
    " timestamptz",
    "commitment_transition": "uuid, integer, text, text, text, text, text, text, text, text,"
    " timestamptz, text, text, bigint, text",
    "commitment_approve": "uuid, integer, text, text, text, text, text, timestamptz",
}
_NEW_FUNCTIONS = (
    "audit_entry_hash_v2",
    "audit_entry_hash_of",
    "compliance_audit_hash_of",
    "audit_check_key",
)


def _service_functions(*, keyed: bool) -> str:
    parts = {
        "key_param": ",\n    p_key_id text DEFAULT NULL" if keyed else "",
        "key_col": ", key_id" if keyed else "",
        "key_val": ", p_key_id" if keyed else "",
    }
    return "".join(sql.format(**parts) for sql in (CREATE, TRANSITION, APPROVE))


def _drop_service_functions(*, keyed: bool) -> str:
    drops = []
    for name, args in _SIGNATURES_BEFORE.items():
        signature = f"{args}, text" if keyed else args
        drops.append(f"DROP FUNCTION {name}({signature});")
    return "\n".join(drops)


def _grants() -> str:
    service = ", ".join(_SIGNATURES_BEFORE)
    new = ", ".join(_NEW_FUNCTIONS)
    return f"""
REVOKE EXECUTE ON FUNCTION {service}, {new}, api_keys_person_guard FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {service}, {new} TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(COLUMNS)
    op.execute(KEYS)
    op.execute(KEYS_GUARD.format(person=" OR NEW.person <> OLD.person"))
    op.execute(HASHES)
    op.execute(AUDIT_APPEND.format(hash=AUDIT_HASH_NOW))
    op.execute(COMPLIANCE_APPEND.format(hash=COMPLIANCE_HASH_NOW))
    op.execute(_drop_service_functions(keyed=False))
    op.execute(_service_functions(keyed=True))
    op.execute(_grants())


REFUSE_DOWNGRADE = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_log WHERE encoding_version = 2)
       OR EXISTS (SELECT 1 FROM compliance_audit WHERE encoding_version = 2) THEN
        RAISE EXCEPTION 'audit entries of encoding version 2 exist; their hashes cover the '
                        'key_id this downgrade would drop, so they could never be verified again';
    END IF;
END $$;
"""


def downgrade() -> None:
    op.execute(REFUSE_DOWNGRADE)
    op.execute(_drop_service_functions(keyed=True))
    op.execute(_service_functions(keyed=False))
    service = ", ".join(_SIGNATURES_BEFORE)
    op.execute(f"REVOKE EXECUTE ON FUNCTION {service} FROM PUBLIC;")
    op.execute(f"GRANT EXECUTE ON FUNCTION {service} TO {APP_ROLE};")
    op.execute(AUDIT_APPEND.format(hash=AUDIT_HASH_BEFORE))
    op.execute(COMPLIANCE_APPEND.format(hash=COMPLIANCE_HASH_BEFORE))
    op.execute(
        "DROP FUNCTION audit_entry_hash_of(audit_log), compliance_audit_hash_of(compliance_audit),"
        " audit_entry_hash_v2, audit_check_key;"
    )
    op.execute(KEYS_GUARD.format(person=""))
    op.execute(
        "DROP TRIGGER api_keys_person_guard ON api_keys; DROP FUNCTION api_keys_person_guard;"
    )
    op.execute(COLUMNS_BEFORE)
