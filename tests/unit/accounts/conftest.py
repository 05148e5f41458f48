"""Fixtures of the accounts unit tests: a manual clock and the in-memory unit of work."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.common.clock import ManualClock
from tests.unit.accounts.fakes import FakeDatabase, FakeUnitOfWork


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 15, 12, 0, tzinfo=UTC))


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def uow(db: FakeDatabase, clock: ManualClock) -> FakeUnitOfWork:
    return FakeUnitOfWork(db, clock)
