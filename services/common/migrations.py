"""Alembic, run per service and programmatically.

Each service keeps its revisions in ``services/<svc>/adapters/migrations``;
that folder's ``env.py`` is two lines that call ``run_env`` here. Services
upgrade to head at start (``*_MIGRATE_ON_START``), holding a PostgreSQL
advisory lock so replicas starting together do not race.
"""

from __future__ import annotations

import zlib
from importlib import resources

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, Engine, MetaData, text

from services.common.db import is_sqlite


def alembic_config(migrations_package: str, engine: Engine | None = None) -> Config:
    location = resources.files(migrations_package)
    config = Config()
    config.set_main_option("script_location", str(location))
    config.set_main_option("path_separator", "os")
    if engine is not None:
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(False))
    return config


def upgrade_to_head(engine: Engine, migrations_package: str) -> None:
    """Bring the service's tables to the newest revision."""
    config = alembic_config(migrations_package, engine)
    with engine.begin() as connection:
        if not is_sqlite(engine):
            lock_id = zlib.crc32(migrations_package.encode())
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's ``env.py``: online migrations on the given connection."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        # Invoked from the alembic CLI (e.g. `alembic revision --autogenerate`).
        from services.common.db import make_engine

        engine = make_engine(
            context.config.get_main_option("sqlalchemy.url") or "", instrument=False
        )
        with engine.begin() as fresh:
            _configure_and_run(fresh, target_metadata)
        return
    _configure_and_run(connection, target_metadata)


def _configure_and_run(connection: Connection, target_metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
