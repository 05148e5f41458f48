"""``reckon demo``: the end-to-end story, played against a running suite as one trace.

The story is a list of ``StoryStep``s (``STORY``). Each names the services it needs
and is skipped, not failed, while one of them is not built yet; later issues append
their steps (rate the conference call, charge it, invoice it, collect payment) and
the demo grows with the suite. Steps share what they created through ``Story.facts``.

The whole story runs under one root span, so every call, SQL statement, event
publication and event consumption it causes lands in a single trace, which is
printed as a tree at the end (from the embedded trace receiver's ``traces.jsonl``).

Rating's part (issue 3): the sample catalog (``samples/catalog.yaml``) is applied
first, so accounts, which asks rating about plan codes, sells ``conference-pro``;
after the account story, the sample conference call's CDRs
(``samples/cdr/conference-legs.csv``) are imported as the demo account's usage,
and the rated lines and the reject are shown.

Charging's part (issue 4): a prepaid account of the same customer, which charging
learns from accounts' ``AccountCreated`` event and rating from its subscription,
is topped up with 1.00 EUR; a call to a Dutch landline is authorised (Initial),
updated until the money runs out and the last grant carries the final-unit
indication, then terminated. Charging prices the call through rating (``Quote`` /
``UnitsForAmount`` on the sample catalog's conference-pro voice rates, connection
fee and VAT included), and the ledger shows every step.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table

from reckon.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from reckon.charging.v1 import charging_pb2, charging_pb2_grpc
from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.clock import SharedTestClock
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from services.common.money import Money
from services.common.proto_convert import (
    money_to_proto,
    timestamp_from_proto,
    timestamp_to_proto,
)
from services.common.telemetry import current_trace_id, setup_telemetry, tracer
from suite.demo_billing import BILLING_STEPS
from suite.demo_dunning import DUNNING_STEPS
from suite.demo_notifications import NOTIFICATION_STEPS
from suite.demo_payments import PAYMENT_STEPS
from suite.state import SuiteState
from suite.trace_receiver import ReceivedSpan, read_spans
from suite.trace_view import trace_tree

ROOT_SPAN_NAME = "reckon.demo story"
# The referral consumer's span closes the story's trace; wait this long for it.
TRACE_WAIT_SECONDS = 10.0
CALL_TIMEOUT_SECONDS = 10.0
# Longer than the services' OTEL_BSP_SCHEDULE_DELAY (200 ms): one export round.
SETTLE_SECONDS = 0.4
DEMO_SERVICE = "reckon-demo"
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
SAMPLE_CATALOG = SAMPLES_DIR / "catalog.yaml"
SAMPLE_CDRS = SAMPLES_DIR / "cdr" / "conference-legs.csv"
# The demo's plan: it must be a plan of the sample catalog.
PLAN_CODE = "conference-pro"
# Rating learns accounts from accounts' events; this is how long the story waits for it.
ACCOUNT_VIEW_WAIT_SECONDS = 15.0


class StoryError(RuntimeError):
    """A step cannot go on for a reason other than a refused call (e.g. a missing sample)."""


@dataclass
class Story:
    """What the steps share: channels to the running services and what earlier steps made."""

    console: Console
    channels: Mapping[str, grpc.aio.Channel]
    facts: dict[str, Any] = field(default_factory=dict)

    def fact(self, name: str) -> Any:
        if name not in self.facts:
            raise LookupError(f"an earlier step should have produced {name!r}")
        return self.facts[name]

    @property
    def accounts(self) -> Any:
        """The accounts service (an ``AccountsServiceAsyncStub``)."""
        return accounts_pb2_grpc.AccountsServiceStub(self.channels["accounts"])

    @property
    def rating(self) -> Any:
        """The rating service (a ``RatingServiceAsyncStub``)."""
        return rating_pb2_grpc.RatingServiceStub(self.channels["rating"])

    @property
    def charging(self) -> Any:
        """The charging service (a ``ChargingServiceAsyncStub``)."""
        return charging_pb2_grpc.ChargingServiceStub(self.channels["charging"])


StepAction = Callable[[Story], Awaitable[RenderableType]]


@dataclass(frozen=True)
class StoryStep:
    title: str
    # Services the step calls: it is skipped while any of them is not running.
    needs: tuple[str, ...]
    act: StepAction


def suite_now(story: Story) -> datetime:
    """The suite's "now": its test clock's when it runs on one, else the machine's."""
    state = story.facts.get("suite")
    if state is None or not state.test_clock:
        return datetime.now(UTC)
    clock = SharedTestClock(state.redis_url)
    try:
        clock.refresh()
        return clock.now()
    finally:
        clock.close()


def request_id() -> str:
    return str(uuid.uuid4())


def refusal(error: grpc.RpcError) -> str:
    """``FAILED_PRECONDITION ACCOUNT_NOT_ACTIVE: message`` from a failed call's rich status."""
    details = details_of(error)
    reason = details.reason if details.reason != details.code.name else ""
    label = " ".join(part for part in (details.code.name, reason) if part)
    # Escaped: the server's words must not be read as Rich markup.
    return escape(f"{label}: {details.message}")


def account_state(account: accounts_pb2.Account) -> str:
    """``ACCOUNT_STATE_SUSPENDED: reason``."""
    return f"{accounts_pb2.AccountState.Name(account.state)}: {escape(account.state_reason)}"


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


# --- the story: rating (issue 3) ---------------------------------------------------------


def _sample(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StoryError(f"cannot read the sample {path}: {exc.strerror or exc}") from None


async def apply_catalog(story: Story) -> RenderableType:
    reply = await story.rating.ApplyCatalog(
        rating_pb2.ApplyCatalogRequest(
            document=_sample(SAMPLE_CATALOG),
            format=rating_pb2.CATALOG_FORMAT_YAML,
            source_name=SAMPLE_CATALOG.name,
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    plans = ", ".join(f"{p.code} ({p.currency})" for p in reply.plans)
    revision = (
        f"catalog revision {reply.revision}"
        if reply.changed
        else f"already catalog revision {reply.revision}"
    )
    return f"{SAMPLE_CATALOG.name}: {revision}; plans {plans}; {reply.prefix_count} prefixes"


def demo_usage_file(sample: str, *, account_id: str, start: datetime, end: datetime) -> bytes:
    """The sample CDRs rewritten as the demo account's usage.

    Every record gets the account and a record id of its own (``<id>-<account tail>``:
    rating de-duplicates record ids across files, so a second demo must not repeat the
    first's). Event times keep the sample's order and relative spacing, squeezed into
    ``[start, end]``: after the subscription started (rating rates an event with the
    plan in force at its time) and not after now (later events would be refused as
    future). The time bands that apply are those of the moment the demo runs, in the
    account's time zone; durations, destinations and services are the sample's.
    """
    reader = csv.DictReader(io.StringIO(sample))
    if reader.fieldnames is None or not {"record_id", "account_id", "event_time"} <= set(
        reader.fieldnames
    ):
        raise StoryError("the sample CDR file lacks record_id, account_id or event_time")
    rows = list(reader)
    times = [datetime.fromisoformat(row["event_time"]) for row in rows]
    first, last = min(times, default=start), max(times, default=start)
    # Whole milliseconds: start rounded up and end rounded down keep every time inside.
    start = start.replace(microsecond=start.microsecond // 1000 * 1000) + timedelta(milliseconds=1)
    end = max(start, end.replace(microsecond=end.microsecond // 1000 * 1000))
    tag = account_id[-6:]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=reader.fieldnames, lineterminator="\n")
    writer.writeheader()
    for row, at in zip(rows, times, strict=True):
        share = (at - first) / (last - first) if last > first else 0.0
        moment = start + (end - start) * share
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        writer.writerow(
            {
                **row,
                "record_id": f"{row['record_id']}-{tag}",
                "account_id": account_id,
                "event_time": max(start, moment).isoformat(timespec="milliseconds"),
            }
        )
    return out.getvalue().encode("utf-8")


async def rating_knows_account(story: Story) -> RenderableType:
    """Rating builds its view of accounts from accounts' events; a quote proves it is there."""
    account = story.fact("account")
    subscription = story.fact("subscription")
    since = timestamp_from_proto(subscription.start_time) + timedelta(milliseconds=1)
    started = time.monotonic()
    while True:
        try:
            reply = await story.rating.Quote(
                rating_pb2.QuoteRequest(
                    account_id=account.account_id,
                    service="voice",
                    destination="+31 20 555 0101",
                    event_time=timestamp_to_proto(since),
                    quantity=rating_pb2.Quantity(value=60, unit=rating_pb2.QUANTITY_UNIT_SECOND),
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            break
        except grpc.aio.AioRpcError as error:
            if details_of(error).reason not in ("UNKNOWN_ACCOUNT", "NO_PLAN"):
                raise
            if time.monotonic() - started > ACCOUNT_VIEW_WAIT_SECONDS:
                details = details_of(error)
                raise StoryError(
                    f"rating did not learn account {account.account_id} and its plan within "
                    f"{ACCOUNT_VIEW_WAIT_SECONDS:.0f}s ({details.reason}: {details.message})"
                ) from None
            await asyncio.sleep(0.2)
    waited = (time.monotonic() - started) * 1000
    charge = reply.charge
    return (
        f"{account.account_id} on {charge.plan_code} v{charge.plan_version} after "
        f"{waited:.0f} ms; a minute to {escape(charge.destination.name)} now costs "
        f"{money_text(charge.gross)} {charge.gross.currency_code} "
        f"(band {_bands(charge)}, {charge.time_zone}, tax region {charge.tax_region})"
    )


async def import_usage(story: Story) -> RenderableType:
    account = story.fact("account")
    subscription = story.fact("subscription")
    data = demo_usage_file(
        _sample(SAMPLE_CDRS),
        account_id=account.account_id,
        start=timestamp_from_proto(subscription.start_time),
        end=suite_now(story),
    )
    reply = await story.rating.ImportUsage(
        iter(
            [
                rating_pb2.ImportUsageRequest(
                    request_id=request_id(),
                    file_name=SAMPLE_CDRS.name,
                    options=rating_pb2.UsageFileOptions(
                        format=rating_pb2.USAGE_FILE_FORMAT_CSV, preset="reckon"
                    ),
                    chunk=data,
                )
            ]
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    imported = reply.file
    story.facts["usage_file"] = imported
    status = rating_pb2.ImportStatus.Name(imported.status).removeprefix("IMPORT_STATUS_")
    totals = ", ".join(f"{money_text(t)} {t.currency_code}" for t in imported.rated_totals)
    reasons = ", ".join(f"{c.reason} {c.count}" for c in imported.rejects_by_reason)
    colour = "green" if imported.status == rating_pb2.IMPORT_STATUS_COMPLETED else "bold red"
    return (
        f"{imported.file_name} ({imported.file_id}): [{colour}]{status}[/]; "
        f"records {imported.records}, rated {imported.rated}, rejected {imported.rejected}"
        + (f" ({reasons})" if reasons else "")
        + f", skipped {imported.skipped}; rated total {totals or '-'} gross"
    )


def money_text(money: Any) -> str:
    """An exact amount, at least to the cent: ``6.41``, ``0.0035``."""
    amount = (Decimal(money.units) + Decimal(money.nanos).scaleb(-9)).normalize()
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        amount = amount.quantize(Decimal("0.01"))
    return f"{amount:f}"


def _bands(charge: Any) -> str:
    bands: list[str] = []
    for segment in charge.segments:
        if segment.band not in bands:
            bands.append(segment.band)
    return "+".join(bands) or "-"


def _duration(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{minutes}:{rest:02d}"


async def rated_lines(story: Story) -> RenderableType:
    imported = story.fact("usage_file")
    reply = await story.rating.ListRatedUsage(
        rating_pb2.ListRatedUsageRequest(file_id=imported.file_id, page_size=100),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    currencies = sorted({r.amount.currency_code for r in reply.rated_usage})
    table = Table(
        box=None,
        padding=(0, 1),
        show_edge=False,
        caption=f"amounts in {', '.join(currencies)}" if currencies else None,
        caption_justify="left",
    )
    table.add_column("record", no_wrap=True)
    table.add_column("destination", no_wrap=True)
    table.add_column("band", no_wrap=True)
    table.add_column("duration", justify="right")
    for column in ("net", "tax", "gross"):
        table.add_column(column, justify="right")
    for rated in reply.rated_usage:
        charge = rated.charge
        table.add_row(
            rated.record_id,
            # The matched destination (the number is in the CDR); services without
            # destinations (recording) show the service.
            escape(charge.destination.name or rated.service),
            _bands(charge),
            _duration(rated.quantity.value)
            if rated.quantity.unit == rating_pb2.QUANTITY_UNIT_SECOND
            else str(rated.quantity.value),
            money_text(rated.net),
            money_text(rated.tax),
            money_text(rated.amount),
        )
    return table


async def rejected_records(story: Story) -> RenderableType:
    imported = story.fact("usage_file")
    reply = await story.rating.ListRejects(
        rating_pb2.ListRejectsRequest(file_id=imported.file_id, page_size=100),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    if not reply.rejects:
        return "no rejects"
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for column in ("line", "record", "reason"):
        table.add_column(column, no_wrap=True)
    table.add_column("why")
    for reject in reply.rejects:
        table.add_row(
            str(reject.line),
            reject.record_id,
            f"[yellow]{reject.reason}[/]",
            escape(reject.message),
        )
    return table


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


STORY: list[StoryStep] = [
    StoryStep("Load the sample catalog into rating", ("rating",), apply_catalog),
    StoryStep("Create the referring customer", ("accounts",), create_referrer),
    StoryStep("Create a customer referred by the first", ("accounts",), create_customer),
    StoryStep("Open a postpaid EUR billing account", ("accounts",), open_account),
    StoryStep(f"Subscribe to plan {PLAN_CODE}", ("accounts",), subscribe),
    StoryStep(
        "Try a plan the catalog does not have", ("accounts", "rating"), subscribe_to_unknown_plan
    ),
    StoryStep("Suspend the account (dunning)", ("accounts",), suspend),
    StoryStep("Try to subscribe while suspended", ("accounts",), subscribe_while_suspended),
    StoryStep("Restore the account (paid)", ("accounts",), restore),
    StoryStep("Account state history", ("accounts",), state_history),
    StoryStep("Referral credited by the event consumer", ("accounts",), referral_credited),
    StoryStep(
        "Rating learns the account and its plan from accounts' events",
        ("accounts", "rating"),
        rating_knows_account,
    ),
    StoryStep(
        "Import the conference call's CDRs (one leg has a problem)",
        ("accounts", "rating"),
        import_usage,
    ),
    StoryStep("Rated lines", ("accounts", "rating"), rated_lines),
    StoryStep("The rejected record and its reason", ("accounts", "rating"), rejected_records),
    *(StoryStep(*step) for step in PAYMENT_STEPS),
    *(StoryStep(*step) for step in BILLING_STEPS),
    StoryStep(
        "Open a prepaid EUR account for calls", ("accounts", "charging"), open_prepaid_account
    ),
    StoryStep(
        "Charging and rating learn the prepaid account from accounts' events",
        ("accounts", "rating", "charging"),
        charging_knows_account,
    ),
    StoryStep(f"Top up {CALL_TOP_UP.amount} EUR", ("accounts", "charging"), top_up),
    StoryStep(
        "A prepaid call: authorised, updated, cut by the final-unit indication",
        ("accounts", "rating", "charging"),
        prepaid_call,
    ),
    StoryStep("The prepaid account's ledger", ("accounts", "charging"), call_ledger),
    *(StoryStep(*step) for step in NOTIFICATION_STEPS),
    *(StoryStep(*step) for step in DUNNING_STEPS),
]


# --- playing it --------------------------------------------------------------------------


@dataclass
class DemoResult:
    trace_id: str
    completed: int
    skipped: int
    failed: str | None


def _configure_tracing(state: SuiteState) -> Any:
    """Export the demo's own spans where the suite's services export theirs.

    Through ``os.environ`` because the kit's set-up and the OTLP exporter read their
    settings there; the demo is a command of its own, so nothing else is affected.
    """
    if state.otlp_endpoint:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = state.otlp_endpoint
    if state.trace_receiver:
        os.environ.update(
            {
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                "OTEL_METRICS_EXPORTER": "none",  # the embedded receiver takes traces only
            }
        )
    os.environ["OTEL_SERVICE_NAME"] = DEMO_SERVICE
    return setup_telemetry("demo")


async def play_story(
    state: SuiteState, console: Console, steps: list[StoryStep] | None = None
) -> DemoResult:
    """Play ``steps`` (default ``STORY``) under one root span; stop at the first failure."""
    token = state.token()
    running = {record.name: record.address for record in state.services}
    channels = {name: open_channel(address, token) for name, address in running.items()}
    story = Story(console=console, channels=channels, facts={"suite": state})
    result = DemoResult(trace_id="", completed=0, skipped=0, failed=None)
    try:
        with tracer().start_as_current_span(ROOT_SPAN_NAME):
            result.trace_id = current_trace_id()
            console.print(f"trace id [bold]{result.trace_id or '(tracing is off)'}[/]\n")
            for number, step in enumerate(steps if steps is not None else STORY, start=1):
                missing = [name for name in step.needs if name not in running]
                if missing:
                    console.print(
                        f"[dim]{number:>2}. {step.title}: skipped, {', '.join(missing)} "
                        "not running yet[/]"
                    )
                    result.skipped += 1
                    continue
                console.print(f"[bold]{number:>2}. {step.title}[/]")
                with tracer().start_as_current_span(f"reckon.demo step {step.title}"):
                    try:
                        outcome = await step.act(story)
                    except StoryError as error:
                        result.failed = escape(f"{step.title}: {error}")
                        console.print(f"    [bold red]failed[/] {result.failed}")
                        break
                    except grpc.aio.AioRpcError as error:
                        result.failed = f"{step.title}: {refusal(error)}"
                        details = details_of(error)
                        for violation in details.violations:
                            result.failed += escape(
                                f"\n  {violation.field}: {violation.description}"
                            )
                        console.print(f"    [bold red]failed[/] {result.failed}")
                        break
                console.print(outcome if not isinstance(outcome, str) else f"    {outcome}")
                result.completed += 1
    finally:
        for channel in channels.values():
            await channel.close()
    return result


def trace_complete(spans: list[ReceivedSpan]) -> bool:
    """Whether the story's trace has arrived: every call reached its server, and every
    ``CustomerCreated`` was consumed (accounts consumes it itself for referrals)."""
    if not any(span.name == ROOT_SPAN_NAME for span in spans):
        return False
    parents = {span.parent_span_id for span in spans}
    calls = [span for span in spans if span.kind == "client" and span.service == DEMO_SERVICE]
    if any(call.span_id not in parents for call in calls):
        return False
    published = sum(span.name == "reckon.event.publish CustomerCreated" for span in spans)
    consumed = sum(span.name == "reckon.event.consume CustomerCreated" for span in spans)
    return consumed >= published


def wait_for_trace(traces_file: Path, trace_id: str, timeout: float) -> list[ReceivedSpan]:
    """Poll the receiver's file until the trace is complete and no more spans trickle in.

    Services export in batches, so a parent can arrive after its children; waiting
    for the count to settle keeps the tree from showing orphans.
    """
    deadline = time.monotonic() + timeout
    previous = -1
    while True:
        spans = list(read_spans(traces_file, trace_id))
        settled = len(spans) == previous
        if (settled and trace_complete(spans)) or time.monotonic() > deadline:
            return spans
        previous = len(spans)
        time.sleep(SETTLE_SECONDS)


def play_demo(state: SuiteState, console: Console) -> int:
    """Play the story against ``state``'s suite, print its trace; the exit code."""
    telemetry = _configure_tracing(state)
    result = asyncio.run(play_story(state, console))
    if telemetry.tracer_provider is not None:
        telemetry.tracer_provider.force_flush()
    console.print()
    if result.failed:
        console.print(f"[bold red]The story stopped:[/] {result.failed}")
    else:
        console.print(
            f"[bold green]Story complete[/]: {result.completed} steps"
            + (f", {result.skipped} waiting for services not built yet" if result.skipped else "")
        )
    if result.trace_id and state.traces_file:
        spans = wait_for_trace(Path(state.traces_file), result.trace_id, TRACE_WAIT_SECONDS)
        console.print()
        console.print(trace_tree(result.trace_id, spans))
        console.print(f"\ntrace id [bold]{result.trace_id}[/]")
    elif result.trace_id:
        console.print(f"trace id [bold]{result.trace_id}[/], exported to {state.otlp_endpoint}")
    telemetry.shutdown()
    return 1 if result.failed else 0
