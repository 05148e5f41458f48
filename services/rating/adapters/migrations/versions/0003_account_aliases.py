"""Account aliases (external references, service identifiers) and the customer's
external reference in rating's account view (issue 9 item 12).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("known_accounts") as table:
        table.add_column(
            sa.Column("customer_ref", sa.String(64), nullable=False, server_default="")
        )
    op.create_table(
        "account_aliases",
        sa.Column("alias", sa.String(220), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("account_aliases")
    with op.batch_alter_table("known_accounts") as table:
        table.drop_column("customer_ref")
