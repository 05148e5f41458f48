"""Invoicing started in-process per test, on SQLite and PostgreSQL, with a real Redis.

The world (customers, accounts, subscriptions, rated usage) arrives the way it
does in production: as accounts' and rating's events on their Redis streams,
built from those services' own event classes. Plan fees come from a fixed price
list implementing the pricing port (``rating`` itself is exercised by
``test_plan_fees``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from sqlalchemy import Engine, func, select

from reckon.invoicing.v1 import invoicing_pb2_grpc
from services.accounts.domain.events import (
    AccountCreated,
    CustomerCreated,
    SubscriptionChanged,
    SubscriptionChangeKind,
)
from services.common.clock import ManualClock
from services.common.config import load_settings
from services.common.db import make_engine
from services.common.events import DomainEvent, EventEnvelope, stream_for
from services.common.grpc_client import open_channel
from services.common.ids import new_id
from services.common.money import Money
from services.invoicing.adapters.documents import ModelRenderer
from services.invoicing.adapters.orm import metadata
from services.invoicing.bootstrap import RunningInvoicing, running_service
from services.invoicing.config import InvoicingSettings
from services.invoicing.domain.builder import FeeQuote, FeeTiming, Pricing, TaxRate
from services.invoicing.domain.cycles import cycle_containing
from services.invoicing.domain.parties import AccountFacts
from services.rating.service_layer.events import UsageRated
from tests.conftest import TEST_TOKEN, TestDatabase

VAT21 = TaxRate("S", Decimal(21))


class PriceList:
    """The pricing port answered from a fixed list: basic 31.00/month in advance with a
    10.00 activation fee; pro 62.00/month; tv add-on 10.00/month; VAT 21 %."""

    def __init__(self) -> None:
        def fee(code: str, amount: str, timing: FeeTiming) -> FeeQuote:
            return FeeQuote(
                code, code.title(), code, Money.of(amount, "EUR"), timing, "S", Decimal(21)
            )

        self.fees = {
            "basic": [
                fee("basic", "31.00", FeeTiming.IN_ADVANCE),
                fee("activation", "10.00", FeeTiming.ONE_TIME),
            ],
            "pro": [fee("pro", "62.00", FeeTiming.IN_ADVANCE)],
            "tv": [fee("tv", "10.00", FeeTiming.IN_ADVANCE)],
        }
        self.calls = 0

    def quote(
        self,
        account: AccountFacts,
        plan_codes: Collection[str],
        services: Collection[str],
        at: datetime,
    ) -> Pricing:
        self.calls += 1
        return Pricing({code: self.fees.get(code, []) for code in plan_codes}, {}, VAT21)


async def wait_for(
    probe: Callable[[], Awaitable[Any]], within: float, what: str, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class World:
    """A running invoicing service, its stub, and helpers that publish the world as events."""

    service: RunningInvoicing
    stub: Any
    channel: grpc.aio.Channel
    redis: aioredis.Redis
    database: TestDatabase
    engine: Engine
    clock: ManualClock

    def row_counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            return {
                name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in metadata.tables.items()
                if name not in ("outbox", "idempotency_keys", "processed_events")
            }

    async def publish(self, source: str, event: DomainEvent) -> str:
        envelope = EventEnvelope(
            event_id=new_id("evt"),
            event_type=event.event_type,
            source=source,
            aggregate_id=event.aggregate_id,
            occurred_at=self.clock.now(),
            payload=event.payload(),
        )
        await self.redis.xadd(stream_for(source), {"envelope": envelope.to_json()})
        return envelope.event_id

    async def processed(self, count: int) -> None:
        from services.invoicing.adapters.orm import kit

        def seen() -> int:
            with self.engine.connect() as connection:
                return int(
                    connection.execute(
                        select(func.count()).select_from(kit.processed_events)
                    ).scalar_one()
                )

        async def probe() -> bool:
            return await asyncio.to_thread(seen) >= count

        await wait_for(probe, 15, f"{count} events consumed")

    async def account(
        self,
        *,
        bcd: int = 1,
        zone: str = "Europe/Amsterdam",
        terms: int = 14,
        created: datetime | None = None,
        group: str = "",
        parent: str = "",
        tax_region: str = "NL",
        vat_id: str = "",
    ) -> tuple[str, str]:
        customer_id, account_id = new_id("cus"), new_id("acc")
        created = created or self.clock.now()
        await self.publish(
            "accounts",
            CustomerCreated(
                customer_id=customer_id,
                display_name="Ada Lovelace",
                email="ada@example.com",
                language_code="nl",
                reseller_id="",
                group_id=group,
                referral_code="ABCDEFGH",
                referred_by="",
                referrer_customer_id="",
                create_time=created,
                vat_id=vat_id,
            ),
        )
        await self.publish(
            "accounts",
            AccountCreated(
                account_id=account_id,
                customer_id=customer_id,
                reseller_id="",
                group_id=group,
                currency_code="EUR",
                time_zone=zone,
                bill_cycle_day=bcd,
                tax_region=tax_region,
                payment_terms_days=terms,
                payment_mode="POSTPAID",
                credit_limit=Money.of("100", "EUR"),
                parent_account_id=parent,
                state="ACTIVE",
                create_time=created,
            ),
        )
        return customer_id, account_id

    async def subscription_change(
        self,
        account_id: str,
        customer_id: str,
        kind: SubscriptionChangeKind,
        at: datetime,
        *,
        subscription_id: str,
        plan: str = "basic",
        old_plan: str = "",
        add_on: str = "",
        bcd: int = 1,
        zone: str = "Europe/Amsterdam",
    ) -> None:
        cycle = cycle_containing(at, bcd, zone)
        await self.publish(
            "accounts",
            SubscriptionChanged(
                subscription_id=subscription_id,
                account_id=account_id,
                customer_id=customer_id,
                kind=kind,
                plan_code=plan,
                old_plan_code=old_plan or plan,
                new_plan_code=plan,
                add_on_code=add_on,
                add_on_quantity=1 if add_on else 0,
                effective_time=at,
                period_start=cycle.start,
                period_end=cycle.end,
                currency_code="EUR",
                time_zone=zone,
                bill_cycle_day=bcd,
                reason="",
            ),
        )

    async def usage(
        self, account_id: str, at: datetime, nets: list[str], service: str = "voice"
    ) -> None:
        records = [
            {
                "record_id": new_id("cdr"),
                "account_id": account_id,
                "service": service,
                "quantity": 60,
                "unit": "SEC",
                "amount": {"amount": str(Decimal(net) * Decimal("1.21")), "currency": "EUR"},
                "net": {"amount": net, "currency": "EUR"},
                "tax": {"amount": "0", "currency": "EUR"},
                "event_time": at.isoformat(),
                "plan_code": "basic",
                "plan_version": 1,
                "destination": "NL mobile",
            }
            for net in nets
        ]
        await self.publish(
            "rating", UsageRated(file_id=new_id("fil"), catalog_revision=1, records=records)
        )


def invoicing_settings(database: TestDatabase, **overrides: Any) -> InvoicingSettings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "database_url": database.url,
        "database_schema": database.schema,
        "shutdown_grace_seconds": 0,
        "daily_bill_runs": False,
        "scheduler_interval_seconds": 0.2,
        "work_claim_idle_ms": 500,
    }
    values.update(overrides)
    return load_settings(InvoicingSettings, **values)


@asynccontextmanager
async def serve_world(
    settings: InvoicingSettings,
    database: TestDatabase,
    redis_client: aioredis.Redis,
    clock: ManualClock,
    **service: Any,
) -> AsyncIterator[World]:
    """The invoicing service running on ``settings`` and the test clock, with a stub to it."""
    async with running_service(settings, clock=clock, **service) as running:
        engine = make_engine(database.url, database.schema, instrument=False)
        channel = open_channel(f"127.0.0.1:{running.port}", TEST_TOKEN, traced=False)
        try:
            yield World(
                service=running,
                stub=invoicing_pb2_grpc.InvoicingServiceStub(channel),
                channel=channel,
                redis=redis_client,
                database=database,
                engine=engine,
                clock=clock,
            )
        finally:
            await channel.close()
            engine.dispose()


@pytest.fixture
def start_time() -> datetime:
    return datetime(2027, 1, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
async def world(
    database: TestDatabase,
    service_env: dict[str, str],
    redis_client: aioredis.Redis,
    start_time: datetime,
) -> AsyncIterator[World]:
    clock = ManualClock(start_time)
    settings = invoicing_settings(database)
    renderer = ModelRenderer()
    async with serve_world(
        settings, database, redis_client, clock, pricer=PriceList(), renderer=renderer
    ) as world:
        yield world


@pytest.fixture
async def scheduled_world(
    database: TestDatabase, service_env: dict[str, str], redis_client: aioredis.Redis
) -> AsyncIterator[World]:
    """Invoicing with its daily runs on, on the test clock at 10 January 09:00Z."""
    clock = ManualClock(datetime(2027, 1, 10, 9, 0, tzinfo=UTC))
    settings = invoicing_settings(database, daily_bill_runs=True)
    async with serve_world(settings, database, redis_client, clock, pricer=PriceList()) as world:
        yield world
