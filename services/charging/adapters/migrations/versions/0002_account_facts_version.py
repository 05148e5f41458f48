"""charging_accounts.facts_version: the newest accounts event applied to the policy.

AccountCreated / AccountUpdated are applied in the order they happened (their
``create_time`` / ``update_time`` in ms), not in the order they are processed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "charging_accounts",
        sa.Column("facts_version", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("charging_accounts", "facts_version")
