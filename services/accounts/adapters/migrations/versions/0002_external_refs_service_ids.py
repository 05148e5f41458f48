"""External references on customers and accounts, service identifiers on subscriptions
(issue 9 item 12).

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


def upgrade() -> None:
    with op.batch_alter_table("customers") as table:
        table.add_column(sa.Column("external_ref", sa.String(64), nullable=True))
        table.create_unique_constraint("uq_customers_external_ref", ["external_ref"])
    with op.batch_alter_table("accounts") as table:
        table.add_column(sa.Column("external_ref", sa.String(64), nullable=True))
        table.create_unique_constraint("uq_accounts_external_ref", ["external_ref"])
    with op.batch_alter_table("subscriptions") as table:
        table.add_column(sa.Column("service_ids", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "service_identifiers",
        sa.Column("key", sa.String(220), primary_key=True),
        sa.Column(
            "subscription_id",
            sa.String(40),
            sa.ForeignKey("subscriptions.subscription_id"),
            nullable=False,
        ),
        sa.Column("account_id", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_identifiers")
    with op.batch_alter_table("subscriptions") as table:
        table.drop_column("service_ids")
    with op.batch_alter_table("accounts") as table:
        table.drop_constraint("uq_accounts_external_ref", type_="unique")
        table.drop_column("external_ref")
    with op.batch_alter_table("customers") as table:
        table.drop_constraint("uq_customers_external_ref", type_="unique")
        table.drop_column("external_ref")
