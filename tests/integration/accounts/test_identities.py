"""Backdated subscriptions, external references and service identifiers (issue 9 item 12).

A migration from another system brings subscriptions that started in the past,
customers and accounts known by the operator's own numbers, and switches whose
CDRs carry phone numbers, SIP URIs, PINs and account codes rather than Reckon ids.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2

from reckon.accounts.v1 import accounts_pb2 as pb
from services.common.grpc_errors import details_of
from tests.integration.accounts.conftest import Accounts


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(moment)
    return value


async def test_external_references_name_customers_and_accounts_wherever_an_id_is(
    accounts: Accounts,
) -> None:
    customer = await accounts.customer(external_ref="CRM-0042")
    assert customer.external_ref == "CRM-0042"
    # An account for the customer named by its reference.
    account = await accounts.account("ext:CRM-0042", external_ref="ACC-7")
    assert (account.customer_id, account.external_ref) == (customer.customer_id, "ACC-7")
    got = await accounts.stub.GetAccount(pb.GetAccountRequest(account_id="ext:ACC-7"))
    assert got.account.account_id == account.account_id
    by_ref = await accounts.stub.GetCustomer(pb.GetCustomerRequest(customer_id="ext:CRM-0042"))
    assert by_ref.customer.customer_id == customer.customer_id
    sub = await accounts.subscription("ext:ACC-7")
    assert sub.account_id == account.account_id
    listed = await accounts.stub.ListAccounts(pb.ListAccountsRequest(customer_id="ext:CRM-0042"))
    assert [a.account_id for a in listed.accounts] == [account.account_id]
    subs = await accounts.stub.ListSubscriptions(
        pb.ListSubscriptionsRequest(account_id="ext:ACC-7")
    )
    assert [s.subscription_id for s in subs.subscriptions] == [sub.subscription_id]
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await accounts.customer(external_ref="CRM-0042", email="other@example.com")
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert details_of(taken.value).reason == "EXTERNAL_REF_TAKEN"
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await accounts.customer(external_ref="has space")
    assert "customer.external_ref" in details_of(bad.value).fields
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await accounts.stub.GetAccount(pb.GetAccountRequest(account_id="ext:NOPE"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    events = await accounts.wait_for_events(3)  # customer, account, subscription
    created = next(e.payload for e in events if e.event_type == "AccountCreated")
    assert (created["external_ref"], created["customer_external_ref"]) == ("ACC-7", "CRM-0042")


async def test_a_subscription_may_start_in_the_past_never_in_the_future(
    accounts: Accounts,
) -> None:
    account = await accounts.account()
    started = datetime(2025, 11, 3, 8, 30, tzinfo=UTC)
    reply = await accounts.stub.CreateSubscription(
        pb.CreateSubscriptionRequest(
            subscription=pb.Subscription(
                account_id=account.account_id, plan_code="basic", start_time=stamp(started)
            )
        )
    )
    assert reply.subscription.start_time.ToDatetime(tzinfo=UTC) == started
    events = await accounts.wait_for_events(3)
    created = next(e.payload for e in events if e.event_type == "SubscriptionChanged")
    assert created["effective_time"].startswith("2025-11-03T08:30:00")  # rating rates from it
    future = accounts.clock.now() + timedelta(days=1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await accounts.stub.CreateSubscription(
            pb.CreateSubscriptionRequest(
                subscription=pb.Subscription(
                    account_id=account.account_id, plan_code="basic", start_time=stamp(future)
                )
            )
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "subscription.start_time" in details_of(refused.value).fields


async def test_service_identifiers_are_normalised_unique_and_published(
    accounts: Accounts,
) -> None:
    account = await accounts.account()
    ids = [
        pb.ServiceIdentifier(kind=pb.SERVICE_IDENTIFIER_KIND_MSISDN, value="0031 6 1234 5678"),
        pb.ServiceIdentifier(kind=pb.SERVICE_IDENTIFIER_KIND_SIP_URI, value="sip:Ada@Example.COM"),
        pb.ServiceIdentifier(kind=pb.SERVICE_IDENTIFIER_KIND_CONFERENCE_PIN, value="482913"),
        pb.ServiceIdentifier(kind=pb.SERVICE_IDENTIFIER_KIND_ACCOUNT_CODE, value="BRIDGE-7"),
    ]
    reply = await accounts.stub.CreateSubscription(
        pb.CreateSubscriptionRequest(
            subscription=pb.Subscription(
                account_id=account.account_id, plan_code="basic", service_ids=ids
            )
        )
    )
    assert [(i.kind, i.value) for i in reply.subscription.service_ids] == [
        (pb.SERVICE_IDENTIFIER_KIND_MSISDN, "+31612345678"),
        (pb.SERVICE_IDENTIFIER_KIND_SIP_URI, "sip:ada@example.com"),
        (pb.SERVICE_IDENTIFIER_KIND_CONFERENCE_PIN, "482913"),
        (pb.SERVICE_IDENTIFIER_KIND_ACCOUNT_CODE, "BRIDGE-7"),
    ]
    got = await accounts.stub.GetSubscription(
        pb.GetSubscriptionRequest(subscription_id=reply.subscription.subscription_id)
    )
    assert len(got.subscription.service_ids) == 4
    events = await accounts.wait_for_events(3)
    created = next(e.payload for e in events if e.event_type == "SubscriptionChanged")
    assert created["service_ids"] == [
        "msisdn:+31612345678",
        "sip:ada@example.com",
        "pin:482913",
        "code:BRIDGE-7",
    ]
    other = await accounts.account()
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await accounts.stub.CreateSubscription(
            pb.CreateSubscriptionRequest(
                subscription=pb.Subscription(
                    account_id=other.account_id,
                    plan_code="basic",
                    service_ids=[ids[0]],  # the same number, written differently
                )
            )
        )
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert details_of(taken.value).reason == "SERVICE_ID_TAKEN"
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await accounts.stub.CreateSubscription(
            pb.CreateSubscriptionRequest(
                subscription=pb.Subscription(
                    account_id=other.account_id,
                    plan_code="basic",
                    service_ids=[
                        pb.ServiceIdentifier(
                            kind=pb.SERVICE_IDENTIFIER_KIND_MSISDN, value="06 1234"
                        ),
                        pb.ServiceIdentifier(value="x"),
                    ],
                )
            )
        )
    assert details_of(bad.value).fields == {
        "subscription.service_ids[0].value",
        "subscription.service_ids[1].kind",
    }
