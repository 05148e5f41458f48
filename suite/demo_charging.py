"""The charging part of ``reckon demo`` (issue 4): a prepaid account, a top-up, a call
authorised while it runs and cut by the final-unit indication, the ledger."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table

from reckon.accounts.v1 import accounts_pb2
from reckon.charging.v1 import charging_pb2
from reckon.rating.v1 import rating_pb2
from services.common.grpc_errors import details_of
from services.common.money import Money
from services.common.proto_convert import (
    money_to_proto,
    timestamp_from_proto,
    timestamp_to_proto,
)
from suite.demo_rating import _duration, money_text
from suite.demo_story import (
    CALL_TIMEOUT_SECONDS,
    PLAN_CODE,
    Story,
    StoryError,
    request_id,
    suite_now,
)

# --- the story: charging (issue 4) -------------------------------------------------------

# The demo's voice rating group and the landline it calls (conference-pro's NL fixed rate).
VOICE_RATING_GROUP = 100
CALL_DESTINATION = "+31 20 555 0101"
# The prepaid account's zone and tax region: they choose the time band and the VAT.
CALL_TIME_ZONE = "Europe/Amsterdam"
CALL_TAX_REGION = "NL"
CALL_TOP_UP = Money.of("1.00", "EUR")
# Seconds asked for at every Initial/Update: four minutes. 1.00 EUR buys 7 minutes
# at peak, 15 off-peak and 26 at the weekend (VAT included), none a whole number of
# grants, so in every band the credit runs out inside a grant: charging asks rating
# what the rest buys (UnitsForAmount) and that shorter grant carries the final-unit
# indication. (A call that crosses a band boundary may use the credit up exactly at
# a grant's end instead; that grant then carries the indication.) A test pins these
# figures to the sample catalog. Charging prices the session as one call: the
# connection fee is in the first Update's debit only. The story gives up after
# CALL_MAX_UPDATES.
CALL_QUOTA_SECONDS = 240
CALL_MAX_UPDATES = 20
# Charging learns accounts from accounts' events; this is how long the story waits for it.
CHARGING_VIEW_WAIT_SECONDS = 15.0


async def _await_known(what: str, ask: Callable[[], Awaitable[Any]], reasons: set[str]) -> Any:
    """Ask until a service that learns from events answers; ``StoryError`` after a while."""
    started = time.monotonic()
    while True:
        try:
            return await ask()
        except grpc.aio.AioRpcError as error:
            details = details_of(error)
            if details.reason not in reasons and details.code != grpc.StatusCode.NOT_FOUND:
                raise
            if time.monotonic() - started > CHARGING_VIEW_WAIT_SECONDS:
                raise StoryError(
                    f"{what} within {CHARGING_VIEW_WAIT_SECONDS:.0f}s "
                    f"({details.reason}: {details.message})"
                ) from None
            await asyncio.sleep(0.2)


async def open_prepaid_account(story: Story) -> RenderableType:
    customer = story.fact("customer")
    reply = await story.accounts.CreateAccount(
        accounts_pb2.CreateAccountRequest(
            account=accounts_pb2.Account(
                customer_id=customer.customer_id,
                display_name="Prepaid calls",
                currency_code="EUR",
                time_zone=CALL_TIME_ZONE,
                bill_cycle_day=1,
                tax_region=CALL_TAX_REGION,
                payment_mode=accounts_pb2.PAYMENT_MODE_PREPAID,
            ),
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    account = reply.account
    story.facts["prepaid_account"] = account
    subscribed = await story.accounts.CreateSubscription(
        accounts_pb2.CreateSubscriptionRequest(
            subscription=accounts_pb2.Subscription(
                account_id=account.account_id, plan_code=PLAN_CODE
            ),
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    story.facts["prepaid_subscription"] = subscribed.subscription
    return f"{account.account_id}: prepaid, EUR, on {PLAN_CODE}"


async def charging_knows_account(story: Story) -> RenderableType:
    """Charging's policy comes from ``AccountCreated``; rating's plan from the subscription."""
    account = story.fact("prepaid_account")
    subscription = story.fact("prepaid_subscription")
    started = time.monotonic()
    policy = await _await_known(
        f"charging did not learn account {account.account_id}",
        lambda: story.charging.GetAccountPolicy(
            charging_pb2.GetAccountPolicyRequest(account_id=account.account_id),
            timeout=CALL_TIMEOUT_SECONDS,
        ),
        {"UNKNOWN_ACCOUNT", "ACCOUNT_NOT_FOUND"},
    )
    since = timestamp_from_proto(subscription.start_time) + timedelta(milliseconds=1)
    await _await_known(
        f"rating did not learn account {account.account_id} and its plan",
        lambda: story.rating.Quote(
            rating_pb2.QuoteRequest(
                account_id=account.account_id,
                service="voice",
                destination=CALL_DESTINATION,
                event_time=timestamp_to_proto(max(since, suite_now(story))),
                quantity=rating_pb2.Quantity(value=60, unit=rating_pb2.QUANTITY_UNIT_SECOND),
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        ),
        {"UNKNOWN_ACCOUNT", "NO_PLAN"},
    )
    waited = (time.monotonic() - started) * 1000
    # Voice is a rated (money-priced) service in seconds: charging asks rating its price.
    await story.charging.DefineService(
        charging_pb2.DefineServiceRequest(
            service=charging_pb2.ServiceDefinition(
                rating_group=VOICE_RATING_GROUP,
                service="voice",
                unit_kind=charging_pb2.UNIT_KIND_TIME,
                charging=charging_pb2.SERVICE_CHARGING_RATED,
            ),
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    mode = charging_pb2.BillingMode.Name(policy.policy.billing_mode).removeprefix("BILLING_MODE_")
    return (
        f"charging: {account.account_id} {mode} {policy.policy.currency_code}, and rating its "
        f"plan, after {waited:.0f} ms; rating group {VOICE_RATING_GROUP} = voice (seconds, "
        "priced by rating)"
    )


async def top_up(story: Story) -> RenderableType:
    account = story.fact("prepaid_account")
    reply = await story.charging.TopUp(
        charging_pb2.TopUpRequest(
            account_id=account.account_id,
            amount=charging_pb2.Quantity(money=money_to_proto(CALL_TOP_UP)),
            reference="demo top-up",
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return (
        f"{CALL_TOP_UP.amount} EUR into {reply.entry.bucket_id}: available "
        f"{_quantity_text(reply.balance.available)}"
    )


def _quantity_text(quantity: Any) -> str:
    kind = quantity.WhichOneof("value")
    if kind == "money":
        return f"{money_text(quantity.money)} {quantity.money.currency_code}"
    if kind == "time_seconds":
        return f"{quantity.time_seconds} s"
    if kind is None:
        return "-"
    return f"{getattr(quantity, kind)} {quantity.unit_name or kind}"


def _group(
    requested: int | None = None, used: int | None = None
) -> charging_pb2.MultipleServicesCreditControl:
    group = charging_pb2.MultipleServicesCreditControl(
        rating_group=VOICE_RATING_GROUP, destination=CALL_DESTINATION
    )
    if requested is not None:
        group.requested_units.time_seconds = requested
    if used is not None:
        group.used_units.time_seconds = used
    return group


async def prepaid_call(story: Story) -> RenderableType:
    """Initial, Updates until the final-unit indication, Terminate: one row each."""
    account = story.fact("prepaid_account")
    session_id = f"demo-call-{uuid.uuid4().hex[:12]}"
    story.facts["call_session"] = session_id
    table = Table(title=f"call {session_id} to {CALL_DESTINATION}", title_justify="left")
    for column in ("#", "request", "used", "granted", "cost", "result", "final unit"):
        table.add_column(column, justify="right" if column in ("#", "used", "cost") else "left")

    charged = Decimal(0)
    started = suite_now(story)

    async def send(kind: charging_pb2.RequestType.ValueType, number: int, group: Any) -> Any:
        nonlocal charged
        reply = await story.charging.CreditControl(
            charging_pb2.CreditControlRequest(
                session_id=session_id,
                request_type=kind,
                request_number=number,
                account_id=account.account_id,
                multiple_services=[group],
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        answer = reply.multiple_services[0] if reply.multiple_services else None
        if answer is not None and answer.cost.currency_code:
            charged += Decimal(money_text(answer.cost))
        result = charging_pb2.ResultCode.Name(reply.result_code).removeprefix("RESULT_CODE_")
        fui = "-"
        if answer is not None and answer.HasField("final_unit_indication"):
            action = answer.final_unit_indication.action
            fui = charging_pb2.FinalUnitAction.Name(action).removeprefix("FINAL_UNIT_ACTION_")
        table.add_row(
            str(number),
            charging_pb2.RequestType.Name(kind).removeprefix("REQUEST_TYPE_"),
            f"{group.used_units.time_seconds} s" if group.HasField("used_units") else "-",
            _quantity_text(answer.granted_units) if answer is not None else "-",
            f"{money_text(answer.cost)} {answer.cost.currency_code}"
            if answer is not None and answer.cost.currency_code
            else "-",
            f"{result} ({reply.diameter_result_code})",
            fui,
        )
        return reply, answer

    reply, answer = await send(charging_pb2.REQUEST_TYPE_INITIAL, 0, _group(CALL_QUOTA_SECONDS))
    if reply.result_code != charging_pb2.RESULT_CODE_SUCCESS or answer is None:
        raise StoryError(f"the call was not authorised: {reply}")
    number, seconds = 0, 0
    while not answer.HasField("final_unit_indication"):
        if number >= CALL_MAX_UPDATES:
            raise StoryError(f"no final-unit indication after {number} updates")
        number += 1
        used = answer.granted_units.time_seconds
        seconds += used
        reply, answer = await send(
            charging_pb2.REQUEST_TYPE_UPDATE, number, _group(CALL_QUOTA_SECONDS, used)
        )
        if answer is None or not answer.granted_units.time_seconds:
            break
    # The network cuts the call when the last grant is used up, and reports it.
    cut = answer is not None and answer.HasField("final_unit_indication")
    last = answer.granted_units.time_seconds if answer is not None else 0
    await send(charging_pb2.REQUEST_TYPE_TERMINATE, number + 1, _group(used=last))
    seconds += last
    whole = await _whole_call_price(story, account.account_id, seconds, started)
    priced = (
        f"    charged {charged:f} EUR in {number + 1} reports; rating's price of the whole "
        f"{seconds} s call (connection fee once): {whole}"
    )
    if not cut:
        return Group(
            table, f"    call ended after {seconds} s: the credit left bought nothing", priced
        )
    action = charging_pb2.FinalUnitAction.Name(answer.final_unit_indication.action)
    last_grant = (
        f"the last grant, {last} s of the {CALL_QUOTA_SECONDS} s asked, "
        "is what the credit left bought"
        if last < CALL_QUOTA_SECONDS
        else "the last grant used the credit up exactly"
    )
    return Group(
        table,
        f"    call cut by the final-unit indication "
        f"({action.removeprefix('FINAL_UNIT_ACTION_')}) after {_duration(seconds)}; {last_grant}",
        priced,
    )


async def _whole_call_price(story: Story, account_id: str, seconds: int, at: datetime) -> str:
    """Rating's quote for the call as one call, to set beside what charging debited."""
    if seconds <= 0:
        return "0.00 EUR"
    reply = await story.rating.Quote(
        rating_pb2.QuoteRequest(
            account_id=account_id,
            service="voice",
            destination=CALL_DESTINATION,
            event_time=timestamp_to_proto(at),
            quantity=rating_pb2.Quantity(value=seconds, unit=rating_pb2.QUANTITY_UNIT_SECOND),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    gross = reply.charge.gross
    return f"{money_text(gross)} {gross.currency_code}"


async def call_ledger(story: Story) -> RenderableType:
    account = story.fact("prepaid_account")
    reply = await story.charging.ListLedgerEntries(
        charging_pb2.ListLedgerEntriesRequest(account_id=account.account_id, page_size=100),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    balance = await story.charging.GetBalance(
        charging_pb2.GetBalanceRequest(account_id=account.account_id),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    left = ", ".join(
        f"{b.bucket.bucket_id} {_quantity_text(b.available)} available, "
        f"{_quantity_text(b.reserved)} reserved"
        for b in balance.buckets
    )
    table = Table(title=f"ledger of {account.account_id}: {left}", title_justify="left")
    for column in ("entry", "kind", "direction", "amount", "session / request", "reference"):
        table.add_column(column, justify="right" if column == "amount" else "left")
    for entry in sorted(reply.entries, key=lambda e: (e.create_time.ToNanoseconds(), e.entry_id)):
        direction = charging_pb2.EntryDirection.Name(entry.direction).removeprefix(
            "ENTRY_DIRECTION_"
        )
        table.add_row(
            entry.entry_id,
            charging_pb2.EntryKind.Name(entry.kind).removeprefix("ENTRY_KIND_"),
            f"[green]{direction}[/]" if direction == "CREDIT" else f"[yellow]{direction}[/]",
            _quantity_text(entry.amount),
            f"{entry.session_id} #{entry.request_number}" if entry.session_id else "-",
            escape(entry.reference or entry.reason or "-"),
        )
    return table
