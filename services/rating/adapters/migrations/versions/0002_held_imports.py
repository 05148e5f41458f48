"""Held imports: a failed file's ratings and events are held back until released (ADR 0042).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("import_files") as table:
        table.add_column(
            sa.Column("held", sa.Boolean(), nullable=False, server_default=sa.text("false"))
        )
        table.add_column(sa.Column("released_at", _TS, nullable=True))
    op.create_table(
        "held_events",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("hold_key", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("stream", sa.String(128), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("ix_held_events_hold_key", "held_events", ["hold_key"])


def downgrade() -> None:
    op.drop_index("ix_held_events_hold_key", table_name="held_events")
    op.drop_table("held_events")
    with op.batch_alter_table("import_files") as table:
        table.drop_column("released_at")
        table.drop_column("held")
