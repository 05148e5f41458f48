"""Alembic, run per service and programmatically.

Each service keeps its revisions in ``services/<svc>/adapters/migrations``;
that folder's ``env.py`` is two lines that call ``run_env`` here. Services
upgrade to head at start (``*_MIGRATE_ON_START``), holding a PostgreSQL
advisory lock so replicas starting together do not race.
"""

from __future__ import annotations

import zlib
from importlib import resources

import sqlalchemy as sa
from alembic import command, context, op
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


def create_kit_tables() -> None:
    """Create the kit's tables (``services.common.db.add_kit_tables``) in a service's
    first revision: the outbox, the inbox of processed events and the idempotency keys.

    One definition for every service, so the kit's schema cannot drift between them; a
    later change to a kit table is a revision of its own in each service.
    """
    timestamp = sa.DateTime(timezone=True)
    op.create_table(
        "outbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("stream", sa.String(128), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("relayed_at", timestamp, nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_index("ix_outbox_unrelayed", "outbox", ["relayed_at", "seq"])
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("processed_at", timestamp, nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_processed_events"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
        sa.PrimaryKeyConstraint("scope", "request_id", name="pk_idempotency_keys"),
    )


def drop_kit_tables() -> None:
    """The reverse of :func:`create_kit_tables`, for a first revision's ``downgrade``."""
    op.drop_table("idempotency_keys")
    op.drop_table("processed_events")
    op.drop_index("ix_outbox_unrelayed", table_name="outbox")
    op.drop_table("outbox")
