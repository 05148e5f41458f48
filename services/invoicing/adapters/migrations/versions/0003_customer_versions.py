"""Versions of each customer's facts, so an issued invoice's document never changes
(ADR 0075). Customers known before this revision get one version in force since the
epoch: their issued documents keep showing what they showed until now.

Revision ID: 0003_customer_versions
Revises: 0002_invoice_notifications
Create Date: 2026-12-06 06:55:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from services.common.sqltypes import UtcDateTime, big_serial

revision: str = "0003_customer_versions"
down_revision: str | None = "0002_invoice_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FACTS = ("customer_id", "display_name", "email", "language_code", "reseller_id", "group_id")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def upgrade() -> None:
    versions = op.create_table(
        "customer_versions",
        sa.Column("version_id", big_serial(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("effective_time", UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_time", UtcDateTime(timezone=True), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("language_code", sa.String(length=35), nullable=False),
        sa.Column("reseller_id", sa.String(length=64), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("vat_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_customer_versions")),
    )
    assert versions is not None
    with op.batch_alter_table("customer_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customer_versions_customer_id_version_id"),
            ["customer_id", "version_id"],
            unique=False,
        )
    customers = sa.table(
        "customers", *(sa.column(name, sa.String()) for name in (*_FACTS, "vat_id"))
    )
    epoch = sa.literal(_EPOCH, UtcDateTime(timezone=True))
    op.execute(
        versions.insert().from_select(
            [*_FACTS, "vat_id", "effective_time", "recorded_time"],
            sa.select(*(customers.c[name] for name in (*_FACTS, "vat_id")), epoch, epoch),
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("customer_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_versions_customer_id_version_id"))
    op.drop_table("customer_versions")
