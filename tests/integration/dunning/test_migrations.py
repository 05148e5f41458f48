"""The Alembic revisions (spelt out, not ``create_all``) create exactly the tables the
models declare, on SQLite and PostgreSQL; and a database at 0001 upgrades in place."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from services.common.db import make_engine
from services.common.migrations import alembic_config, upgrade_to_head
from services.dunning.adapters.orm import metadata
from services.dunning.bootstrap import MIGRATIONS
from tests.conftest import TestDatabase
from tests.integration.dunning.conftest import Dunning


def test_migrations_create_exactly_the_mapped_tables(dunning: Dunning) -> None:
    with dunning.engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), metadata
        )
        tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
    assert differences == []
    assert tables == set(metadata.tables)
    upgrade_to_head(dunning.engine, MIGRATIONS)  # twice is harmless


def test_a_database_at_0001_keeps_its_rows_through_0002(database: TestDatabase) -> None:
    engine = make_engine(database.url, database.schema, instrument=False)
    try:
        with engine.begin() as connection:
            config = alembic_config(MIGRATIONS, engine)
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
            connection.execute(
                text(
                    "INSERT INTO dunned_accounts (account_id, customer_id, group_id,"
                    " reseller_id, currency, closed, last_failure_reason, exempt_reason,"
                    " episode_id, state, level, end_reason, policy_code, policy_version,"
                    " service_action, version) VALUES ('acc_old', 'cus_old', '', '', 'EUR',"
                    " false, '', '', '', 'ENDED', 0, '', '', 0, '', 1)"
                )
            )
        upgrade_to_head(engine, MIGRATIONS)
        with engine.connect() as connection:
            zone = connection.execute(
                text("SELECT time_zone FROM dunned_accounts WHERE account_id = 'acc_old'")
            ).scalar_one()
        assert zone == ""
    finally:
        engine.dispose()
