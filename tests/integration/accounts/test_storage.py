"""Storage: migrations match the mapping, versions stop lost updates, amounts stay exact."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from reckon.accounts.v1 import accounts_pb2 as pb
from services.accounts.adapters.orm import metadata
from services.accounts.adapters.unit_of_work import SqlAccountsUnitOfWork, session_factory
from services.accounts.bootstrap import MIGRATIONS
from services.accounts.domain.model import (
    Account,
    AccountState,
    Customer,
    PaymentMode,
)
from services.common.clock import ManualClock
from services.common.db import make_engine
from services.common.errors import Aborted
from services.common.migrations import upgrade_to_head
from services.common.money import Money
from tests.conftest import TestDatabase
from tests.integration.accounts.conftest import Accounts

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


@pytest.fixture
def engine(database: TestDatabase) -> Iterator[Engine]:
    engine = make_engine(database.url, database.schema, instrument=False)
    upgrade_to_head(engine, MIGRATIONS)
    yield engine
    engine.dispose()


def test_migrations_create_exactly_the_mapped_tables(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), metadata
        )
        tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
    assert differences == []
    assert tables == set(metadata.tables)


def test_upgrading_twice_is_harmless(engine: Engine) -> None:
    upgrade_to_head(engine, MIGRATIONS)


def seed(engine: Engine, clock: ManualClock) -> str:
    uow = SqlAccountsUnitOfWork(session_factory(engine), clock=clock)
    customer, _ = Customer.register(
        customer_id="cus_seed",
        display_name="Seed",
        email="seed@example.com",
        phone_number="",
        language_code="",
        reseller_id="",
        group_id="",
        referral_code="SEEDSEED",
        referrer=None,
        now=clock.now(),
    )
    account, _ = Account.open(
        account_id="acc_seed",
        customer=customer,
        display_name="",
        currency_code="KWD",
        time_zone="Asia/Kuwait",
        bill_cycle_day=3,
        tax_region="KW",
        payment_terms_days=0,
        payment_mode=PaymentMode.POSTPAID,
        credit_limit=Money.of("98765432109876543210.123456789", "KWD"),
        parent_chain=[],
        now=clock.now(),
    )
    # Two units, as the service does: inserts of unrelated mappers are not ordered by FK.
    with uow:
        uow.customers.add(customer)
        uow.commit()
    with uow:
        uow.accounts.add(account)
        uow.commit()
    return account.account_id


def test_amounts_and_instants_come_back_exact_and_in_utc(engine: Engine) -> None:
    clock = ManualClock(NOW)
    account_id = seed(engine, clock)
    with SqlAccountsUnitOfWork(session_factory(engine), clock=clock) as uow:
        account = uow.accounts.get(account_id)
        assert account is not None
        assert account.credit_limit == Money.of("98765432109876543210.123456789", "KWD")
        assert str(account.credit_limit.amount) == "98765432109876543210.123456789"
        assert account.create_time == NOW
        assert account.create_time.tzinfo is not None
        assert account.state is AccountState.ACTIVE


def test_two_concurrent_state_changes_cannot_both_win(engine: Engine) -> None:
    clock = ManualClock(NOW)
    account_id = seed(engine, clock)
    sessions = session_factory(engine)
    first = SqlAccountsUnitOfWork(sessions, clock=clock)
    second = SqlAccountsUnitOfWork(sessions, clock=clock)

    with first, second:
        # Both read the ACTIVE account before either writes.
        mine, theirs = first.accounts.get(account_id), second.accounts.get(account_id)
        assert mine is not None
        assert theirs is not None
        first.publish(mine.suspend("overdue", clock.now()))
        theirs_event = theirs.bar("fraud", clock.now())
        second.publish(theirs_event)
        first.commit()
        with pytest.raises(Aborted):
            second.commit()

    with SqlAccountsUnitOfWork(sessions, clock=clock) as uow:
        account = uow.accounts.get(account_id)
        assert account is not None
        assert account.state is AccountState.SUSPENDED
        assert [(c.from_state, c.to_state) for c in account.state_changes] == [
            (AccountState.ACTIVE, AccountState.SUSPENDED)
        ]


def test_a_subscription_change_conflicts_with_a_concurrent_account_change(
    engine: Engine,
) -> None:
    from services.accounts.domain.model import Subscription

    clock = ManualClock(NOW)
    account_id = seed(engine, clock)
    sessions = session_factory(engine)
    closing = SqlAccountsUnitOfWork(sessions, clock=clock)
    subscribing = SqlAccountsUnitOfWork(sessions, clock=clock)

    with closing, subscribing:
        to_close = closing.accounts.get(account_id)
        to_grow = subscribing.accounts.get(account_id)
        assert to_close is not None
        assert to_grow is not None
        sub, _ = Subscription.start(
            subscription_id="sub_race", account=to_grow, plan_code="basic", now=clock.now()
        )
        subscribing.subscriptions.add(sub)
        subscribing.accounts.guard(to_grow)
        to_close.close("gone", clock.now())
        closing.commit()
        with pytest.raises(Aborted):
            subscribing.commit()

    with SqlAccountsUnitOfWork(sessions, clock=clock) as uow:
        assert uow.subscriptions.get("sub_race") is None


async def test_a_burst_of_identical_suspensions_has_exactly_one_winner(accounts: Accounts) -> None:
    account = await accounts.account()

    async def suspend() -> grpc.StatusCode:
        try:
            await accounts.stub.SuspendAccount(
                pb.SuspendAccountRequest(account_id=account.account_id, reason="overdue")
            )
        except grpc.aio.AioRpcError as error:
            return error.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    outcomes = await asyncio.gather(*(suspend() for _ in range(8)))

    assert outcomes.count(grpc.StatusCode.OK) == 1
    assert set(outcomes) <= {
        grpc.StatusCode.OK,
        grpc.StatusCode.ABORTED,  # lost the race on the version
        grpc.StatusCode.FAILED_PRECONDITION,  # came after the winner: already SUSPENDED
    }
    history = await accounts.stub.ListAccountStateHistory(
        pb.ListAccountStateHistoryRequest(account_id=account.account_id)
    )
    assert len(history.state_changes) == 1
