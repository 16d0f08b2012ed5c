"""Parallel submission for DVP: Stellar channel accounts.

A Stellar transaction the engine signs may take its source account, and so its sequence
number and fee, from a channel account the engine holds, while its operations keep the
sender or the settlement agent as their source. Concurrent settlements then stop
competing for one account's sequence. A channel must carry one transaction at a time:
while a transaction on it could still apply, a second one would race it for the
channel's sequence. The write-ahead row is that hold: ``channel`` names the channel
account a submission uses, and a partial unique index refuses a second open (SIGNED)
submission on one channel, whatever the application does and however many workers run.
A channel is free again as soon as its submission is final (applied, rejected or
expired), because the next transaction reads the channel's sequence afresh from the
ledger. A crash between signing and the write-ahead leaves nothing to release: nothing
unrecorded is ever sent.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UP = """
ALTER TABLE ledger_submissions ADD COLUMN channel text;
CREATE UNIQUE INDEX ledger_submissions_one_open_per_channel ON ledger_submissions
    (chain, channel) WHERE status = 'SIGNED' AND channel IS NOT NULL;
"""

DOWN = """
DROP INDEX ledger_submissions_one_open_per_channel;
ALTER TABLE ledger_submissions DROP COLUMN channel;
"""


def upgrade() -> None:
    op.execute(UP)


def downgrade() -> None:
    op.execute(DOWN)
