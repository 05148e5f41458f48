"""Accounts tables: customers, accounts with state history, subscriptions with add-ons,
and the kit's outbox, inbox and idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.migrations import create_kit_tables, drop_kit_tables
from services.common.sqltypes import ExactDecimal, UtcDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.String(40)
_CODE = sa.String(64)
# Enums are stored as text (see orm._enum): a new state is a code change, not a migration.
_STATE = sa.String(16)


def upgrade() -> None:
    create_kit_tables()  # the outbox, the inbox and the idempotency keys

    # -- customers -----------------------------------------------------------------------------
    op.create_table(
        "customers",
        sa.Column("customer_id", _ID, nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("phone_number", sa.String(16), nullable=False),
        sa.Column("language_code", sa.String(35), nullable=False),
        sa.Column("reseller_id", _CODE, nullable=False),
        sa.Column("group_id", _CODE, nullable=False),
        sa.Column("referral_code", sa.String(16), nullable=False),
        sa.Column("referred_by", sa.String(16), nullable=False),
        sa.Column("referrer_customer_id", _ID, nullable=True),
        sa.Column("referrals_count", sa.Integer(), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["referrer_customer_id"],
            ["customers.customer_id"],
            name="fk_customers_referrer_customer_id_customers",
        ),
        sa.PrimaryKeyConstraint("customer_id", name="pk_customers"),
        sa.UniqueConstraint("referral_code", name="uq_customers_referral_code"),
    )
    op.create_index(
        "ix_customers_reseller_id_customer_id", "customers", ["reseller_id", "customer_id"]
    )
    op.create_index("ix_customers_group_id_customer_id", "customers", ["group_id", "customer_id"])

    # -- billing accounts ------------------------------------------------------------------------
    op.create_table(
        "accounts",
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("customer_id", _ID, nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("currency_code", sa.String(8), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("bill_cycle_day", sa.Integer(), nullable=False),
        sa.Column("tax_region", sa.String(16), nullable=False),
        sa.Column("payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("payment_mode", _STATE, nullable=False),
        sa.Column("credit_limit_amount", ExactDecimal(), nullable=True),
        sa.Column("credit_limit_currency", sa.String(8), nullable=True),
        sa.Column("parent_account_id", _ID, nullable=True),
        sa.Column("state", _STATE, nullable=False),
        sa.Column("state_reason", sa.String(500), nullable=False),
        sa.Column("state_change_time", UtcDateTime(), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.customer_id"], name="fk_accounts_customer_id_customers"
        ),
        sa.ForeignKeyConstraint(
            ["parent_account_id"],
            ["accounts.account_id"],
            name="fk_accounts_parent_account_id_accounts",
        ),
        sa.PrimaryKeyConstraint("account_id", name="pk_accounts"),
    )
    op.create_index("ix_accounts_customer_id_account_id", "accounts", ["customer_id", "account_id"])
    op.create_index("ix_accounts_state_account_id", "accounts", ["state", "account_id"])
    op.create_index("ix_accounts_parent_account_id", "accounts", ["parent_account_id"])
    op.create_table(
        "account_state_changes",
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("from_state", _STATE, nullable=False),
        sa.Column("to_state", _STATE, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("change_time", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
            name="fk_account_state_changes_account_id_accounts",
        ),
        sa.PrimaryKeyConstraint("account_id", "sequence", name="pk_account_state_changes"),
    )

    # -- subscriptions ---------------------------------------------------------------------------
    op.create_table(
        "subscriptions",
        sa.Column("subscription_id", _ID, nullable=False),
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("plan_code", _CODE, nullable=False),
        sa.Column("state", _STATE, nullable=False),
        sa.Column("start_time", UtcDateTime(), nullable=False),
        sa.Column("pending_plan_code", _CODE, nullable=True),
        sa.Column("pending_plan_effective_time", UtcDateTime(), nullable=True),
        sa.Column("cancel_time", UtcDateTime(), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_subscriptions_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("subscription_id", name="pk_subscriptions"),
    )
    op.create_index(
        "ix_subscriptions_account_id_subscription_id",
        "subscriptions",
        ["account_id", "subscription_id"],
    )
    op.create_index(
        "ix_subscriptions_state_pending_plan_effective_time",
        "subscriptions",
        ["state", "pending_plan_effective_time"],
    )
    op.create_index("ix_subscriptions_state_cancel_time", "subscriptions", ["state", "cancel_time"])
    op.create_table(
        "subscription_add_ons",
        sa.Column("subscription_id", _ID, nullable=False),
        sa.Column("add_on_code", _CODE, nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("add_time", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.subscription_id"],
            name="fk_subscription_add_ons_subscription_id_subscriptions",
        ),
        sa.PrimaryKeyConstraint("subscription_id", "add_on_code", name="pk_subscription_add_ons"),
    )


def downgrade() -> None:
    for table in (
        "subscription_add_ons",
        "subscriptions",
        "account_state_changes",
        "accounts",
        "customers",
    ):
        op.drop_table(table)
    drop_kit_tables()
