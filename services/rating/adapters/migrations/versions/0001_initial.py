"""Rating tables: catalog revisions, prefix sets, account view, imports, rated usage, rejects.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.migrations import create_kit_tables, drop_kit_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    create_kit_tables()  # the outbox, the inbox and the idempotency keys

    op.create_table(
        "catalog_revisions",
        sa.Column("revision", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("document_format", sa.String(8), nullable=False),
        sa.Column("source_name", sa.String(255), nullable=False),
        sa.Column("prefix_set_id", sa.String(40), nullable=True),
        sa.Column("plan_count", sa.Integer(), nullable=False),
        sa.Column("prefix_count", sa.BigInteger(), nullable=False),
        sa.Column("applied_at", _TS, nullable=False),
    )
    op.create_table(
        "prefix_sets",
        sa.Column("set_id", sa.String(40), primary_key=True),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("prefix_count", sa.BigInteger(), nullable=False),
        sa.Column("destination_count", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "destination_prefixes",
        sa.Column("set_id", sa.String(40), primary_key=True),
        sa.Column("prefix", sa.String(16), primary_key=True),
        sa.Column("destination", sa.String(100), nullable=False),
    )
    op.create_table(
        "known_accounts",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("tax_region", sa.String(64), nullable=False),
        sa.Column("group_code", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("bill_cycle_day", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "plan_assignments",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("plan_code", sa.String(100), nullable=False),
        sa.Column("effective_from", _TS, nullable=False),
        sa.Column("subscription_id", sa.String(64), nullable=False),
    )
    op.create_index(
        "ix_plan_assignments_account", "plan_assignments", ["account_id", "effective_from"]
    )
    op.create_table(
        "import_files",
        sa.Column("file_id", sa.String(40), primary_key=True),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("header", sa.Text(), nullable=True),
        sa.Column("failed_loudly", sa.Boolean(), nullable=False),
        sa.Column("failure_message", sa.Text(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("rated", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("skipped", sa.BigInteger(), nullable=False),
        sa.Column("committed_line", sa.BigInteger(), nullable=False),
        sa.Column("rejects_by_reason", sa.Text(), nullable=False),
        sa.Column("rated_totals", sa.Text(), nullable=False),
        sa.Column("catalog_revision", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
    )
    op.create_index("ix_import_files_checksum", "import_files", ["checksum"])
    op.create_table(
        "rated_usage",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("event_time", _TS, nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("allowance_units", sa.BigInteger(), nullable=False),
        sa.Column("charged_units", sa.BigInteger(), nullable=False),
        sa.Column("amount_nanos", sa.BigInteger(), nullable=False),
        sa.Column("net_nanos", sa.BigInteger(), nullable=False),
        sa.Column("tax_nanos", sa.BigInteger(), nullable=False),
        sa.Column("plan_code", sa.String(100), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("catalog_revision", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.String(40), nullable=True),
        sa.Column("line", sa.BigInteger(), nullable=True),
        sa.Column("breakdown", sa.Text(), nullable=False),
        sa.Column("rated_at", _TS, nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("rerate_id", sa.String(40), nullable=True),
    )
    op.create_index(
        "ux_rated_usage_current_record",
        "rated_usage",
        ["record_id"],
        unique=True,
        sqlite_where=sa.text("is_current"),
        postgresql_where=sa.text("is_current"),
    )
    op.create_index("ix_rated_usage_account_time", "rated_usage", ["account_id", "event_time"])
    op.create_index("ix_rated_usage_file_line", "rated_usage", ["file_id", "line"])
    op.create_table(
        "usage_counters",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("cycle_start", sa.String(10), primary_key=True),
        sa.Column("counter", sa.String(200), primary_key=True),
        sa.Column("units", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "rejects",
        sa.Column("reject_id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("file_id", sa.String(40), nullable=False),
        sa.Column("line", sa.BigInteger(), nullable=False),
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("raw_record", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("resolved_at", _TS, nullable=True),
    )
    op.create_index("ix_rejects_file_line", "rejects", ["file_id", "line"])
    op.create_index("ix_rejects_status_reason", "rejects", ["status", "reason"])
    op.create_table(
        "rerate_runs",
        sa.Column("rerate_id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("period_start", _TS, nullable=False),
        sa.Column("period_end", _TS, nullable=False),
        sa.Column("catalog_revision", sa.Integer(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("changed", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("totals", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "rerate_runs",
        "rejects",
        "usage_counters",
        "rated_usage",
        "import_files",
        "plan_assignments",
        "known_accounts",
        "destination_prefixes",
        "prefix_sets",
        "catalog_revisions",
    ):
        op.drop_table(table)
    drop_kit_tables()
