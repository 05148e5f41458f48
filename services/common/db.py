"""SQL engines for SQLite (embedded) and PostgreSQL (production), and the kit's tables.

Each service owns its tables. On PostgreSQL they live in the service's own
schema (``search_path`` is set on every connection), so several services can
share one database without reading each other's tables, and tests isolate a
run in a fresh schema. On SQLite each service has its own file.

The kit's tables, added to every service's metadata by ``add_kit_tables``:
- ``outbox``: events committed with the business change, relayed to Redis Streams;
- ``processed_events``: the inbox that makes event consumers idempotent;
- ``idempotency_keys``: ``request_id`` of mutating calls (AIP-155).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url

from services.common.sqltypes import big_serial
from services.common.telemetry import instrument_engine

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return url.startswith("sqlite")


def make_engine(
    url: str, schema: str | None = None, *, pool_size: int = 10, instrument: bool = True
) -> Engine:
    """An engine for ``url``; on PostgreSQL every connection works inside ``schema``."""
    url = normalise_url(url)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets readers run beside the single writer; FKs are off by default in SQLite.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
    else:
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        if schema:
            if not _SCHEMA_NAME.match(schema):
                raise ValueError(f"invalid schema name {schema!r}")

            # Registered before the first connection, so no pooled connection misses it.
            @event.listens_for(engine, "connect")
            def _search_path(dbapi_connection: Any, _: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
                if cursor.fetchone() is None:
                    try:
                        cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                        dbapi_connection.commit()
                    except Exception:  # noqa: BLE001 - a concurrent connection created it
                        dbapi_connection.rollback()
                cursor.execute(f'SET search_path TO "{schema}"')
                cursor.close()
                dbapi_connection.commit()

    if instrument:
        instrument_engine(engine)
    return engine


@dataclass(frozen=True)
class KitTables:
    outbox: Table
    processed_events: Table
    idempotency_keys: Table


def add_kit_tables(metadata: MetaData) -> KitTables:
    outbox = Table(
        "outbox",
        metadata,
        Column(
            "seq",
            big_serial(),
            primary_key=True,
            autoincrement=True,
        ),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("event_type", String(128), nullable=False),
        Column("stream", String(128), nullable=False),
        Column("envelope", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("relayed_at", DateTime(timezone=True), nullable=True),
    )
    Index("ix_outbox_unrelayed", outbox.c.relayed_at, outbox.c.seq)
    processed = Table(
        "processed_events",
        metadata,
        Column("consumer", String(128), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    )
    idempotency = Table(
        "idempotency_keys",
        metadata,
        Column("scope", String(128), primary_key=True),
        Column("request_id", String(128), primary_key=True),
        Column("fingerprint", String(64), nullable=False),
        Column("resource_id", String(64), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    return KitTables(outbox, processed, idempotency)
