"""Dunning tables: projections of accounts and invoices, policies, runs with work items,
reactions under their once-only keys, and the kit's outbox, inbox and idempotency keys.

The first revision creates the tables exactly as ``adapters/orm.py`` declares them
(``metadata.create_all``); later revisions must spell out their changes with ``op``.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

from services.dunning.adapters.orm import metadata

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
