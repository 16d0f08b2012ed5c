"""Ledger accounts of KYC'd parties.

A party's ledger accounts (XRPL r-addresses, Stellar G-accounts) are registered by an
officer against the party's KYC record, each with its entry in the compliance audit
chain (checked at COMMIT, like KYC changes). A registration never changes and is never
deleted: an account belongs to one party for good, so the history of whose account
moved what stays readable. Settlement instructions only accept legs whose accounts are
registered to the commitment's parties.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APP_ROLE = "settlement_app"

UP = f"""
ALTER TABLE compliance_audit DROP CONSTRAINT compliance_audit_subject_kind_check;
ALTER TABLE compliance_audit ADD CONSTRAINT compliance_audit_subject_kind_check
    CHECK (subject_kind IN ('kyc', 'officer', 'sanctions_list', 'ledger_account'));

CREATE TABLE party_accounts (
    chain         text NOT NULL CHECK (chain IN ('xrpl', 'stellar')),
    address       text NOT NULL CHECK (address ~ '^[A-Za-z0-9]{{25,64}}$'),
    account       text GENERATED ALWAYS AS (chain || ':' || address) STORED UNIQUE,
    party         text NOT NULL REFERENCES kyc_records (party),
    version       integer NOT NULL DEFAULT 1 CHECK (version = 1),
    registered_by text NOT NULL,
    registered_at timestamptz NOT NULL,
    PRIMARY KEY (chain, address)
);
CREATE INDEX party_accounts_by_party ON party_accounts (party);

CREATE TRIGGER party_accounts_append_only BEFORE UPDATE OR DELETE ON party_accounts
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER party_accounts_no_truncate BEFORE TRUNCATE ON party_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
CREATE CONSTRAINT TRIGGER party_accounts_change_is_audited AFTER INSERT ON party_accounts
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION registry_change_is_audited('ledger_account', 'account');

REVOKE ALL ON party_accounts FROM PUBLIC;
GRANT SELECT, INSERT ON party_accounts TO {APP_ROLE};
"""


def upgrade() -> None:
    op.execute(UP)


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS party_accounts;
        ALTER TABLE compliance_audit DROP CONSTRAINT compliance_audit_subject_kind_check;
        ALTER TABLE compliance_audit ADD CONSTRAINT compliance_audit_subject_kind_check
            CHECK (subject_kind IN ('kyc', 'officer', 'sanctions_list'));
        """
    )
