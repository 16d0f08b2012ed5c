"""Compliance: officers, KYC records, sanctions lists, screenings, four-eyes approvals.

What the database itself enforces from this revision on, whatever the application sends:

- no commitment enters PENDING_REVIEW without a stored screening for that review round
  (deferred constraint trigger, checked at COMMIT);
- approve, reject and request_info are caused only by an active registered officer
  (trigger on ``state_transitions``);
- PENDING_REVIEW -> VERIFIED only with as many distinct approving officers in the
  current review round as the screening requires (two above the four-eyes threshold),
  none of them the submitter, and, when the screening has a hard fail, an approval with
  an override reason by a senior officer (trigger on ``commitments``);
- KYC records and officer registrations change only with an entry in
  ``compliance_audit`` (a second hash chain, for changes not tied to one commitment);
- screenings, approvals, counterparties, sanctions lists and their entries are
  append-only.

Error codes raised here (``ledger.errors`` keeps unknown SQLSTATEs on ``DatabaseError``;
``settlement.services.commitments`` maps them): SE430 the submitter approving, SE431 an officer
approving twice in one round, SE432 a hard fail without a senior override, SE433 not an
active registered officer, SE434 too few distinct approvals, SE435 no screening for the
round (e.g. a commitment already under review when this revision was applied: send it
back with request_info and submit it again).

A review round is identified by ``review_version``: the commitment version that
entered PENDING_REVIEW. A first approval does not change the commitment (its version
stays), so every approval of a round carries the same ``review_version``; request_info
and a new submit start a new round, and older approvals no longer count.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APP_ROLE = "settlement_app"

TABLES = r"""
CREATE TABLE compliance_officers (
    officer_id   text PRIMARY KEY CHECK (length(officer_id) BETWEEN 1 AND 200),
    display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    senior       boolean NOT NULL,
    active       boolean NOT NULL,
    version      integer NOT NULL CHECK (version >= 1),
    updated_by   text NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE kyc_records (
    party               text PRIMARY KEY CHECK (length(party) BETWEEN 1 AND 200),
    legal_name          text NOT NULL CHECK (length(legal_name) BETWEEN 1 AND 300),
    aliases             text[] NOT NULL DEFAULT '{}',
    lei                 text CHECK (lei ~ '^[A-Z0-9]{18}[0-9]{2}$'),
    registration_number text CHECK (length(registration_number) BETWEEN 1 AND 100),
    jurisdiction        text NOT NULL CHECK (jurisdiction ~ '^[A-Z]{2}$'),
    risk_rating         text NOT NULL CHECK (risk_rating IN ('low', 'medium', 'high')),
    accredited          boolean NOT NULL,
    status              text NOT NULL
                        CHECK (status IN ('pending', 'verified', 'rejected', 'expired')),
    expires_on          date,
    version             integer NOT NULL CHECK (version >= 1),
    updated_by          text NOT NULL,
    updated_at          timestamptz NOT NULL,
    CHECK (status <> 'verified' OR expires_on IS NOT NULL)
);

-- One hash chain (global, ordered by seq) for compliance changes not tied to one
-- commitment: KYC records, officer registrations, sanctions list loads.
CREATE TABLE compliance_audit (
    seq             bigint PRIMARY KEY,
    recorded_at     timestamptz NOT NULL,
    actor           text NOT NULL,
    action          text NOT NULL,
    subject_kind    text NOT NULL CHECK (subject_kind IN ('kyc', 'officer', 'sanctions_list')),
    subject         text NOT NULL,
    subject_version bigint NOT NULL,
    payload         text NOT NULL CHECK (payload::jsonb IS NOT NULL),
    prev_hash       text,
    entry_hash      text NOT NULL,
    UNIQUE (subject_kind, subject, subject_version)
);

CREATE TABLE sanctions_list_versions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    list_name   text NOT NULL CHECK (list_name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    format      text NOT NULL CHECK (format IN ('ofac_sdn', 'opensanctions_simple')),
    source_file text NOT NULL,
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    entry_count integer NOT NULL CHECK (entry_count > 0),
    loaded_by   text NOT NULL,
    loaded_at   timestamptz NOT NULL
);
CREATE INDEX sanctions_list_versions_latest ON sanctions_list_versions (list_name, id DESC);

CREATE TABLE sanctions_entries (
    list_version_id bigint NOT NULL REFERENCES sanctions_list_versions (id),
    entry_id        text NOT NULL,
    kind            text NOT NULL,
    name            text NOT NULL CHECK (length(name) >= 1),
    aliases         text[] NOT NULL,
    identifiers     text[] NOT NULL,
    programs        text NOT NULL,
    PRIMARY KEY (list_version_id, entry_id)
);

CREATE TABLE commitment_counterparties (
    commitment_id uuid PRIMARY KEY REFERENCES commitments (id),
    counterparty  text NOT NULL CHECK (length(counterparty) BETWEEN 1 AND 200)
);

CREATE TABLE screenings (
    commitment_id      uuid NOT NULL REFERENCES commitments (id),
    review_version     integer NOT NULL,
    screened_at        timestamptz NOT NULL,
    outcome            text NOT NULL CHECK (outcome IN ('clear', 'flagged', 'hard_fail')),
    approvals_required smallint NOT NULL CHECK (approvals_required BETWEEN 1 AND 2),
    list_versions      bigint[] NOT NULL,
    findings           jsonb NOT NULL,
    PRIMARY KEY (commitment_id, review_version)
);

CREATE TABLE commitment_approvals (
    commitment_id   uuid NOT NULL,
    review_version  integer NOT NULL,
    officer_id      text NOT NULL REFERENCES compliance_officers (officer_id),
    senior          boolean NOT NULL,
    override_reason text,
    approved_at     timestamptz NOT NULL,
    PRIMARY KEY (commitment_id, review_version, officer_id),
    FOREIGN KEY (commitment_id, review_version) REFERENCES screenings
);
"""

FUNCTIONS = r"""
-- Canonical encoding v1 of a compliance audit entry (compliance/audit.py recomputes it):
--   'settlement-compliance-audit/v1' '\n', then netstrings (audit_field of 0001) of
--   seq, recorded_at (UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ), actor, action, subject_kind,
--   subject, subject_version, payload, prev_hash; entry_hash = hex SHA-256.
CREATE FUNCTION compliance_audit_append() RETURNS trigger
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
    END IF;
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
        || audit_field(NEW.prev_hash), 'UTF8')), 'hex');
    RETURN NEW;
END $$;

-- KYC records and officers: version 1 on insert, +1 on every update.
CREATE FUNCTION registry_version_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.version <> 1 THEN
        RAISE EXCEPTION '% rows are created at version 1', TG_TABLE_NAME USING ERRCODE = 'SE004';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.version <> OLD.version + 1 THEN
        RAISE EXCEPTION '% version must advance by one (% -> %)', TG_TABLE_NAME,
            OLD.version, NEW.version USING ERRCODE = 'SE004';
    END IF;
    IF TG_OP = 'UPDATE' AND to_jsonb(NEW) ->> TG_ARGV[1] <> to_jsonb(OLD) ->> TG_ARGV[1] THEN
        RAISE EXCEPTION 'the identity of a % row cannot change', TG_TABLE_NAME
            USING ERRCODE = 'SE004';
    END IF;
    RETURN NEW;
END $$;

-- Checked at COMMIT: every version of a registry row has its compliance audit entry.
-- TG_ARGV[0] is the subject kind, TG_ARGV[1] the key column.
CREATE FUNCTION registry_change_is_audited() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM compliance_audit
        WHERE subject_kind = TG_ARGV[0] AND subject = to_jsonb(NEW) ->> TG_ARGV[1]
          AND subject_version = NEW.version;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% % version % has no compliance audit entry', TG_ARGV[0],
            to_jsonb(NEW) ->> TG_ARGV[1], NEW.version USING ERRCODE = 'SE005';
    END IF;
    RETURN NULL;
END $$;

-- Checked at COMMIT: a commitment entering review has its screening stored.
CREATE FUNCTION commitments_submit_is_screened() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM screenings WHERE commitment_id = NEW.id AND review_version = NEW.version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'commitment % entered review at version % without a screening',
            NEW.id, NEW.version USING ERRCODE = 'SE005';
    END IF;
    RETURN NULL;
END $$;

-- Officer events are caused by active registered officers only.
CREATE FUNCTION state_transitions_officer_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM compliance_officers WHERE officer_id = NEW.actor AND active;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not an active registered compliance officer and cannot %',
            NEW.actor, NEW.event USING ERRCODE = 'SE433';
    END IF;
    RETURN NEW;
END $$;

-- PENDING_REVIEW -> VERIFIED: the approvals of the current round must satisfy the
-- screening's requirements (count, distinct officers, not the submitter, override).
CREATE FUNCTION commitments_review_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    s screenings%ROWTYPE;
    n integer;
BEGIN
    SELECT * INTO s FROM screenings WHERE commitment_id = OLD.id AND review_version = OLD.version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'commitment % has no screening for review round %', OLD.id, OLD.version
            USING ERRCODE = 'SE435';
    END IF;
    SELECT count(DISTINCT a.officer_id) INTO n
        FROM commitment_approvals a JOIN compliance_officers o USING (officer_id)
        WHERE a.commitment_id = OLD.id AND a.review_version = OLD.version AND o.active
          AND a.officer_id IS DISTINCT FROM OLD.submitted_by;
    IF n < s.approvals_required THEN
        RAISE EXCEPTION 'commitment % needs % distinct officer approvals in this review, has %',
            OLD.id, s.approvals_required, n USING ERRCODE = 'SE434';
    END IF;
    IF s.outcome = 'hard_fail' AND NOT EXISTS (
        SELECT 1 FROM commitment_approvals
        WHERE commitment_id = OLD.id AND review_version = OLD.version AND senior
          AND override_reason IS NOT NULL) THEN
        RAISE EXCEPTION 'screening of commitment % has a hard fail: approval needs an '
                        'override reason from a senior officer', OLD.id USING ERRCODE = 'SE432';
    END IF;
    RETURN NEW;
END $$;

-- Approve: record this officer's approval for the current review round; when the
-- round has the approvals its screening requires, make the transition (one more audit
-- entry and history row through commitment_transition). A first approval of two changes
-- no commitment row: it is an audit entry without a commitment_version.
CREATE FUNCTION commitment_approve(
    p_id uuid, p_expected_version integer, p_actor text, p_override_reason text,
    p_idempotency_key text, p_fingerprint text, p_payload text, p_at timestamptz
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
            p_idempotency_key, p_fingerprint, p_payload, p_at, NULL, NULL, NULL, NULL);
        RETURN;
    END IF;
    INSERT INTO audit_log (commitment_id, recorded_at, actor, action, from_state, to_state,
                           commitment_version, idempotency_key, payload, entry_hash)
        VALUES (p_id, p_at, p_actor, 'approval_recorded', NULL, NULL, NULL,
                p_idempotency_key, p_payload, '')
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

TRIGGERS = r"""
CREATE TRIGGER compliance_audit_chain BEFORE INSERT ON compliance_audit
    FOR EACH ROW EXECUTE FUNCTION compliance_audit_append();

CREATE TRIGGER kyc_records_version BEFORE INSERT OR UPDATE ON kyc_records
    FOR EACH ROW EXECUTE FUNCTION registry_version_guard('kyc', 'party');
CREATE TRIGGER compliance_officers_version BEFORE INSERT OR UPDATE ON compliance_officers
    FOR EACH ROW EXECUTE FUNCTION registry_version_guard('officer', 'officer_id');
CREATE CONSTRAINT TRIGGER kyc_records_change_is_audited AFTER INSERT OR UPDATE ON kyc_records
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION registry_change_is_audited('kyc', 'party');
CREATE CONSTRAINT TRIGGER compliance_officers_change_is_audited
    AFTER INSERT OR UPDATE ON compliance_officers
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION registry_change_is_audited('officer', 'officer_id');

-- named after commitments_change_is_audited so that check reports first
CREATE CONSTRAINT TRIGGER commitments_submit_is_screened AFTER UPDATE ON commitments
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.state = 'PENDING_REVIEW' AND OLD.state <> 'PENDING_REVIEW')
    EXECUTE FUNCTION commitments_submit_is_screened();
CREATE TRIGGER commitments_review_guard BEFORE UPDATE ON commitments
    FOR EACH ROW WHEN (OLD.state = 'PENDING_REVIEW' AND NEW.state = 'VERIFIED')
    EXECUTE FUNCTION commitments_review_guard();
CREATE TRIGGER state_transitions_officer_guard BEFORE INSERT ON state_transitions
    FOR EACH ROW WHEN (NEW.event IN ('approve', 'reject', 'request_info'))
    EXECUTE FUNCTION state_transitions_officer_guard();
"""

APPEND_ONLY = (
    "compliance_audit",
    "sanctions_list_versions",
    "sanctions_entries",
    "commitment_counterparties",
    "screenings",
    "commitment_approvals",
)


def _append_only(table: str) -> str:
    return f"""
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
"""


GRANTS = f"""
REVOKE ALL ON compliance_officers, kyc_records, {", ".join(APPEND_ONLY)} FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION commitment_approve, compliance_audit_append FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON compliance_officers, kyc_records TO {APP_ROLE};
GRANT SELECT, INSERT ON {", ".join(APPEND_ONLY)} TO {APP_ROLE};
GRANT EXECUTE ON FUNCTION commitment_approve TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(FUNCTIONS)
    op.execute(TRIGGERS)
    for table in APPEND_ONLY:
        op.execute(_append_only(table))
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER IF EXISTS commitments_submit_is_screened ON commitments;
        DROP TRIGGER IF EXISTS commitments_review_guard ON commitments;
        DROP TRIGGER IF EXISTS state_transitions_officer_guard ON state_transitions;
        DROP TABLE IF EXISTS commitment_approvals, screenings, commitment_counterparties,
            sanctions_entries, sanctions_list_versions, compliance_audit, kyc_records,
            compliance_officers CASCADE;
        DROP FUNCTION IF EXISTS commitment_approve, commitments_review_guard,
            state_transitions_officer_guard, commitments_submit_is_screened,
            registry_change_is_audited, registry_version_guard, compliance_audit_append;
        """
    )
