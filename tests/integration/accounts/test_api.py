"""The accounts API end to end through gRPC: resources, lists, lifecycle, idempotency."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.type import money_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reckon.accounts.v1 import accounts_pb2 as pb
from reckon.accounts.v1 import accounts_pb2_grpc
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from tests.integration.accounts.conftest import Accounts

MISSING_CUSTOMER = "cus_00000000000000000000000000"
MISSING_ACCOUNT = "acc_00000000000000000000000000"
MISSING_SUBSCRIPTION = "sub_00000000000000000000000000"


async def failure(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call  # type: ignore[misc]
    return failed.value


async def test_customer_is_created_and_read_back(accounts: Accounts) -> None:
    created = await accounts.customer(
        display_name="Grace Hopper",
        email="grace@navy.example",
        phone_number="+12025550123",
        language_code="en-US",
        reseller_id="acme",
        group_id="gov",
    )

    got = (
        await accounts.stub.GetCustomer(pb.GetCustomerRequest(customer_id=created.customer_id))
    ).customer

    assert got == created
    assert got.customer_id.startswith("cus_")
    assert len(got.referral_code) == 8
    assert (got.reseller_id, got.group_id, got.language_code) == ("acme", "gov", "en-US")
    assert got.create_time.seconds > 0


async def test_customers_page_through_filters(accounts: Accounts) -> None:
    acme = {
        (await accounts.customer(reseller_id="acme", group_id="smb")).customer_id for _ in range(5)
    }
    await accounts.customer(reseller_id="acme", group_id="corp")
    await accounts.customer(reseller_id="other", group_id="smb")

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await accounts.stub.ListCustomers(
            pb.ListCustomersRequest(
                page_size=2, page_token=token, reseller_id="acme", group_id="smb"
            )
        )
        seen += [c.customer_id for c in page.customers]
        pages += 1
        token = page.next_page_token
        if not token:
            break

    assert pages == 3
    assert sorted(seen) == sorted(acme)
    everyone = await accounts.stub.ListCustomers(pb.ListCustomersRequest())
    assert len(everyone.customers) == 7
    assert everyone.next_page_token == ""


async def test_account_is_created_with_exact_money_and_read_back(accounts: Accounts) -> None:
    customer = await accounts.customer()
    limit = money_pb2.Money(currency_code="EUR", units=12_345_678_901_234, nanos=123_456_789)

    created = await accounts.account(
        customer.customer_id,
        payment_mode=pb.PAYMENT_MODE_HYBRID,
        credit_limit=limit,
        bill_cycle_day=28,
        time_zone="America/New_York",
        tax_region="US-NY",
        payment_terms_days=30,
        display_name="Head office",
    )
    got = (
        await accounts.stub.GetAccount(pb.GetAccountRequest(account_id=created.account_id))
    ).account

    assert got == created
    assert got.credit_limit == limit  # no float anywhere on the way
    assert got.state == pb.ACCOUNT_STATE_ACTIVE
    assert (got.bill_cycle_day, got.time_zone, got.tax_region) == (28, "America/New_York", "US-NY")


async def test_accounts_list_by_customer_state_reseller_and_group(accounts: Accounts) -> None:
    acme = await accounts.customer(reseller_id="acme", group_id="smb")
    other = await accounts.customer(reseller_id="other", group_id="smb")
    a1 = await accounts.account(acme.customer_id)
    a2 = await accounts.account(acme.customer_id)
    b1 = await accounts.account(other.customer_id)
    await accounts.stub.SuspendAccount(
        pb.SuspendAccountRequest(account_id=a2.account_id, reason="overdue")
    )

    async def ids(**filters: Any) -> set[str]:
        found: set[str] = set()
        token = ""
        while True:
            page = await accounts.stub.ListAccounts(
                pb.ListAccountsRequest(page_size=1, page_token=token, **filters)
            )
            found |= {a.account_id for a in page.accounts}
            token = page.next_page_token
            if not token:
                return found

    assert await ids(customer_id=acme.customer_id) == {a1.account_id, a2.account_id}
    assert await ids(state=pb.ACCOUNT_STATE_SUSPENDED) == {a2.account_id}
    assert await ids(reseller_id="acme") == {a1.account_id, a2.account_id}
    assert await ids(group_id="smb") == {a1.account_id, a2.account_id, b1.account_id}
    assert await ids(reseller_id="acme", state=pb.ACCOUNT_STATE_ACTIVE) == {a1.account_id}


async def test_update_account_changes_masked_fields(accounts: Accounts) -> None:
    account = await accounts.account(payment_mode=pb.PAYMENT_MODE_PREPAID)
    accounts.clock.advance(timedelta(minutes=1))

    reply = await accounts.stub.UpdateAccount(
        pb.UpdateAccountRequest(
            account=pb.Account(
                account_id=account.account_id,
                payment_mode=pb.PAYMENT_MODE_POSTPAID,
                credit_limit=money_pb2.Money(currency_code="EUR", units=250),
                bill_cycle_day=12,
            ),
            update_mask=field_mask_pb2.FieldMask(
                paths=["payment_mode", "credit_limit", "bill_cycle_day"]
            ),
        )
    )

    updated = reply.account
    assert updated.payment_mode == pb.PAYMENT_MODE_POSTPAID
    assert updated.credit_limit.units == 250
    assert updated.bill_cycle_day == 12
    assert updated.currency_code == "EUR"
    assert updated.update_time.ToDatetime() - account.update_time.ToDatetime() == timedelta(
        minutes=1
    )


async def test_lifecycle_and_history_through_the_api(accounts: Accounts) -> None:
    account = await accounts.account()
    stub = accounts.stub
    await stub.SuspendAccount(
        pb.SuspendAccountRequest(account_id=account.account_id, reason="overdue")
    )
    await stub.RestoreAccount(
        pb.RestoreAccountRequest(account_id=account.account_id, reason="paid")
    )
    await stub.BarAccount(pb.BarAccountRequest(account_id=account.account_id, reason="fraud"))
    closed = (
        await stub.CloseAccount(pb.CloseAccountRequest(account_id=account.account_id, reason="end"))
    ).account
    assert (closed.state, closed.state_reason) == (pb.ACCOUNT_STATE_CLOSED, "end")

    first = await stub.ListAccountStateHistory(
        pb.ListAccountStateHistoryRequest(account_id=account.account_id, page_size=3)
    )
    rest = await stub.ListAccountStateHistory(
        pb.ListAccountStateHistoryRequest(
            account_id=account.account_id, page_size=3, page_token=first.next_page_token
        )
    )
    history = [*first.state_changes, *rest.state_changes]
    assert [(c.from_state, c.to_state, c.reason) for c in history] == [
        (pb.ACCOUNT_STATE_ACTIVE, pb.ACCOUNT_STATE_SUSPENDED, "overdue"),
        (pb.ACCOUNT_STATE_SUSPENDED, pb.ACCOUNT_STATE_ACTIVE, "paid"),
        (pb.ACCOUNT_STATE_ACTIVE, pb.ACCOUNT_STATE_BARRED, "fraud"),
        (pb.ACCOUNT_STATE_BARRED, pb.ACCOUNT_STATE_CLOSED, "end"),
    ]
    assert rest.next_page_token == ""


async def test_restoring_a_closed_account_is_a_failed_precondition(accounts: Accounts) -> None:
    account = await accounts.account()
    await accounts.stub.CloseAccount(
        pb.CloseAccountRequest(account_id=account.account_id, reason="customer left")
    )
    before = accounts.row_counts()

    error = await failure(
        accounts.stub.RestoreAccount(
            pb.RestoreAccountRequest(account_id=account.account_id, reason="changed their mind")
        )
    )

    details = details_of(error)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.reason == "INVALID_STATE_TRANSITION"
    assert details.domain == "reckon.accounts"
    assert details.metadata["from_state"] == "CLOSED"
    assert details.metadata["to_state"] == "ACTIVE"
    assert "CLOSED" in details.message
    assert accounts.row_counts() == before


async def test_closing_an_account_cancels_its_subscriptions(accounts: Accounts) -> None:
    account = await accounts.account()
    subs = [await accounts.subscription(account.account_id, plan) for plan in ("basic", "tv")]
    await accounts.stub.CloseAccount(
        pb.CloseAccountRequest(account_id=account.account_id, reason="x")
    )

    listed = await accounts.stub.ListSubscriptions(
        pb.ListSubscriptionsRequest(account_id=account.account_id)
    )
    assert {s.subscription_id for s in listed.subscriptions} == {s.subscription_id for s in subs}
    assert all(s.state == pb.SUBSCRIPTION_STATE_CANCELLED for s in listed.subscriptions)
    error = await failure(accounts.subscription(account.account_id))
    assert details_of(error).reason == "ACCOUNT_NOT_ACTIVE"


async def test_subscription_lifecycle_through_the_api(accounts: Accounts) -> None:
    account = await accounts.account(bill_cycle_day=5)
    sub = await accounts.subscription(account.account_id, "basic")
    assert sub.current_period_start_time.seconds < sub.start_time.seconds + 1
    assert sub.current_period_end_time.seconds > sub.start_time.seconds
    stub = accounts.stub
    sid = sub.subscription_id

    added = (
        await stub.AddAddOn(
            pb.AddAddOnRequest(subscription_id=sid, add_on_code="roaming", quantity=2)
        )
    ).subscription
    assert [(a.add_on_code, a.quantity) for a in added.add_ons] == [("roaming", 2)]
    scheduled = (
        await stub.ChangePlan(
            pb.ChangePlanRequest(
                subscription_id=sid, plan_code="pro", timing=pb.CHANGE_TIMING_END_OF_CYCLE
            )
        )
    ).subscription
    assert scheduled.plan_code == "basic"
    assert scheduled.pending_plan_change.plan_code == "pro"
    assert scheduled.pending_plan_change.effective_time == sub.current_period_end_time
    removed = (
        await stub.RemoveAddOn(pb.RemoveAddOnRequest(subscription_id=sid, add_on_code="roaming"))
    ).subscription
    assert list(removed.add_ons) == []
    cancelled = (
        await stub.CancelSubscription(
            pb.CancelSubscriptionRequest(subscription_id=sid, timing=pb.CHANGE_TIMING_IMMEDIATE)
        )
    ).subscription
    assert cancelled.state == pb.SUBSCRIPTION_STATE_CANCELLED
    assert not cancelled.HasField("pending_plan_change")
    assert not cancelled.HasField("current_period_start_time")
    got = (await stub.GetSubscription(pb.GetSubscriptionRequest(subscription_id=sid))).subscription
    assert got == cancelled

    only_active = await stub.ListSubscriptions(
        pb.ListSubscriptionsRequest(
            account_id=account.account_id, state=pb.SUBSCRIPTION_STATE_ACTIVE
        )
    )
    assert list(only_active.subscriptions) == []


@pytest.mark.parametrize(
    ("method", "request_factory", "reason"),
    [
        (
            "GetCustomer",
            lambda: pb.GetCustomerRequest(customer_id=MISSING_CUSTOMER),
            "CUSTOMER_NOT_FOUND",
        ),
        (
            "UpdateCustomer",
            lambda: pb.UpdateCustomerRequest(
                customer=pb.Customer(customer_id=MISSING_CUSTOMER, display_name="x")
            ),
            "CUSTOMER_NOT_FOUND",
        ),
        (
            "CreateAccount",
            lambda: pb.CreateAccountRequest(
                account=pb.Account(
                    customer_id=MISSING_CUSTOMER,
                    currency_code="EUR",
                    time_zone="UTC",
                    bill_cycle_day=1,
                    payment_mode=pb.PAYMENT_MODE_PREPAID,
                )
            ),
            "CUSTOMER_NOT_FOUND",
        ),
        (
            "GetAccount",
            lambda: pb.GetAccountRequest(account_id=MISSING_ACCOUNT),
            "ACCOUNT_NOT_FOUND",
        ),
        (
            "UpdateAccount",
            lambda: pb.UpdateAccountRequest(
                account=pb.Account(account_id=MISSING_ACCOUNT, display_name="x")
            ),
            "ACCOUNT_NOT_FOUND",
        ),
        (
            "SuspendAccount",
            lambda: pb.SuspendAccountRequest(account_id=MISSING_ACCOUNT, reason="x"),
            "ACCOUNT_NOT_FOUND",
        ),
        (
            "BarAccount",
            lambda: pb.BarAccountRequest(account_id=MISSING_ACCOUNT, reason="x"),
            "ACCOUNT_NOT_FOUND",
        ),
        (
            "RestoreAccount",
            lambda: pb.RestoreAccountRequest(account_id=MISSING_ACCOUNT, reason="x"),
            "ACCOUNT_NOT_FOUND",
        ),
        (
            "CloseAccount",
            lambda: pb.CloseAccountRequest(account_id=MISSING_ACCOUNT, reason="x"),
            "ACCOUNT_NOT_FOUND",
        ),
        (
            "ListAccountStateHistory",
            lambda: pb.ListAccountStateHistoryRequest(account_id=MISSING_ACCOUNT),
            "ACCOUNT_NOT_FOUND",
        ),
        (
            "CreateSubscription",
            lambda: pb.CreateSubscriptionRequest(
                subscription=pb.Subscription(account_id=MISSING_ACCOUNT, plan_code="basic")
            ),
            "ACCOUNT_NOT_FOUND",
        ),
        (
            "GetSubscription",
            lambda: pb.GetSubscriptionRequest(subscription_id=MISSING_SUBSCRIPTION),
            "SUBSCRIPTION_NOT_FOUND",
        ),
        (
            "ChangePlan",
            lambda: pb.ChangePlanRequest(
                subscription_id=MISSING_SUBSCRIPTION,
                plan_code="pro",
                timing=pb.CHANGE_TIMING_IMMEDIATE,
            ),
            "SUBSCRIPTION_NOT_FOUND",
        ),
        (
            "AddAddOn",
            lambda: pb.AddAddOnRequest(subscription_id=MISSING_SUBSCRIPTION, add_on_code="tv"),
            "SUBSCRIPTION_NOT_FOUND",
        ),
        (
            "RemoveAddOn",
            lambda: pb.RemoveAddOnRequest(subscription_id=MISSING_SUBSCRIPTION, add_on_code="tv"),
            "SUBSCRIPTION_NOT_FOUND",
        ),
        (
            "CancelSubscription",
            lambda: pb.CancelSubscriptionRequest(
                subscription_id=MISSING_SUBSCRIPTION, timing=pb.CHANGE_TIMING_IMMEDIATE
            ),
            "SUBSCRIPTION_NOT_FOUND",
        ),
    ],
)
async def test_unknown_ids_are_not_found(
    accounts: Accounts, method: str, request_factory: object, reason: str
) -> None:
    before = accounts.row_counts()
    error = await failure(getattr(accounts.stub, method)(request_factory()))  # type: ignore[operator]
    details = details_of(error)
    assert details.code == grpc.StatusCode.NOT_FOUND
    assert details.reason == reason
    assert accounts.row_counts() == before


async def test_a_parent_of_another_customer_is_refused(accounts: Accounts) -> None:
    foreign = await accounts.account()
    error = await failure(accounts.account(parent_account_id=foreign.account_id))
    details = details_of(error)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.fields == {"account.parent_account_id"}


@pytest.mark.parametrize("token", [None, "not-the-service-token"])
async def test_calls_without_the_service_token_are_unauthenticated(
    accounts: Accounts, token: str | None
) -> None:
    async with open_channel(accounts.address, token, traced=False) as channel:
        stub = accounts_pb2_grpc.AccountsServiceStub(channel)
        error = await failure(
            stub.CreateCustomer(
                pb.CreateCustomerRequest(
                    customer=pb.Customer(display_name="X", email="x@y.example")
                )
            )
        )
    assert details_of(error).code == grpc.StatusCode.UNAUTHENTICATED
    assert accounts.row_counts()["customers"] == 0


async def test_health_reports_the_accounts_service(accounts: Accounts) -> None:
    async with grpc.aio.insecure_channel(accounts.address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="reckon.accounts.v1.AccountsService")
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_create_retried_three_times_makes_one_customer(accounts: Accounts) -> None:
    request = pb.CreateCustomerRequest(
        customer=pb.Customer(display_name="Retry Robin", email="robin@example.com"),
        request_id="6f1c2d9e-0000-4000-8000-000000000001",
    )
    answers = [await accounts.stub.CreateCustomer(request) for _ in range(3)]

    assert len({a.customer.customer_id for a in answers}) == 1
    assert accounts.row_counts()["customers"] == 1

    reused = pb.CreateCustomerRequest(
        customer=pb.Customer(display_name="Someone Else", email="else@example.com"),
        request_id=request.request_id,
    )
    error = await failure(accounts.stub.CreateCustomer(reused))
    details = details_of(error)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.fields == {"request_id"}
    assert accounts.row_counts()["customers"] == 1


async def test_concurrent_retries_of_one_create_make_one_customer(accounts: Accounts) -> None:
    request = pb.CreateCustomerRequest(
        customer=pb.Customer(display_name="Eager Eve", email="eve@example.com"),
        request_id="concurrent-retry-1",
    )

    codes: list[grpc.StatusCode] = []

    async def create_until_answered() -> str:
        for _ in range(5):
            try:
                reply = await accounts.stub.CreateCustomer(request)
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())  # the loser of the race retries
                continue
            return str(reply.customer.customer_id)
        raise AssertionError("never answered")

    ids = await asyncio.gather(*(create_until_answered() for _ in range(4)))

    assert len(set(ids)) == 1
    assert set(codes) <= {grpc.StatusCode.ABORTED}
    assert accounts.row_counts()["customers"] == 1


async def test_a_repeated_state_change_changes_nothing(accounts: Accounts) -> None:
    account = await accounts.account()
    request = pb.SuspendAccountRequest(
        account_id=account.account_id, reason="overdue", request_id="suspend-once"
    )
    first = await accounts.stub.SuspendAccount(request)
    second = await accounts.stub.SuspendAccount(request)
    assert first == second
    assert accounts.row_counts()["account_state_changes"] == 1
