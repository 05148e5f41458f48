"""subscriber_aliases: the service identifiers and external references that name an
account, learnt from accounts' events, so credit control finds the account a
Subscription-Id names (issue 9 item 12, ADR 0058).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.sqltypes import UtcDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subscriber_aliases",
        sa.Column("alias", sa.String(220), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("subscriber_aliases")
