"""The Alembic revisions create exactly the tables ``adapters/orm.py`` describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.charging.adapters.orm import metadata
from services.charging.bootstrap import MIGRATIONS
from services.common.db import make_engine
from services.common.migrations import upgrade_to_head
from tests.conftest import TestDatabase


def test_migrations_match_the_tables(database: TestDatabase) -> None:
    engine = make_engine(database.url, database.schema, instrument=False)
    try:
        upgrade_to_head(engine, MIGRATIONS)
        upgrade_to_head(engine, MIGRATIONS)  # idempotent: a second start changes nothing
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "target_metadata": metadata}
            )
            differences = [
                d
                for d in compare_metadata(context, metadata)
                if not (
                    isinstance(d, tuple)
                    and d[0] == "remove_table"
                    and d[1].name == "alembic_version"
                )
            ]
        assert differences == []
    finally:
        engine.dispose()
