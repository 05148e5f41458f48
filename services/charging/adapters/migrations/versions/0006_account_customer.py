"""charging_accounts.customer_id: the customer owning the account, from accounts'
AccountCreated / AccountUpdated, so a call carrying a customer scope (the gateway
calling for a logged-in customer) is checked here again (issue 14, ADR 0073).
NULL (an account whose policy was set by hand, or not yet learnt): no customer's.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("charging_accounts", sa.Column("customer_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("charging_accounts") as batch:
        batch.drop_column("customer_id")
