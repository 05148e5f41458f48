"""Invoicing's Alembic revisions create exactly the tables the adapters use, on both databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from services.common.db import make_engine
from services.common.migrations import upgrade_to_head
from services.invoicing.adapters.orm import metadata
from services.invoicing.bootstrap import MIGRATIONS
from tests.conftest import TestDatabase


@pytest.fixture
def engine(database: TestDatabase) -> Iterator[Engine]:
    engine = make_engine(database.url, database.schema, instrument=False)
    upgrade_to_head(engine, MIGRATIONS)
    yield engine
    engine.dispose()


def test_migrations_create_exactly_the_tables_of_the_adapters(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), metadata
        )
        tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
    assert differences == []
    assert tables == set(metadata.tables)


def test_upgrading_twice_is_harmless(engine: Engine) -> None:
    upgrade_to_head(engine, MIGRATIONS)
