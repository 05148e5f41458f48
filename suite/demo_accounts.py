"""The accounts part of ``reckon demo`` (issue 2): customers, a referral, an account's
states and what a suspended account is refused."""

from __future__ import annotations

import asyncio
import time

import grpc
from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from reckon.accounts.v1 import accounts_pb2
from services.common.money import Money
from services.common.proto_convert import (
    money_to_proto,
    timestamp_from_proto,
)
from suite.demo_story import (
    CALL_TIMEOUT_SECONDS,
    PLAN_CODE,
    TRACE_WAIT_SECONDS,
    Story,
    account_state,
    refusal,
    request_id,
)

# --- the story: accounts (issue 2) -------------------------------------------------------


async def create_referrer(story: Story) -> RenderableType:
    reply = await story.accounts.CreateCustomer(
        accounts_pb2.CreateCustomerRequest(
            customer=accounts_pb2.Customer(
                display_name="Lovelace Conferencing BV",
                email="billing@lovelace.example",
                phone_number="+31201234567",
                language_code="nl-NL",
                group_id="smb",
            ),
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    story.facts["referrer"] = reply.customer
    return f"{reply.customer.customer_id}, referral code [bold]{reply.customer.referral_code}[/]"


async def create_customer(story: Story) -> RenderableType:
    referrer = story.fact("referrer")
    reply = await story.accounts.CreateCustomer(
        accounts_pb2.CreateCustomerRequest(
            customer=accounts_pb2.Customer(
                display_name="Babbage Analytics Ltd",
                email="accounts@babbage.example",
                phone_number="+442071234567",
                language_code="en-GB",
                group_id="smb",
                referred_by=referrer.referral_code,
            ),
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    story.facts["customer"] = reply.customer
    return f"{reply.customer.customer_id}, referred by {referrer.referral_code}"


async def open_account(story: Story) -> RenderableType:
    customer = story.fact("customer")
    credit_limit = Money.of("500.00", "EUR")
    reply = await story.accounts.CreateAccount(
        accounts_pb2.CreateAccountRequest(
            account=accounts_pb2.Account(
                customer_id=customer.customer_id,
                display_name="Conference calls",
                currency_code="EUR",
                # The conference bridge is in the Netherlands: the sample catalog's time
                # bands are Dutch office hours and its one tax region is NL.
                time_zone="Europe/Amsterdam",
                bill_cycle_day=1,
                tax_region="NL",
                payment_terms_days=14,
                payment_mode=accounts_pb2.PAYMENT_MODE_POSTPAID,
                credit_limit=money_to_proto(credit_limit),
            ),
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    story.facts["account"] = reply.account
    return (
        f"{reply.account.account_id}: postpaid, EUR, credit limit {credit_limit.amount} EUR, "
        f"{accounts_pb2.AccountState.Name(reply.account.state)}"
    )


async def subscribe(story: Story) -> RenderableType:
    account = story.fact("account")
    reply = await story.accounts.CreateSubscription(
        accounts_pb2.CreateSubscriptionRequest(
            subscription=accounts_pb2.Subscription(
                account_id=account.account_id, plan_code=PLAN_CODE
            ),
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    story.facts["subscription"] = reply.subscription
    period = timestamp_from_proto(reply.subscription.current_period_end_time)
    return (
        f"{reply.subscription.subscription_id} on plan {PLAN_CODE}, "
        f"current cycle ends {period:%Y-%m-%d}"
    )


async def subscribe_to_unknown_plan(story: Story) -> RenderableType:
    account = story.fact("account")
    try:
        reply = await story.accounts.CreateSubscription(
            accounts_pb2.CreateSubscriptionRequest(
                subscription=accounts_pb2.Subscription(
                    account_id=account.account_id, plan_code="conference-platinum"
                ),
                request_id=request_id(),
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
            raise
        return f"[yellow]refused[/] as it should be: {refusal(error)}"
    return (
        f"[bold red]accepted[/] ({reply.subscription.subscription_id}): "
        "conference-platinum is not a plan of the catalog"
    )


async def suspend(story: Story) -> RenderableType:
    account = story.fact("account")
    reply = await story.accounts.SuspendAccount(
        accounts_pb2.SuspendAccountRequest(
            account_id=account.account_id,
            reason="invoice 30 days overdue",
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return account_state(reply.account)


async def subscribe_while_suspended(story: Story) -> RenderableType:
    account = story.fact("account")
    try:
        reply = await story.accounts.CreateSubscription(
            accounts_pb2.CreateSubscriptionRequest(
                subscription=accounts_pb2.Subscription(
                    account_id=account.account_id, plan_code=PLAN_CODE
                ),
                request_id=request_id(),
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
            raise
        return f"[yellow]refused[/] as it should be: {refusal(error)}"
    return (
        f"[bold red]accepted[/] ({reply.subscription.subscription_id}): "
        "a suspended account should not get new subscriptions"
    )


async def restore(story: Story) -> RenderableType:
    account = story.fact("account")
    reply = await story.accounts.RestoreAccount(
        accounts_pb2.RestoreAccountRequest(
            account_id=account.account_id,
            reason="overdue invoice paid",
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return account_state(reply.account)


async def state_history(story: Story) -> RenderableType:
    account = story.fact("account")
    reply = await story.accounts.ListAccountStateHistory(
        accounts_pb2.ListAccountStateHistoryRequest(account_id=account.account_id),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    table = Table(box=None, padding=(0, 2), show_edge=False)
    for column in ("when (UTC)", "from", "to", "reason"):
        table.add_column(column)
    for change in reply.state_changes:
        table.add_row(
            f"{timestamp_from_proto(change.change_time):%H:%M:%S.%f}"[:-3],
            accounts_pb2.AccountState.Name(change.from_state).removeprefix("ACCOUNT_STATE_"),
            accounts_pb2.AccountState.Name(change.to_state).removeprefix("ACCOUNT_STATE_"),
            change.reason,
        )
    return table


async def referral_credited(story: Story) -> RenderableType:
    """The referrer's count is raised by an event consumer, so it may take a moment."""
    referrer = story.fact("referrer")
    deadline = time.monotonic() + TRACE_WAIT_SECONDS
    while True:
        reply = await story.accounts.GetCustomer(
            accounts_pb2.GetCustomerRequest(customer_id=referrer.customer_id),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        count = reply.customer.referrals_count
        if count >= 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    outcome = f"{escape(referrer.display_name)} has referrals_count={count}"
    return outcome if count >= 1 else f"[bold red]{outcome}[/] (the consumer has not run)"
