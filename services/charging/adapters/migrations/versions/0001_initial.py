"""Charging tables: accounts, states, buckets, ledger, sessions, vouchers, services.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.migrations import create_kit_tables, drop_kit_tables
from services.common.sqltypes import UtcDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    create_kit_tables()  # the outbox, the inbox and the idempotency keys

    op.create_table(
        "charging_accounts",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("credit_limit", sa.BigInteger(), nullable=False),
        sa.Column("low_balance", sa.BigInteger(), nullable=True),
        sa.Column("final_unit_action", sa.String(16), nullable=False),
        sa.Column("redirect_address", sa.String(512), nullable=False),
        sa.Column("restriction_filter_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "account_states",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_version", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "buckets",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("bucket_id", sa.String(80), primary_key=True),
        sa.Column("unit", sa.String(72), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("valid_from", UtcDateTime(), nullable=True),
        sa.Column("valid_until", UtcDateTime(), nullable=True),
        sa.Column("services", sa.Text(), nullable=False),
        sa.Column("rating_groups", sa.Text(), nullable=False),
        sa.Column("label", sa.String(256), nullable=False),
        sa.Column("main", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expiring_notified_at", UtcDateTime(), nullable=True),
        sa.Column("expired_notified_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_buckets_valid_until", "buckets", ["valid_until"])
    op.create_table(
        "ledger_entries",
        sa.Column("seq", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.String(64), nullable=False, unique=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("bucket_id", sa.String(80), nullable=False),
        sa.Column("direction", sa.String(1), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(72), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("request_number", sa.BigInteger(), nullable=False),
        sa.Column("rating_group", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(256), nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("request_key", sa.String(200), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_ledger_account_seq", "ledger_entries", ["account_id", "seq"])
    op.create_index("ix_ledger_account_bucket", "ledger_entries", ["account_id", "bucket_id"])
    op.create_index("ix_ledger_account_reference", "ledger_entries", ["account_id", "reference"])
    op.create_index("ix_ledger_request_key", "ledger_entries", ["account_id", "request_key"])
    op.create_table(
        "cc_sessions",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(256), primary_key=True),
        sa.Column("last_request_number", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(1), nullable=False),
        sa.Column("request_type", sa.String(1), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_cc_sessions_recent", "cc_sessions", ["account_id", "updated_at"])
    op.create_table(
        "voucher_batches",
        sa.Column("batch_id", sa.String(40), primary_key=True),
        sa.Column("label", sa.String(256), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(72), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("expire_time", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "vouchers",
        sa.Column("voucher_id", sa.String(48), primary_key=True),
        sa.Column("batch_id", sa.String(40), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("unit", sa.String(72), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("expire_time", UtcDateTime(), nullable=False),
        sa.Column("redeemed_by", sa.String(64), nullable=True),
        sa.Column("redeem_request", sa.String(128), nullable=True),
        sa.Column("redeemed_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_vouchers_redeemed", "vouchers", ["redeemed_at"])
    op.create_table(
        "service_definitions",
        sa.Column("rating_group", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("unit_kind", sa.String(16), nullable=False),
        sa.Column("unit_name", sa.String(64), nullable=False),
        sa.Column("charging", sa.String(16), nullable=False),
        sa.Column("default_quota", sa.BigInteger(), nullable=False),
        sa.Column("validity_seconds", sa.Integer(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "service_definitions",
        "vouchers",
        "voucher_batches",
        "cc_sessions",
        "ledger_entries",
        "buckets",
        "account_states",
        "charging_accounts",
    ):
        op.drop_table(table)
    drop_kit_tables()
