"""Every step of a settlement reads its submissions: index them by settlement.

``ledger.settlements.submissions()`` runs on every coordinator step and filtered the
whole ``ledger_submissions`` table; its cost grew with every transaction the engine
ever recorded. The index makes it a range read of the settlement's own rows, in the
order they were recorded.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ledger_submissions_by_settlement ON ledger_submissions (settlement_id, id)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ledger_submissions_by_settlement")
