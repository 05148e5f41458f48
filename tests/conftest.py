"""Shared fixtures: a real Redis server started for the session, SQL on SQLite and PostgreSQL.

PostgreSQL is found at ``RECKON_TEST_POSTGRES_URL`` (default: the local server with
trust auth, database ``test``). Each test gets its own schema, dropped afterwards.
When PostgreSQL cannot be reached the PostgreSQL-parametrised tests fail under CI
(``CI=true``) and are skipped elsewhere, with the reason shown.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import create_engine, text

from suite.redis_server import EmbeddedRedis

POSTGRES_URL = os.environ.get(
    "RECKON_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TEST_TOKEN = "test-service-token-0123456789"
_schemas = itertools.count()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
async def redis_client(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False  # a fixture value, not a test class

    url: str
    schema: str | None

    @property
    def kind(self) -> str:
        return "sqlite" if self.url.startswith("sqlite") else "postgres"


_postgres_problem: str | None = None
_postgres_checked = False


def _postgres_unavailable() -> str | None:
    global _postgres_checked, _postgres_problem
    if not _postgres_checked:
        _postgres_checked = True
        try:
            engine = create_engine(POSTGRES_URL)
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            engine.dispose()
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            _postgres_problem = f"PostgreSQL at {POSTGRES_URL} unreachable: {exc}"
    return _postgres_problem


def require_postgres() -> None:
    problem = _postgres_unavailable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """An empty database of each kind; PostgreSQL in a schema of its own."""
    if request.param == "sqlite":
        yield TestDatabase(f"sqlite:///{tmp_path / 'test.db'}", None)
        return
    require_postgres()
    schema = f"t{os.getpid()}_{next(_schemas)}"
    yield TestDatabase(POSTGRES_URL, schema)
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def service_env(
    redis_server: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Environment a service needs to start, pointed at the test Redis and a temp data dir."""
    env = {
        "RECKON_SERVICE_TOKEN": TEST_TOKEN,
        "REDIS_URL": redis_server.url,
        "RECKON_DATA_DIR": str(tmp_path / "data"),
        "OTEL_SDK_DISABLED": "false",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
