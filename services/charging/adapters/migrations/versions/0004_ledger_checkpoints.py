"""ledger_checkpoints, ledger_checkpoint_pending, ledger_checkpoint_cursor: balance
checkpoints, so a balance (and a rebuild after a Redis loss) reads the checkpoint and the
ledger entries after it, not the account's whole ledger (ADR 0036).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.sqltypes import UtcDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_checkpoints",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("bucket_id", sa.String(80), primary_key=True),
        sa.Column("through_seq", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "ledger_checkpoint_pending",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("entries", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "ledger_checkpoint_cursor",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("scanned_seq", sa.BigInteger(), nullable=False),
        sa.Column("candidate_seq", sa.BigInteger(), nullable=False),
        sa.Column("candidate_at", UtcDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("ledger_checkpoint_cursor")
    op.drop_table("ledger_checkpoint_pending")
    op.drop_table("ledger_checkpoints")
