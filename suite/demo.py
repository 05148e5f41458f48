"""``reckon demo``: the end-to-end story, played against a running suite as one trace.

The story is a list of ``StoryStep``s (``STORY``). Each names the services it needs
and is skipped, not failed, while one of them is not built yet; later issues append
their steps (rate the conference call, charge it, invoice it, collect payment) and
the demo grows with the suite. Steps share what they created through ``Story.facts``.

The whole story runs under one root span, so every call, SQL statement, event
publication and event consumption it causes lands in a single trace, which is
printed as a tree at the end (from the embedded trace receiver's ``traces.jsonl``).

The story, in the order it is played (each part in its own module):

- ``demo_accounts``: customers, a referral, an account suspended and restored (issue 2);
- ``demo_rating``: the sample catalog applied, the conference call's CDRs
  (``samples/cdr/conference-legs.csv``) imported and rated with the customer's own
  price package, the reject and its reason (issue 3);
- ``demo_payments`` + ``demo_billing``: a card on file; the test clock moved past the
  cycle end; invoicing's daily bill run invoices the customer (lines, totals, number,
  PDF and UBL from ``GetInvoiceDocument`` into the data directory); payments charges
  the card on ``InvoiceIssued``; the invoice e-mail and the payment confirmation as
  they arrived at the mail catcher; a second account whose card declines with a
  retryable error, retried on the test clock until the last try succeeds
  (issues 10, 11, 12);
- ``demo_charging``: the prepaid variant, a call authorised while it runs and cut
  when the credit ends, and the ledger (issue 4);
- ``demo_notifications``: every message sent to the customer;
- ``demo_dunning``: an unpaid invoice escalates and is paid (issue 13).

The story needs a suite on the test clock (``reckon up --test-clock``; the temporary
suite ``reckon demo`` starts is). The clock moves carry the story's trace context,
so the bill run at the cycle end is in the story's one trace (ADR 0054).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.markup import escape

from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from services.common.telemetry import current_trace_id, setup_telemetry, tracer
from suite.demo_accounts import (
    create_customer,
    create_referrer,
    open_account,
    referral_credited,
    restore,
    state_history,
    subscribe,
    subscribe_to_unknown_plan,
    subscribe_while_suspended,
    suspend,
)
from suite.demo_billing import BILLING_STEPS
from suite.demo_charging import (
    CALL_DESTINATION as CALL_DESTINATION,
)
from suite.demo_charging import (
    CALL_MAX_UPDATES as CALL_MAX_UPDATES,
)
from suite.demo_charging import (
    CALL_QUOTA_SECONDS as CALL_QUOTA_SECONDS,
)
from suite.demo_charging import (
    CALL_TAX_REGION as CALL_TAX_REGION,
)
from suite.demo_charging import (
    CALL_TIME_ZONE as CALL_TIME_ZONE,
)
from suite.demo_charging import (
    CALL_TOP_UP as CALL_TOP_UP,
)
from suite.demo_charging import (
    call_ledger,
    charging_knows_account,
    open_prepaid_account,
    prepaid_call,
    top_up,
)
from suite.demo_dunning import DUNNING_STEPS
from suite.demo_notifications import NOTIFICATION_STEPS, low_balance_alert
from suite.demo_payments import PAYMENT_STEPS
from suite.demo_rating import (
    apply_catalog,
    import_usage,
    rated_lines,
    rating_knows_account,
    rejected_records,
)
from suite.demo_rating import (
    demo_usage_file as demo_usage_file,
)
from suite.demo_rating import (
    money_text as money_text,
)
from suite.demo_story import (
    DEMO_SERVICE,
    ROOT_SPAN_NAME,
    SETTLE_SECONDS,
    TRACE_WAIT_SECONDS,
    Story,
    StoryError,
    StoryStep,
    refusal,
)
from suite.demo_story import (
    PLAN_CODE as PLAN_CODE,
)
from suite.demo_story import (
    SAMPLE_CATALOG as SAMPLE_CATALOG,
)
from suite.demo_story import (
    SAMPLE_CDRS as SAMPLE_CDRS,
)
from suite.state import SuiteState
from suite.trace_receiver import ReceivedSpan, read_spans
from suite.trace_view import trace_tree

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
        "Alert the customer when the prepaid balance runs low",
        ("accounts", "charging"),
        low_balance_alert,
    ),
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
    customer_id: str = ""  # the story's customer, for a self-care login


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
    customer = story.facts.get("customer")
    result.customer_id = customer.customer_id if customer is not None else ""
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


def without_storage_leaves(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    """The trace without its SQL and Redis statements that have nothing beneath them.

    The story makes thousands of them; a newcomer reads the hops between services
    (calls, events, the bill run, the provider, the e-mails). ``reckon trace`` shows all.
    """
    parents = {span.parent_span_id for span in spans}
    return [span for span in spans if span.span_id in parents or "db.system" not in span.attributes]


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
    if result.customer_id:
        from suite.gateway_cli import demo_login

        selfcare = demo_login(state, result.customer_id)
        if selfcare is not None:
            url, login, password = selfcare
            console.print(f"Self-care: [bold]{url}[/]  login {login}  password {password}")
    if result.trace_id and state.traces_file:
        spans = wait_for_trace(Path(state.traces_file), result.trace_id, TRACE_WAIT_SECONDS)
        shown = without_storage_leaves(spans)
        console.print()
        console.print(trace_tree(result.trace_id, shown))
        if len(shown) < len(spans):
            console.print(
                f"\n{len(spans) - len(shown)} SQL and Redis statements are left out above; "
                f"the whole tree: [bold]reckon trace {result.trace_id}[/]"
                + f" --data-dir {state.data_dir}"
            )
        console.print(f"\ntrace id [bold]{result.trace_id}[/]")
    elif result.trace_id:
        console.print(f"trace id [bold]{result.trace_id}[/], exported to {state.otlp_endpoint}")
    telemetry.shutdown()
    return 1 if result.failed else 0
