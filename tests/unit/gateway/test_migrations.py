"""The gateway's Alembic revisions create exactly the tables its store maps, on SQLite
and PostgreSQL; a database filled before the gateway had migrations is adopted."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from gateway.store import CredentialStore, metadata, migrate_to_head
from services.common.db import make_engine
from tests.conftest import TestDatabase


def test_migrations_create_exactly_the_mapped_tables(database: TestDatabase) -> None:
    store = CredentialStore.open(database.url, database.schema)
    try:
        with store.engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(connection, opts={"compare_type": True}), metadata
            )
            tables = set(inspect(connection).get_table_names())
            version = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert version.scalar() == "0001"
        assert differences == []
        assert tables - {"alembic_version"} == set(metadata.tables)
        migrate_to_head(store.engine)  # a second start (or a second replica) changes nothing
    finally:
        store.engine.dispose()


def test_tables_made_before_migrations_are_adopted_with_their_rows(
    database: TestDatabase,
) -> None:
    engine = make_engine(database.url, database.schema)
    try:
        metadata.create_all(engine)  # what gateways did at start before Alembic
        _, key = CredentialStore(engine).add_api_client("crm", frozenset({"read"}))
        migrate_to_head(engine)
        client_id, secret = key.split(".", 1)
        assert CredentialStore(engine).verify_client(client_id, secret) is not None
        assert "alembic_version" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_without_migrate_on_start_nothing_is_created(database: TestDatabase) -> None:
    store = CredentialStore.open(database.url, database.schema, migrate=False)
    try:
        assert inspect(store.engine).get_table_names() == []
    finally:
        store.engine.dispose()
