"""Console accounts and sessions: who may sign in to the web review console.

What the database itself enforces from this revision on:

- an account's username, actor id, role and creation never change; an account is never
  deleted (``active`` false withdraws it), so the actor named by an audit entry made
  through the console always resolves to the account that acted;
- an officer account names a registered compliance officer (foreign key on the same
  id); an admin account names none;
- the application role may change only the password hash, the active flag, the
  lockout counters and the sign-in time of an account;
- a session stores only the SHA-256 of its random id; its account, CSRF token, creation
  and expiry never change, and signing out is final.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

APP_ROLE = "settlement_app"

SCHEMA = """
CREATE TABLE console_accounts (
    username        text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    password_hash   text NOT NULL CHECK (password_hash LIKE '$argon2%'),
    actor_id        text NOT NULL UNIQUE CHECK (length(actor_id) BETWEEN 1 AND 200),
    role            text NOT NULL CHECK (role IN ('compliance_officer', 'admin')),
    -- set for officer accounts only: the registry row the account acts as
    officer_id      text REFERENCES compliance_officers (officer_id),
    active          boolean NOT NULL DEFAULT true,
    failed_attempts integer NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL,
    created_by      text NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
    updated_at      timestamptz NOT NULL,
    last_sign_in_at timestamptz,
    CHECK ((role = 'compliance_officer') = (officer_id IS NOT NULL)),
    CHECK (officer_id IS NULL OR officer_id = actor_id)
);

CREATE TABLE console_sessions (
    id_hash      text PRIMARY KEY CHECK (id_hash ~ '^[0-9a-f]{64}$'),
    username     text NOT NULL REFERENCES console_accounts (username),
    csrf_token   text NOT NULL CHECK (length(csrf_token) BETWEEN 32 AND 128),
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    signed_out_at timestamptz,
    CHECK (expires_at > created_at),
    CHECK (last_seen_at >= created_at)
);
CREATE INDEX console_sessions_by_account ON console_sessions (username);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
"""

RULES = """
CREATE FUNCTION console_accounts_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'console accounts are never deleted; disable %', OLD.username
            USING ERRCODE = 'SE004';
    END IF;
    IF NEW.username <> OLD.username OR NEW.actor_id <> OLD.actor_id OR NEW.role <> OLD.role
       OR NEW.officer_id IS DISTINCT FROM OLD.officer_id
       OR NEW.created_at <> OLD.created_at OR NEW.created_by <> OLD.created_by THEN
        RAISE EXCEPTION 'console account %: identity and role never change', OLD.username
            USING ERRCODE = 'SE004';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER console_accounts_guard BEFORE UPDATE OR DELETE ON console_accounts
    FOR EACH ROW EXECUTE FUNCTION console_accounts_guard();

CREATE FUNCTION console_sessions_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id_hash <> OLD.id_hash OR NEW.username <> OLD.username
       OR NEW.csrf_token <> OLD.csrf_token OR NEW.created_at <> OLD.created_at
       OR NEW.expires_at <> OLD.expires_at THEN
        RAISE EXCEPTION 'console session: only last_seen_at and signed_out_at change'
            USING ERRCODE = 'SE004';
    END IF;
    IF OLD.signed_out_at IS NOT NULL THEN
        RAISE EXCEPTION 'console session is signed out; that is final'
            USING ERRCODE = 'SE004';
    END IF;
    RETURN NEW;
END $$;
-- DELETE stays allowed: sessions past their expiry are pruned
CREATE TRIGGER console_sessions_guard BEFORE UPDATE ON console_sessions
    FOR EACH ROW EXECUTE FUNCTION console_sessions_guard();
"""

GRANTS = f"""
REVOKE ALL ON console_accounts, console_sessions FROM PUBLIC;
GRANT SELECT, INSERT ON console_accounts TO {APP_ROLE};
GRANT UPDATE (password_hash, active, failed_attempts, locked_until, updated_at,
              last_sign_in_at) ON console_accounts TO {APP_ROLE};
GRANT SELECT, INSERT, DELETE ON console_sessions TO {APP_ROLE};
GRANT UPDATE (last_seen_at, signed_out_at) ON console_sessions TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(SCHEMA)
    op.execute(RULES)
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS console_sessions, console_accounts CASCADE;
        DROP FUNCTION IF EXISTS console_sessions_guard, console_accounts_guard;
        """
    )
