"""The versions kept of each customer (ADR 0075), on SQLite and PostgreSQL: which one an
invoice issued at a given instant shows, and what revision 0003 gives the customers
known before it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from services.common.db import make_engine
from services.common.migrations import alembic_config, upgrade_to_head
from services.invoicing.adapters.orm import customers
from services.invoicing.adapters.repositories import SqlParties
from services.invoicing.bootstrap import MIGRATIONS
from services.invoicing.domain.parties import CustomerFacts
from tests.conftest import TestDatabase

JAN = datetime(2027, 1, 1, tzinfo=UTC)


def facts(name: str, vat_id: str = "") -> CustomerFacts:
    return CustomerFacts("cus_1", name, f"{name.lower()}@example.com", "en", "", "", vat_id)


@pytest.fixture
def engine(database: TestDatabase) -> Iterator[Engine]:
    engine = make_engine(database.url, database.schema, instrument=False)
    yield engine
    engine.dispose()


def test_an_instant_sees_the_last_version_in_force_and_known_then(engine: Engine) -> None:
    upgrade_to_head(engine, MIGRATIONS)
    day = timedelta(days=1)
    with Session(engine) as session:
        parties = SqlParties(session)
        parties.put_customer(facts("Ada", "NL1"), effective_time=JAN, recorded_time=JAN)
        # Changed on the 10th, learnt on the 10th.
        parties.put_customer(
            facts("Bea", "NL2"), effective_time=JAN + 9 * day, recorded_time=JAN + 9 * day
        )
        # Said to be in force from the 5th, but learnt only on the 20th.
        parties.put_customer(
            facts("Cid"), effective_time=JAN + 4 * day, recorded_time=JAN + 19 * day
        )
        session.commit()

        assert parties.customer_as_of("cus_1", JAN - day) is None
        assert parties.customer_as_of("cus_1", JAN) == facts("Ada", "NL1")
        assert parties.customer_as_of("cus_1", JAN + 8 * day) == facts("Ada", "NL1")
        assert parties.customer_as_of("cus_1", JAN + 9 * day) == facts("Bea", "NL2")
        assert parties.customer_as_of("cus_1", JAN + 18 * day) == facts("Bea", "NL2")
        assert parties.customer_as_of("cus_1", JAN + 19 * day) == facts("Cid")
        assert parties.customer("cus_1") == facts("Cid")  # the current view is unchanged
        assert parties.customer_as_of("cus_other", JAN + 19 * day) is None


def test_revision_0003_gives_known_customers_a_version_since_the_epoch(
    engine: Engine,
) -> None:
    config = alembic_config(MIGRATIONS, engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002_invoice_notifications")
        connection.execute(insert(customers).values(**vars(facts("Ada", "NL1"))))
    upgrade_to_head(engine, MIGRATIONS)
    with Session(engine) as session:
        parties = SqlParties(session)
        assert parties.customer_as_of("cus_1", datetime(1970, 1, 1, tzinfo=UTC)) == facts(
            "Ada", "NL1"
        )
        assert parties.customer_as_of("cus_1", JAN) == facts("Ada", "NL1")
