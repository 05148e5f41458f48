"""Dunning tables: projections of accounts and invoices, policies, runs with work items,
reactions under their once-only keys, and the kit's outbox, inbox and idempotency keys.

Spelt out operation by operation (not ``metadata.create_all``), so this revision stays
what it was when later ones change ``adapters/orm.py``; ``test_migrations`` compares
the head with the models on SQLite and PostgreSQL.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
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


def upgrade() -> None:
    create_kit_tables()  # the outbox, the inbox and the idempotency keys

    # -- the projections -----------------------------------------------------------------------
    op.create_table(
        "dunned_accounts",
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("customer_id", _ID, nullable=False),
        sa.Column("group_id", _CODE, nullable=False),
        sa.Column("reseller_id", _CODE, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("last_failure_reason", sa.String(64), nullable=False),
        sa.Column("exempt_until", sa.Date(), nullable=True),
        sa.Column("exempt_reason", sa.String(500), nullable=False),
        sa.Column("episode_id", _ID, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("level_since", sa.Date(), nullable=True),
        sa.Column("started_on", sa.Date(), nullable=True),
        sa.Column("ended_on", sa.Date(), nullable=True),
        sa.Column("end_reason", sa.String(64), nullable=False),
        sa.Column("policy_code", _CODE, nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("service_action", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_dunned_accounts"),
    )
    op.create_index("ix_dunned_accounts_state", "dunned_accounts", ["state", "account_id"])
    op.create_table(
        "dunned_invoices",
        sa.Column("invoice_id", _ID, nullable=False),
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("customer_id", _ID, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("total", ExactDecimal(), nullable=False),
        sa.Column("amount_due", ExactDecimal(), nullable=False),
        sa.Column("disputed_amount", ExactDecimal(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("issue_date", sa.Date(), nullable=True),
        sa.Column("paid_on", sa.Date(), nullable=True),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("highest_level", sa.Integer(), nullable=False),
        sa.Column("fees_charged", ExactDecimal(), nullable=False),
        sa.Column("interest_through", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("invoice_id", name="pk_dunned_invoices"),
    )
    op.create_index("ix_dunned_invoices_account_id", "dunned_invoices", ["account_id"])
    op.create_index("ix_dunned_invoices_customer_id", "dunned_invoices", ["customer_id"])
    op.create_index("ix_dunned_invoices_status_due_date", "dunned_invoices", ["status", "due_date"])

    # -- policies --------------------------------------------------------------------------------
    op.create_table(
        "dunning_policies",
        sa.Column("code", _CODE, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("group_ids", sa.Text(), nullable=False),
        sa.Column("reseller_ids", sa.Text(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("code", "version", name="pk_dunning_policies"),
    )

    # -- runs and their work items (ADR 0049) ----------------------------------------------------
    op.create_table(
        "dunning_runs",
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("run_date", sa.Date(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("accounts_total", sa.Integer(), nullable=False),
        sa.Column("start_time", UtcDateTime(), nullable=False),
        sa.Column("end_time", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name="pk_dunning_runs"),
        sa.UniqueConstraint("run_date", name="uq_dunning_runs_run_date"),
    )
    op.create_table(
        "dunning_run_items",
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "account_id", name="pk_dunning_run_items"),
    )
    op.create_index("ix_dunning_run_items_run_id_status", "dunning_run_items", ["run_id", "status"])

    # -- reactions under their once-only keys ----------------------------------------------------
    op.create_table(
        "dunning_reactions",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("customer_id", _ID, nullable=False),
        sa.Column("episode_id", _ID, nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("invoice_id", _ID, nullable=False),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("amount", ExactDecimal(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=False),
        sa.Column("run_date", sa.Date(), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("done_time", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_dunning_reactions"),
    )
    op.create_index("ix_dunning_reactions_status", "dunning_reactions", ["status"])
    op.create_index("ix_dunning_reactions_account_id", "dunning_reactions", ["account_id"])


def downgrade() -> None:
    for table in (
        "dunning_reactions",
        "dunning_run_items",
        "dunning_runs",
        "dunning_policies",
        "dunned_invoices",
        "dunned_accounts",
    ):
        op.drop_table(table)
    drop_kit_tables()
