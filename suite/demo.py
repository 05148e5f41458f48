"""``reckon demo``: the end-to-end story, played against a running suite as one trace.

The story is a list of ``StoryStep``s (``STORY``). Each names the services it needs
and is skipped, not failed, while one of them is not built yet; later issues append
their steps (rate the conference call, charge it, invoice it, collect payment) and
the demo grows with the suite. Steps share what they created through ``Story.facts``.

The whole story runs under one root span, so every call, SQL statement, event
publication and event consumption it causes lands in a single trace, which is
printed as a tree at the end (from the embedded trace receiver's ``traces.jsonl``).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table

from reckon.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from services.common.money import Money
from services.common.proto_convert import money_to_proto, timestamp_from_proto
from services.common.telemetry import current_trace_id, setup_telemetry, tracer
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


StepAction = Callable[[Story], Awaitable[RenderableType]]


@dataclass(frozen=True)
class StoryStep:
    title: str
    # Services the step calls: it is skipped while any of them is not running.
    needs: tuple[str, ...]
    act: StepAction


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
                time_zone="Europe/London",
                bill_cycle_day=1,
                tax_region="GB",
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
                account_id=account.account_id, plan_code="conference-pro"
            ),
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    story.facts["subscription"] = reply.subscription
    period = timestamp_from_proto(reply.subscription.current_period_end_time)
    return (
        f"{reply.subscription.subscription_id} on plan conference-pro, "
        f"current cycle ends {period:%Y-%m-%d}"
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
                    account_id=account.account_id, plan_code="conference-recording"
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


STORY: list[StoryStep] = [
    StoryStep("Create the referring customer", ("accounts",), create_referrer),
    StoryStep("Create a customer referred by the first", ("accounts",), create_customer),
    StoryStep("Open a postpaid EUR billing account", ("accounts",), open_account),
    StoryStep("Subscribe to plan conference-pro", ("accounts",), subscribe),
    StoryStep("Suspend the account (dunning)", ("accounts",), suspend),
    StoryStep("Try to subscribe while suspended", ("accounts",), subscribe_while_suspended),
    StoryStep("Restore the account (paid)", ("accounts",), restore),
    StoryStep("Account state history", ("accounts",), state_history),
    StoryStep("Referral credited by the event consumer", ("accounts",), referral_credited),
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
    story = Story(console=console, channels=channels)
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
