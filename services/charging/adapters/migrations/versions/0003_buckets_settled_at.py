"""buckets.settled_at: an ended bucket with nothing left, skipped by the forfeit pass;
buckets.meta_version: the version of the bucket's record last applied (UpdateBucket,
CloseBucket); indexes so that neither the forfeit pass nor the expiry announcements
walk old buckets.

Maintenance forfeits what an expired bucket still has available into the ledger
(ADR 0021); a reservation still open on it is forfeited when it comes back. The
bucket is settled once nothing is available or reserved.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.sqltypes import UtcDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("buckets", sa.Column("settled_at", UtcDateTime(), nullable=True))
    op.add_column(
        "buckets",
        sa.Column("meta_version", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_buckets_unsettled", "buckets", ["settled_at", "valid_until"])
    # The BucketExpired announcements ask the same kind of question.
    op.create_index("ix_buckets_unannounced", "buckets", ["expired_notified_at", "valid_until"])


def downgrade() -> None:
    op.drop_index("ix_buckets_unannounced", table_name="buckets")
    op.drop_index("ix_buckets_unsettled", table_name="buckets")
    op.drop_column("buckets", "meta_version")
    op.drop_column("buckets", "settled_at")
