"""The Alembic revisions create exactly the tables the ORM maps, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from services.common.migrations import upgrade_to_head
from services.payments.adapters.orm import metadata
from services.payments.bootstrap import MIGRATIONS
from tests.integration.payments.conftest import PaymentsWorld


def test_migrations_create_exactly_the_mapped_tables(world: PaymentsWorld) -> None:
    with world.engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), metadata
        )
        tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
    assert differences == []
    assert tables == set(metadata.tables)
    upgrade_to_head(world.engine, MIGRATIONS)  # twice is harmless
