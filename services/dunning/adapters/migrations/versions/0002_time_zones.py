"""Days past due in the account's time zone (ADR 0071): the account's zone, and the
instant each run stands for.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.sqltypes import UtcDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dunned_accounts") as table:
        # Accounts known before: UTC until their next AccountUpdated names their zone.
        table.add_column(sa.Column("time_zone", sa.String(64), nullable=False, server_default=""))
    with op.batch_alter_table("dunning_runs") as table:
        # Runs from before: null, read as the run date at 01:00 UTC (the default run hour).
        table.add_column(sa.Column("judged_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dunning_runs") as table:
        table.drop_column("judged_at")
    with op.batch_alter_table("dunned_accounts") as table:
        table.drop_column("time_zone")
