"""The customer's VAT identifier (reverse-charge and intra-community invoices).

Revision ID: 0003_customer_vat_id
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_customer_vat_id"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as table:
        table.add_column(sa.Column("vat_id", sa.String(16), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("customers") as table:
        table.drop_column("vat_id")
