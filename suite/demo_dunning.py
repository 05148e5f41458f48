"""Dunning's part of ``reckon demo`` (issue 13): an unpaid invoice escalates, then is paid.

The prepaid account of the call story gets an invoice (20.00 EUR, issued by invoicing)
that nobody pays. The default policy (``samples/dunning-policy.yaml``) is applied and
the daily run is asked for the days after the due date (``RunDunning`` with a run
date, so the story needs no clock move): day 1 a reminder e-mail (a
``DunningMessageDue`` event for notifications), day 7 an SMS and a 10.00 EUR late fee
(a pending item of the next invoice), day 14 the account suspended through accounts,
and charging refuses the next call at once. The invoice is then paid: dunning ends on
invoicing's ``InvoicePaid`` event, restores the account, and the call goes through.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.type import date_pb2
from rich.console import Group, RenderableType

from reckon.accounts.v1 import accounts_pb2
from reckon.charging.v1 import charging_pb2
from reckon.dunning.v1 import dunning_pb2, dunning_pb2_grpc
from reckon.invoicing.v1 import invoicing_pb2, invoicing_pb2_grpc
from services.common.money import Money
from services.common.proto_convert import money_to_proto

if TYPE_CHECKING:
    from suite.demo_story import Story

# Same as suite.demo's (not imported at module level: suite.demo imports this module).
CALL_TIMEOUT_SECONDS = 10.0
WAIT_SECONDS = 15.0
VOICE_RATING_GROUP = 100
CALL_DESTINATION = "+31 20 555 0101"
TOP_UP = Money.of("1.00", "EUR")
POLICY = Path(__file__).resolve().parent.parent / "samples" / "dunning-policy.yaml"
INVOICE_AMOUNT = Money.of("20.00", "EUR")


def _request_id() -> str:
    return f"demo-{uuid.uuid4()}"


def _dunning(story: Story) -> Any:
    return dunning_pb2_grpc.DunningServiceStub(story.channels["dunning"])


def _invoicing(story: Story) -> Any:
    return invoicing_pb2_grpc.InvoicingServiceStub(story.channels["invoicing"])


async def _until(what: str, probe: Callable[[], Awaitable[Any]]) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            from suite.demo_story import StoryError

            raise StoryError(f"{what} within {WAIT_SECONDS:.0f}s")
        await asyncio.sleep(0.2)


def _money(value: Any) -> str:
    amount = Decimal(value.units) + Decimal(value.nanos) / Decimal(10**9)
    return f"{amount.quantize(Decimal('0.01'))} {value.currency_code}"


async def unpaid_invoice(story: Story) -> RenderableType:
    account = story.fact("prepaid_account")
    await _dunning(story).ApplyPolicy(
        dunning_pb2.ApplyPolicyRequest(document=POLICY.read_text(), request_id=_request_id()),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    invoicing = _invoicing(story)
    await _until(
        f"invoicing to learn account {account.account_id}",
        lambda: _known(invoicing, account.account_id),
    )
    await invoicing.AddPendingItem(
        invoicing_pb2.AddPendingItemRequest(
            account_id=account.account_id,
            description="Conference bridge, monthly fee",
            amount=money_to_proto(INVOICE_AMOUNT),
            kind=invoicing_pb2.LINE_KIND_ONE_TIME,
            request_id=_request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    invoice = (
        await invoicing.CreateImmediateInvoice(
            invoicing_pb2.CreateImmediateInvoiceRequest(
                account_id=account.account_id, finalize=True, request_id=_request_id()
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    ).invoice
    story.facts["dunning_invoice"] = invoice
    due = date(invoice.due_date.year, invoice.due_date.month, invoice.due_date.day)
    story.facts["dunning_due"] = due
    # Credit for the calls below (the call story used the first top-up up).
    await story.charging.TopUp(
        charging_pb2.TopUpRequest(
            account_id=account.account_id,
            amount=charging_pb2.Quantity(money=money_to_proto(TOP_UP)),
            reference="demo top-up before dunning",
            request_id=_request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return (
        f"invoice {invoice.number} of {_money(invoice.total_gross)} for {account.account_id}, "
        f"due {due}; policy 'default' applied to dunning"
    )


async def _known(invoicing: Any, account_id: str) -> bool:
    import grpc

    try:
        await invoicing.GetAccountCredit(
            invoicing_pb2.GetAccountCreditRequest(account_id=account_id),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    except grpc.aio.AioRpcError:
        return False
    return True


async def _run_day(story: Story, day: int) -> Any:
    due: date = story.fact("dunning_due")
    on = due + timedelta(days=day)
    await _dunning(story).RunDunning(
        dunning_pb2.RunDunningRequest(
            run_date=date_pb2.Date(year=on.year, month=on.month, day=on.day), wait=True
        ),
        timeout=60,
    )
    account = story.fact("prepaid_account")
    reply = await _dunning(story).ListDunningAccounts(
        dunning_pb2.ListDunningAccountsRequest(page_size=1000), timeout=CALL_TIMEOUT_SECONDS
    )
    return next((a for a in reply.accounts if a.account_id == account.account_id), None)


async def _projected(story: Story) -> None:
    """Dunning learns the invoice from invoicing's InvoiceIssued event: wait for it (a run
    of a day judged before that would have nothing to judge, and a day runs once)."""
    import grpc

    invoice = story.fact("dunning_invoice")
    account = story.fact("prepaid_account")

    async def known() -> bool:
        try:
            reply = await _dunning(story).GetPaymentBehaviour(
                dunning_pb2.GetPaymentBehaviourRequest(customer_id=account.customer_id),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError:
            return False
        return any(o.invoice_id == invoice.invoice_id for o in reply.outcomes)

    await _until(f"dunning to learn invoice {invoice.invoice_id}", known)
    story.facts["dunning_day1"] = await _run_day(story, 1)


async def day_one(story: Story) -> RenderableType:
    await _projected(story)
    listed = story.fact("dunning_day1")
    due: date = story.fact("dunning_due")
    return (
        f"run of {due + timedelta(days=1)}: level {listed.level} ({listed.level_name}), "
        f"reminder e-mail event sent; next: {listed.next_step}"
    )


async def day_seven(story: Story) -> RenderableType:
    listed = await _run_day(story, 7)
    account = story.fact("prepaid_account")
    invoicing = _invoicing(story)

    async def late_fee() -> Any:
        reply = await invoicing.ListPendingItems(
            invoicing_pb2.ListPendingItemsRequest(account_id=account.account_id),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return next(
            (i for i in reply.pending_items if i.kind == invoicing_pb2.LINE_KIND_LATE_FEE), None
        )

    fee = await _until("the late fee to reach invoicing", late_fee)
    from suite.demo_notifications import sms_as_arrived

    return Group(
        f"level {listed.level} ({listed.level_name}): the reminder SMS, and a late fee "
        f"{_money(fee.amount)} pending for the next invoice",
        await sms_as_arrived(story, "DunningMessageDue"),
    )


async def _call(story: Story) -> str:
    """A one-minute call attempt (Initial, then Terminate with nothing used): the voice
    rating group's result."""
    account = story.fact("prepaid_account")
    session = f"demo-dunning-{uuid.uuid4().hex[:12]}"

    def group(requested: int | None, used: int | None) -> Any:
        message = charging_pb2.MultipleServicesCreditControl(
            rating_group=VOICE_RATING_GROUP, destination=CALL_DESTINATION
        )
        if requested is not None:
            message.requested_units.time_seconds = requested
        if used is not None:
            message.used_units.time_seconds = used
        return message

    reply = await story.charging.CreditControl(
        charging_pb2.CreditControlRequest(
            session_id=session,
            request_type=charging_pb2.REQUEST_TYPE_INITIAL,
            request_number=0,
            account_id=account.account_id,
            multiple_services=[group(60, None)],
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    answer = reply.multiple_services[0] if reply.multiple_services else None
    code = answer.result_code if answer is not None else reply.result_code
    if code == charging_pb2.RESULT_CODE_SUCCESS:
        await story.charging.CreditControl(
            charging_pb2.CreditControlRequest(
                session_id=session,
                request_type=charging_pb2.REQUEST_TYPE_TERMINATE,
                request_number=1,
                account_id=account.account_id,
                multiple_services=[group(None, 0)],
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    return charging_pb2.ResultCode.Name(code).removeprefix("RESULT_CODE_")


async def day_fourteen(story: Story) -> RenderableType:
    listed = await _run_day(story, 14)
    account = story.fact("prepaid_account")

    async def suspended() -> bool:
        reply = await story.accounts.GetAccount(
            accounts_pb2.GetAccountRequest(account_id=account.account_id),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return bool(reply.account.state == accounts_pb2.ACCOUNT_STATE_SUSPENDED)

    await _until("accounts to suspend the account", suspended)
    started = time.monotonic()

    async def refused() -> str | None:
        result = await _call(story)
        return result if result != "SUCCESS" else None

    result = await _until("charging to refuse the call", refused)
    return (
        f"level {listed.level} ({listed.level_name}): account SUSPENDED through accounts; "
        f"a call is refused ({result}) {1000 * (time.monotonic() - started):.0f} ms later"
    )


async def paid_and_restored(story: Story) -> RenderableType:
    invoice = story.fact("dunning_invoice")
    account = story.fact("prepaid_account")
    await _invoicing(story).RecordPayment(
        invoicing_pb2.RecordPaymentRequest(
            invoice_id=invoice.invoice_id,
            payment_id=f"demo-pay-{uuid.uuid4().hex[:12]}",
            amount=invoice.amount_due,
            request_id=_request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    started = time.monotonic()

    async def active() -> bool:
        reply = await story.accounts.GetAccount(
            accounts_pb2.GetAccountRequest(account_id=account.account_id),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return bool(reply.account.state == accounts_pb2.ACCOUNT_STATE_ACTIVE)

    await _until("dunning to restore the account", active)
    restored = 1000 * (time.monotonic() - started)

    async def allowed() -> str | None:
        result = await _call(story)
        return result if result == "SUCCESS" else None

    await _until("charging to let the call through", allowed)
    return (
        f"invoice paid: dunning ended on InvoicePaid and restored the account in "
        f"{restored:.0f} ms (no daily run); the call goes through again"
    )


# (title, services it needs, action): suite.demo appends these to its story.
DUNNING_STEPS: list[tuple[str, tuple[str, ...], Callable[[Story], Awaitable[RenderableType]]]] = [
    (
        "Dunning: an invoice nobody pays",
        ("accounts", "charging", "invoicing", "dunning"),
        unpaid_invoice,
    ),
    ("Dunning day 1: reminder e-mail", ("invoicing", "dunning"), day_one),
    ("Dunning day 7: SMS and a late fee", ("invoicing", "dunning"), day_seven),
    (
        "Dunning day 14: suspended, a call refused",
        ("accounts", "charging", "dunning"),
        day_fourteen,
    ),
    (
        "Paid: dunning ends and the call goes through at once",
        ("accounts", "charging", "invoicing", "dunning"),
        paid_and_restored,
    ),
]
