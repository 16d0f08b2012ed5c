"""Indexes that let a party's balances and statement start from its own accounts.

``ledger.positions`` finds a party's legs through its registered accounts (``chain``
and the leg's ``sender`` or ``receiver``). Without these indexes each balances or
statement read scanned every leg the engine ever settled; with them it reads the
party's legs alone. A leg row is written once, when a settlement is instructed, so the
cost falls on no hot path.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX settlement_legs_by_sender ON settlement_legs (chain, sender)")
    op.execute("CREATE INDEX settlement_legs_by_receiver ON settlement_legs (chain, receiver)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS settlement_legs_by_receiver")
    op.execute("DROP INDEX IF EXISTS settlement_legs_by_sender")
