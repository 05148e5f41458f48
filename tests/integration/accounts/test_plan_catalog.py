"""Accounts asks rating whether a plan exists (issue 3: unknown plan codes are refused).

Both services run in-process: rating on a SQLite file of its own, accounts on each
database kind, both on the session's Redis. Rating gets a small catalog through its
API, and accounts is pointed at it with ``RATING_ADDR`` as the suite does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from reckon.accounts.v1 import accounts_pb2 as pb
from reckon.accounts.v1 import accounts_pb2_grpc
from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.accounts.bootstrap import RunningAccounts, running_service
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from services.rating.config import RatingSettings
from services.rating.entrypoints.main import RunningRating, start
from suite.redis_server import EmbeddedRedis, free_port
from tests.conftest import TEST_TOKEN, TestDatabase
from tests.integration.accounts.conftest import accounts_settings

RETIRED_UNTIL = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
CATALOG = f"""
products: [{{code: voice, unit: second}}]
destinations: [{{name: NL, prefixes: ["31"]}}]
plans:
  - code: conference-pro
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        rates:
          - {{id: nl, service: voice, destination: NL, first_increment: 60,
              next_increment: 60, prices: {{"*": {{first: "0.10", next: "0.10"}}}}}}
  - code: legacy
    currency: EUR
    versions:
      - version: 1
        valid_from: 2025-01-01T00:00:00Z
        valid_to: {RETIRED_UNTIL}
        rates:
          - {{id: nl, service: voice, destination: NL, first_increment: 60,
              next_increment: 60, prices: {{"*": {{first: "0.20", next: "0.20"}}}}}}
"""


@pytest.fixture(scope="module", autouse=True)
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # As in test_tracing: this module owns the global provider; both services pick it up.
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    trace.set_tracer_provider(provider)
    return exporter


@dataclass
class TwoServices:
    accounts: Any  # AccountsServiceAsyncStub
    rating: Any  # RatingServiceAsyncStub
    running_rating: RunningRating

    async def apply(self, document: str = CATALOG) -> None:
        await self.rating.ApplyCatalog(
            rating_pb2.ApplyCatalogRequest(document=document, source_name="test.yaml")
        )

    async def account_id(self) -> str:
        customer = await self.accounts.CreateCustomer(
            pb.CreateCustomerRequest(customer=pb.Customer(display_name="Ada", email="a@x.example"))
        )
        account = await self.accounts.CreateAccount(
            pb.CreateAccountRequest(
                account=pb.Account(
                    customer_id=customer.customer.customer_id,
                    currency_code="EUR",
                    time_zone="Europe/Amsterdam",
                    bill_cycle_day=1,
                    payment_mode=pb.PAYMENT_MODE_PREPAID,
                )
            )
        )
        return str(account.account.account_id)

    async def subscribe(self, account_id: str, plan_code: str) -> pb.Subscription:
        reply = await self.accounts.CreateSubscription(
            pb.CreateSubscriptionRequest(
                subscription=pb.Subscription(account_id=account_id, plan_code=plan_code)
            )
        )
        return reply.subscription  # type: ignore[no-any-return]


@pytest.fixture
async def rating(
    redis_server: EmbeddedRedis, tmp_path: Path, service_env: dict[str, str]
) -> AsyncIterator[RunningRating]:
    settings = RatingSettings(
        service_token=SecretStr(TEST_TOKEN),
        redis_url=redis_server.url,
        data_dir=tmp_path / "rating-data",
        listen="127.0.0.1:0",
        database_url=f"sqlite:///{tmp_path / 'rating.db'}",
    )
    client = aioredis.Redis.from_url(redis_server.url)
    running = await start(settings, redis_client=client, background=False)
    yield running
    await running.stop(0)


@pytest.fixture
async def accounts_with_rating(
    database: TestDatabase, rating: RunningRating, redis_client: aioredis.Redis
) -> AsyncIterator[RunningAccounts]:
    settings = accounts_settings(database, rating_addr=rating.address)
    async with running_service(settings) as service:
        yield service


@pytest.fixture
async def services(
    accounts_with_rating: RunningAccounts, rating: RunningRating
) -> AsyncIterator[TwoServices]:
    async with (
        open_channel(accounts_with_rating.address, TEST_TOKEN, traced=False) as to_accounts,
        open_channel(rating.address, TEST_TOKEN, traced=False) as to_rating,
    ):
        yield TwoServices(
            accounts_pb2_grpc.AccountsServiceStub(to_accounts),
            rating_pb2_grpc.RatingServiceStub(to_rating),
            rating,
        )


async def refusal(call: Any) -> tuple[grpc.StatusCode, str, set[str], str]:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    details = details_of(failure.value)
    return details.code, details.reason, details.fields, details.message


async def test_a_plan_of_rating_catalog_is_sold_and_an_unknown_one_refused(
    services: TwoServices,
) -> None:
    await services.apply()
    account_id = await services.account_id()

    subscription = await services.subscribe(account_id, "conference-pro")
    assert subscription.plan_code == "conference-pro"

    code, reason, fields, _ = await refusal(services.subscribe(account_id, "gold"))
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_PLAN",
        {"subscription.plan_code"},
    )
    code, reason, fields, _ = await refusal(
        services.accounts.ChangePlan(
            pb.ChangePlanRequest(
                subscription_id=subscription.subscription_id,
                plan_code="gold",
                timing=pb.CHANGE_TIMING_IMMEDIATE,
            )
        )
    )
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_PLAN",
        {"plan_code"},
    )
    listed = await services.accounts.ListSubscriptions(
        pb.ListSubscriptionsRequest(account_id=account_id)
    )
    assert [s.plan_code for s in listed.subscriptions] == ["conference-pro"]


async def test_a_plan_whose_versions_all_ended_is_no_longer_sold(services: TwoServices) -> None:
    await services.apply()
    account_id = await services.account_id()
    code, reason, fields, _ = await refusal(services.subscribe(account_id, "legacy"))
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_PLAN",
        {"subscription.plan_code"},
    )


async def test_before_any_catalog_every_plan_is_unknown_and_a_new_plan_counts_at_once(
    services: TwoServices,
) -> None:
    account_id = await services.account_id()
    code, reason, _, _ = await refusal(services.subscribe(account_id, "conference-pro"))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_PLAN")

    await services.apply()  # refusals are not cached: the plan is sold right away
    subscription = await services.subscribe(account_id, "conference-pro")
    assert subscription.plan_code == "conference-pro"


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_unreachable_rating_is_unavailable_never_a_silent_yes(
    database: TestDatabase, service_env: dict[str, str], redis_client: aioredis.Redis
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    settings = accounts_settings(database, rating_addr=nowhere)
    async with (
        running_service(settings) as service,
        open_channel(service.address, TEST_TOKEN, traced=False) as channel,
    ):
        stub = accounts_pb2_grpc.AccountsServiceStub(channel)
        customer = await stub.CreateCustomer(
            pb.CreateCustomerRequest(customer=pb.Customer(display_name="Ada", email="a@x.example"))
        )
        account = await stub.CreateAccount(
            pb.CreateAccountRequest(
                account=pb.Account(
                    customer_id=customer.customer.customer_id,
                    currency_code="EUR",
                    time_zone="UTC",
                    bill_cycle_day=1,
                    payment_mode=pb.PAYMENT_MODE_PREPAID,
                )
            )
        )
        code, reason, _, message = await refusal(
            stub.CreateSubscription(
                pb.CreateSubscriptionRequest(
                    subscription=pb.Subscription(
                        account_id=account.account.account_id, plan_code="conference-pro"
                    )
                )
            )
        )
        listed = await stub.ListSubscriptions(
            pb.ListSubscriptionsRequest(account_id=account.account.account_id)
        )
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "PLAN_CATALOG_UNAVAILABLE")
    assert f"rating service at {nowhere}" in message
    assert list(listed.subscriptions) == []


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_the_plan_question_is_part_of_the_subscription_trace(
    services: TwoServices, spans: InMemorySpanExporter
) -> None:
    await services.apply()
    account_id = await services.account_id()
    spans.clear()
    await services.subscribe(account_id, "conference-pro")

    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    rating_server = next(
        s
        for s in finished
        if s.name == "/reckon.rating.v1.RatingService/GetPlan" and s.kind == trace.SpanKind.SERVER
    )
    chain = []
    span = rating_server
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append((span.name, span.kind))
    assert ("/reckon.rating.v1.RatingService/GetPlan", trace.SpanKind.CLIENT) in chain
    assert ("/reckon.accounts.v1.AccountsService/CreateSubscription", trace.SpanKind.SERVER) in (
        chain
    )
