"""What notifications told of the messages about each invoice (ADR 0063), and the
customer's VAT identifier (reverse charge and intra-community invoices).

Revision ID: 0002_invoice_notifications
Revises: 0001
Create Date: 2026-12-06 06:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.sqltypes import UtcDateTime

revision: str = "0002_invoice_notifications"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("vat_id", sa.String(length=64), server_default="", nullable=False)
        )
    op.create_table(
        "invoice_notifications",
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=500), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("source_event_type", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("create_time", UtcDateTime(timezone=True), nullable=False),
        sa.Column("status_time", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_invoice_notifications")),
    )
    with op.batch_alter_table("invoice_notifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invoice_notifications_invoice_id"), ["invoice_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("invoice_notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoice_notifications_invoice_id"))
    op.drop_table("invoice_notifications")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("vat_id")
