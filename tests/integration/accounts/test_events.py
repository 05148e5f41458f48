"""Events on reckon:events:accounts, the referral consumer and the due-change scheduler."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from reckon.accounts.v1 import accounts_pb2 as pb
from services.common.events import EventEnvelope
from tests.integration.accounts.conftest import STREAM, Accounts, wait_for


async def test_changes_publish_typed_events_in_order(accounts: Accounts) -> None:
    customer = await accounts.customer(reseller_id="acme", group_id="smb")
    account = await accounts.account(customer.customer_id, tax_region="NL")
    sub = await accounts.subscription(account.account_id, "basic")
    await accounts.stub.ChangePlan(
        pb.ChangePlanRequest(
            subscription_id=sub.subscription_id, plan_code="pro", timing=pb.CHANGE_TIMING_IMMEDIATE
        )
    )
    await accounts.stub.SuspendAccount(
        pb.SuspendAccountRequest(account_id=account.account_id, reason="overdue")
    )
    await accounts.stub.CloseAccount(
        pb.CloseAccountRequest(account_id=account.account_id, reason="end")
    )

    events = await accounts.wait_for_events(7)

    assert [(e.event_type, e.payload.get("kind", e.payload.get("to_state"))) for e in events] == [
        ("CustomerCreated", None),
        ("AccountCreated", None),
        ("SubscriptionChanged", "CREATED"),
        ("SubscriptionChanged", "PLAN_CHANGED"),
        ("AccountStateChanged", "SUSPENDED"),
        ("AccountStateChanged", "CLOSED"),
        ("SubscriptionChanged", "CANCELLED"),
    ]
    assert all(e.source == "accounts" for e in events)
    assert len({e.event_id for e in events}) == 7
    created = events[1].payload
    assert created["account_id"] == account.account_id
    assert (created["currency_code"], created["time_zone"], created["tax_region"]) == (
        "EUR",
        "Europe/Amsterdam",
        "NL",
    )
    assert (created["reseller_id"], created["group_id"]) == ("acme", "smb")
    changed = events[3].payload
    assert (changed["old_plan_code"], changed["new_plan_code"]) == ("basic", "pro")
    assert changed["period_start"] < changed["effective_time"] < changed["period_end"]
    suspended = events[4].payload
    assert (suspended["from_state"], suspended["reason"]) == ("ACTIVE", "overdue")
    assert events[4].aggregate_id == account.account_id


async def test_a_refused_call_publishes_nothing(accounts: Accounts) -> None:
    account = await accounts.account()
    await accounts.stub.CloseAccount(
        pb.CloseAccountRequest(account_id=account.account_id, reason="x")
    )
    events = await accounts.wait_for_events(3)
    with pytest.raises(grpc.aio.AioRpcError):
        await accounts.stub.SuspendAccount(
            pb.SuspendAccountRequest(account_id=account.account_id, reason="too late")
        )
    await accounts.service.app.relay.relay_once()
    assert len(await accounts.events()) == len(events)


async def credited(accounts: Accounts, customer_id: str, count: int) -> bool:
    reply = await accounts.stub.GetCustomer(pb.GetCustomerRequest(customer_id=customer_id))
    return bool(reply.customer.referrals_count == count)


async def test_the_referral_consumer_credits_once_even_when_delivered_twice(
    accounts: Accounts,
) -> None:
    referrer = await accounts.customer(display_name="Referrer")
    referred = await accounts.customer(display_name="Friend", referred_by=referrer.referral_code)
    assert referred.referred_by == referrer.referral_code

    await wait_for(lambda: credited(accounts, referrer.customer_id, 1), 10, "the referral credit")

    # Deliver the same CustomerCreated again, as a relay that died before marking it
    # relayed would.
    created = next(
        e
        for e in await accounts.events()
        if e.event_type == "CustomerCreated" and e.aggregate_id == referred.customer_id
    )
    duplicate_id = await accounts.redis.xadd(STREAM, {"envelope": created.to_json()})

    async def duplicate_handled() -> bool:
        groups = await accounts.redis.xinfo_groups(STREAM)
        group = next(
            g for g in groups if g["name"] in (b"accounts-referrals", "accounts-referrals")
        )
        last = group["last-delivered-id"]
        return bool(last == duplicate_id and group["pending"] == 0)

    await wait_for(duplicate_handled, 10, "the duplicate to be consumed")
    assert await credited(accounts, referrer.customer_id, 1)


async def test_the_scheduler_applies_due_plan_changes_with_the_injected_clock(
    accounts: Accounts,
) -> None:
    account = await accounts.account(bill_cycle_day=1)
    sub = await accounts.subscription(account.account_id, "basic")
    scheduled = (
        await accounts.stub.ChangePlan(
            pb.ChangePlanRequest(
                subscription_id=sub.subscription_id,
                plan_code="pro",
                timing=pb.CHANGE_TIMING_END_OF_CYCLE,
            )
        )
    ).subscription
    boundary = scheduled.pending_plan_change.effective_time.ToDatetime().replace(
        tzinfo=accounts.clock.now().tzinfo
    )
    assert await accounts.service.app.scheduler.run_once() == 0

    accounts.clock.set(boundary + timedelta(hours=5))
    # The service's own scheduler wakes when the clock moves (ADR 0037) and may apply the
    # change before this pass does: between them it is applied exactly once.
    assert await accounts.service.app.scheduler.run_once() in (0, 1)
    events = await accounts.wait_for_events(5)
    assert await accounts.service.app.scheduler.run_once() == 0
    changes = [e for e in events if e.payload.get("kind") == "PLAN_CHANGED"]
    assert len(changes) == 1
    applied = events[-1]
    assert applied.event_type == "SubscriptionChanged"
    assert applied.payload["kind"] == "PLAN_CHANGED"
    assert applied.payload["effective_time"] == boundary.isoformat()
    current = (
        await accounts.stub.GetSubscription(
            pb.GetSubscriptionRequest(subscription_id=sub.subscription_id)
        )
    ).subscription
    assert current.plan_code == "pro"
    assert not current.HasField("pending_plan_change")
    assert current.current_period_start_time == scheduled.pending_plan_change.effective_time


async def test_a_read_applies_a_due_cancellation(accounts: Accounts) -> None:
    account = await accounts.account(bill_cycle_day=15)
    sub = await accounts.subscription(account.account_id)
    scheduled = (
        await accounts.stub.CancelSubscription(
            pb.CancelSubscriptionRequest(
                subscription_id=sub.subscription_id, timing=pb.CHANGE_TIMING_END_OF_CYCLE
            )
        )
    ).subscription
    assert scheduled.cancel_at_period_end
    accounts.clock.advance(timedelta(days=32))

    listed = await accounts.stub.ListSubscriptions(
        pb.ListSubscriptionsRequest(account_id=account.account_id)
    )

    [ended] = listed.subscriptions
    assert ended.state == pb.SUBSCRIPTION_STATE_CANCELLED
    assert ended.cancel_time == scheduled.cancel_time
    events: list[EventEnvelope] = await accounts.wait_for_events(5)
    assert [e.payload["kind"] for e in events[2:]] == ["CREATED", "CANCEL_SCHEDULED", "CANCELLED"]
