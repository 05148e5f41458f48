"""Credit control names the subscriber as the network does (issue 9 item 12, ADR 0058):
by a Subscription-Id (an E.164 number with or without '+', a SIP URI, a conference PIN,
an account code, ``ext:<external_ref>``) that charging learnt from accounts' events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from sqlalchemy import create_engine, text

from reckon.accounts.v1 import accounts_pb2 as apb
from reckon.accounts.v1 import accounts_pb2_grpc
from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from services.accounts.bootstrap import running_service
from services.charging.bootstrap import ChargingApp
from services.charging.entrypoints.grpc_servicer import binding
from services.charging.service_layer.subscribers import SubscriberDirectory
from services.common.clock import ManualClock
from services.common.errors import NotFound
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of, details_of_status
from tests.conftest import TEST_TOKEN, TestDatabase
from tests.integration.accounts.conftest import accounts_settings, wait_for
from tests.integration.charging.support import new_account
from tests.integration.charging.test_accounts_and_events import envelope
from tests.integration.charging.test_grpc_api import (
    batch,
    end,
    eur,
    read_answers,
    serving,
    voice,
)

INITIAL, UPDATE, TERMINATE = (
    pb.REQUEST_TYPE_INITIAL,
    pb.REQUEST_TYPE_UPDATE,
    pb.REQUEST_TYPE_TERMINATE,
)
E164, SIP, PRIVATE, ANY = (
    pb.SUBSCRIPTION_ID_TYPE_END_USER_E164,
    pb.SUBSCRIPTION_ID_TYPE_END_USER_SIP_URI,
    pb.SUBSCRIPTION_ID_TYPE_END_USER_PRIVATE,
    pb.SUBSCRIPTION_ID_TYPE_UNSPECIFIED,
)


def by_name(
    session: str,
    kind: int,
    number: int,
    id_type: int,
    data: str,
    *groups: pb.MultipleServicesCreditControl,
) -> pb.CreditControlRequest:
    return pb.CreditControlRequest(
        session_id=session,
        request_type=kind,  # type: ignore[arg-type]
        request_number=number,
        subscription_id=pb.SubscriptionId(type=id_type, data=data),  # type: ignore[arg-type]
        multiple_services=list(groups),
    )


def accounts_database(database: TestDatabase) -> TestDatabase:
    """A database of its own for the accounts service (its outbox is not charging's)."""
    if database.schema is None:
        return TestDatabase(database.url.replace("test.db", "accounts.db"), None)
    return TestDatabase(database.url, f"{database.schema}_acc")


@pytest.fixture
async def accounts_stub(
    database: TestDatabase, service_env: dict[str, str], redis_client: aioredis.Redis
) -> AsyncIterator[Any]:
    own = accounts_database(database)
    async with running_service(accounts_settings(own)) as service:
        channel = open_channel(f"127.0.0.1:{service.port}", TEST_TOKEN, traced=False)
        try:
            yield accounts_pb2_grpc.AccountsServiceStub(channel)
        finally:
            await channel.close()
    if own.schema is not None:
        engine = create_engine(own.url)
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{own.schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
async def stub(app: ChargingApp) -> AsyncIterator[charging_pb2_grpc.ChargingServiceStub]:
    async with serving(binding(app.handlers)) as running:
        yield running


async def test_a_subscriptions_numbers_name_its_account_in_credit_control(
    app: ChargingApp, accounts_stub: Any, stub: charging_pb2_grpc.ChargingServiceStub
) -> None:
    # Charging hears accounts' events on the real stream, as in production.
    stop = asyncio.Event()
    app.start_background(stop)
    customer = await accounts_stub.CreateCustomer(
        apb.CreateCustomerRequest(customer=apb.Customer(display_name="Ada", email="a@x.org"))
    )
    account = (
        await accounts_stub.CreateAccount(
            apb.CreateAccountRequest(
                account=apb.Account(
                    customer_id=customer.customer.customer_id,
                    currency_code="EUR",
                    time_zone="Europe/Amsterdam",
                    bill_cycle_day=1,
                    payment_mode=apb.PAYMENT_MODE_PREPAID,
                    external_ref="ACC-7",
                )
            )
        )
    ).account
    ids = [
        apb.ServiceIdentifier(kind=kind, value=value)
        for kind, value in (
            (apb.SERVICE_IDENTIFIER_KIND_MSISDN, "+31 6 1234 5678"),
            (apb.SERVICE_IDENTIFIER_KIND_SIP_URI, "sip:ada@example.com"),
            (apb.SERVICE_IDENTIFIER_KIND_CONFERENCE_PIN, "482913"),
        )
    ]
    await accounts_stub.CreateSubscription(
        apb.CreateSubscriptionRequest(
            subscription=apb.Subscription(
                account_id=account.account_id, plan_code="basic", service_ids=ids
            )
        )
    )
    directory = app.handlers.subscribers

    async def learnt() -> str | None:
        try:
            return await directory.account_for(("pin:482913",))
        except NotFound:
            directory.forget()  # not yet: ask SQL again next time
            return None

    assert await wait_for(learnt, 15, "charging to learn the PIN") == account.account_id
    # AccountCreated made the account a prepaid EUR account in charging: top it up.
    await stub.TopUp(
        pb.TopUpRequest(
            account_id=account.account_id, amount=pb.Quantity(money=eur(5)), request_id="top-1"
        )
    )

    # One session, each request naming the subscriber differently: +E.164, E.164 without
    # '+', the SIP URI in another case.
    first = await stub.CreditControl(by_name("s1", INITIAL, 0, E164, "+31612345678", voice(60)))
    assert first.result_code == pb.RESULT_CODE_SUCCESS
    assert first.multiple_services[0].granted_units.time_seconds == 60
    await stub.CreditControl(by_name("s1", UPDATE, 1, E164, "31612345678", voice(60, used=60)))
    last = await stub.CreditControl(
        by_name("s1", TERMINATE, 2, SIP, "sip:Ada@Example.COM", voice(used=30))
    )
    assert last.result_code == pb.RESULT_CODE_SUCCESS
    # The session lives under the account's id: 90 s cumulatively priced, 2 minutes.
    session = await stub.GetCreditControlSession(
        pb.GetCreditControlSessionRequest(account_id=account.account_id, session_id="s1")
    )
    assert session.session.state == pb.CREDIT_CONTROL_SESSION_STATE_CLOSED
    # The account's external reference and the PIN (END_USER_PRIVATE), and a bare number
    # of no stated type, name it too.
    for sid, id_type, data in (("s2", PRIVATE, "ext:ACC-7"), ("s3", PRIVATE, "482913")):
        await stub.CreditControl(by_name(sid, INITIAL, 0, id_type, data, voice(60)))
        await stub.CreditControl(by_name(sid, TERMINATE, 1, id_type, data, voice(used=60)))
    await stub.CreditControl(by_name("s4", INITIAL, 0, ANY, "31612345678", voice(60)))
    await stub.CreditControl(by_name("s4", TERMINATE, 1, ANY, "31612345678", voice(used=1)))
    balance = await stub.GetBalance(pb.GetBalanceRequest(account_id=account.account_id))
    assert balance.buckets[0].available.money == eur(4, 500_000_000)  # 5 - 5 x 0.10

    # A number nobody holds: NOT_FOUND naming the subscriber, nothing charged.
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.CreditControl(by_name("s5", INITIAL, 0, E164, "+4930999999", voice(60)))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    details = details_of(unknown.value)
    assert details.reason == "SUBSCRIBER_NOT_FOUND"
    assert (details.resource_type, details.resource_name) == ("subscriber", "msisdn:+4930999999")

    # The batched stream resolves each request on its own.
    call = stub.StreamCreditControlBatches()
    await call.write(
        batch(
            [
                by_name("b1", INITIAL, 0, E164, "31612345678", voice(60)),
                by_name("b2", INITIAL, 0, E164, "4930999999", voice(60)),
                by_name("b3", INITIAL, 0, SIP, "sip:ada@example.com", voice(60)),
            ]
        )
    )
    answers, _ = await read_answers(call, 3)
    await end(call)
    outcome = {a.session_id: a for a in answers}
    assert outcome["b1"].response.multiple_services[0].granted_units.time_seconds == 60
    assert outcome["b3"].response.multiple_services[0].granted_units.time_seconds == 60
    refused = details_of_status(outcome["b2"].error)
    assert (outcome["b2"].error.code, refused.reason) == (
        grpc.StatusCode.NOT_FOUND.value[0],
        "SUBSCRIBER_NOT_FOUND",
    )
    listed = await stub.ListCreditControlSessions(
        pb.ListCreditControlSessionsRequest(account_id=account.account_id)
    )
    assert sorted(s.session_id for s in listed.sessions) == ["b1", "b3"]
    # So does the plain stream.
    plain = stub.StreamCreditControl()
    await plain.write(
        pb.StreamCreditControlRequest(
            request=by_name("p1", INITIAL, 0, PRIVATE, "ext:ACC-7", voice(60))
        )
    )
    reply = await asyncio.wait_for(plain.read(), 10)
    assert reply.response.multiple_services[0].granted_units.time_seconds == 60
    await plain.done_writing()


async def test_requests_name_the_subscriber_exactly_once_and_well(
    app: ChargingApp, stub: charging_pb2_grpc.ChargingServiceStub
) -> None:
    cases = {
        "account_id": pb.CreditControlRequest(
            session_id="x", request_type=INITIAL, multiple_services=[voice(60)]
        ),
        "subscription_id": replace_account(by_name("x", INITIAL, 0, E164, "+31612345678"), "a"),
        "subscription_id.data": by_name("x", INITIAL, 0, E164, "06-12", voice(60)),
        "subscription_id.type": by_name("x", INITIAL, 0, 99, "+31612345678", voice(60)),
    }
    for field, request in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.CreditControl(request)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in details_of(bad.value).fields, field
    for data in ("sip:nobody", "ext:has space", "x" * 201):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.CreditControl(by_name("x", INITIAL, 0, ANY, data, voice(60)))
        assert details_of(bad.value).fields == {"subscription_id.data"}, data


def replace_account(request: pb.CreditControlRequest, account: str) -> pb.CreditControlRequest:
    request.account_id = account
    request.multiple_services.append(voice(60))
    return request


async def test_a_number_given_to_another_account_follows_it(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "old_owner", balance="5.00")
    await new_account(app, "new_owner", balance="5.00")

    def subscribed(account: str, event_id: str) -> Any:
        return envelope(
            "SubscriptionChanged",
            {"account_id": account, "kind": "CREATED", "service_ids": ["msisdn:+31612345678"]},
            clock,
            event_id,
        )

    directory = app.handlers.subscribers
    first = subscribed("old_owner", "evt-a")
    await app.states.handle(first)
    # Another worker, its cache filled before the move, its clock under the test's hand.
    ticks = [0.0]
    other = SubscriberDirectory(
        app.handlers.uow_factory, ttl_seconds=30, monotonic=lambda: ticks[0]
    )
    assert await other.account_for(("msisdn:+31612345678",)) == "old_owner"

    clock.advance(timedelta(minutes=1))
    await app.states.handle(subscribed("new_owner", "evt-b"))
    await app.states.handle(first)  # a late redelivery of the older event moves nothing back
    assert await directory.account_for(("msisdn:+31612345678",)) == "new_owner"
    # The other worker follows once its cached answer is older than its time to live.
    assert await other.account_for(("msisdn:+31612345678",)) == "old_owner"
    ticks[0] = 31.0
    assert await other.account_for(("msisdn:+31612345678",)) == "new_owner"

    async with serving(binding(app.handlers)) as grpc_stub:
        await grpc_stub.CreditControl(by_name("m1", INITIAL, 0, E164, "31612345678", voice(60)))
        await grpc_stub.CreditControl(
            by_name("m1", TERMINATE, 1, E164, "31612345678", voice(used=60))
        )
        moved = await grpc_stub.GetBalance(pb.GetBalanceRequest(account_id="new_owner"))
        kept = await grpc_stub.GetBalance(pb.GetBalanceRequest(account_id="old_owner"))
    assert moved.buckets[0].available.money == eur(4, 900_000_000)
    assert kept.buckets[0].available.money == eur(5)
