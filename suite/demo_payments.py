"""The payments part of ``reckon demo``: the invoice is collected from the card on file.

Steps appended to ``suite.demo.STORY`` (one line there): a card goes on file for the
story's postpaid account, invoicing issues an invoice for it, payments charges the
card on ``InvoiceIssued`` and invoicing shows it paid; then a second customer's
card is declined (insufficient funds: retried on the schedule), the customer pays
the invoice online with another card and the invoice is paid.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import grpc
from google.type import money_pb2
from rich.console import RenderableType

from reckon.accounts.v1 import accounts_pb2
from reckon.invoicing.v1 import invoicing_pb2, invoicing_pb2_grpc
from reckon.payments.v1 import payments_pb2, payments_pb2_grpc

if TYPE_CHECKING:
    from suite.demo import Story

# Same as suite.demo's (not imported at module level: suite.demo imports this module).
CALL_TIMEOUT_SECONDS = 10.0


def request_id() -> str:
    return str(uuid.uuid4())


def money_text(money: Any) -> str:
    amount = Decimal(money.units) + Decimal(money.nanos).scaleb(-9)
    return f"{amount.quantize(Decimal('0.01'))} {money.currency_code}"


# Invoicing learns accounts from accounts' events; payments learns invoices from invoicing's.
WAIT_SECONDS = 20.0


def _invoicing(story: Story) -> Any:
    return invoicing_pb2_grpc.InvoicingServiceStub(story.channels["invoicing"])


def _payments(story: Story) -> Any:
    return payments_pb2_grpc.PaymentsServiceStub(story.channels["payments"])


async def _until(what: str, probe: Callable[[], Awaitable[Any]]) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            from suite.demo import StoryError

            raise StoryError(f"waited {WAIT_SECONDS:.0f} s for {what}")
        await asyncio.sleep(0.2)


async def _card(story: Story, account: Any, number: str) -> Any:
    reply = await _payments(story).AddPaymentMethod(
        payments_pb2.AddPaymentMethodRequest(
            account_id=account.account_id,
            customer_id=account.customer_id,
            currency_code=account.currency_code,
            kind=payments_pb2.PAYMENT_METHOD_KIND_CARD,
            card=payments_pb2.CardInput(number=number, exp_month=12, exp_year=2030, cvc="123"),
            make_default=True,
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return reply.payment_method


async def _issue_invoice(story: Story, account_id: str, description: str, net: str) -> Any:
    """A pending item and an immediate, finalised invoice (once invoicing knows the account)."""
    units, _, cents = net.partition(".")
    amount = money_pb2.Money(
        currency_code="EUR", units=int(units), nanos=int(cents.ljust(9, "0")[:9] or 0)
    )

    async def add_item() -> Any:
        try:
            return await _invoicing(story).AddPendingItem(
                invoicing_pb2.AddPendingItemRequest(
                    account_id=account_id,
                    description=description,
                    amount=amount,
                    request_id=f"demo-item-{account_id}",
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                return None  # invoicing has not seen the account's events yet
            raise

    await _until("invoicing to learn the account", add_item)
    reply = await _invoicing(story).CreateImmediateInvoice(
        invoicing_pb2.CreateImmediateInvoiceRequest(
            account_id=account_id, finalize=True, request_id=f"demo-invoice-{account_id}"
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return reply.invoice


async def _invoice_status(story: Story, invoice_id: str) -> Any:
    reply = await _invoicing(story).GetInvoice(
        invoicing_pb2.GetInvoiceRequest(invoice_id=invoice_id), timeout=CALL_TIMEOUT_SECONDS
    )
    return reply.invoice


async def _payments_of(story: Story, account_id: str) -> list[Any]:
    reply = await _payments(story).ListPayments(
        payments_pb2.ListPaymentsRequest(account_id=account_id), timeout=CALL_TIMEOUT_SECONDS
    )
    return list(reply.payments)


async def card_on_file(story: Story) -> RenderableType:
    account = story.fact("account")
    method = await _card(story, account, "4242424242424242")
    return (
        f"{method.method_id}: {method.card_brand} **** {method.card_last4}, "
        f"expires {method.card_exp_month:02d}/{method.card_exp_year}, default for "
        f"{account.account_id} (the card number stayed with the provider)"
    )


async def invoice_collected(story: Story) -> RenderableType:
    account = story.fact("account")
    invoice = await _issue_invoice(story, account.account_id, "Conference bridge", "40.00")

    async def paid() -> Any:
        found = await _invoice_status(story, invoice.invoice_id)
        return found if found.status == invoicing_pb2.INVOICE_STATUS_PAID else None

    settled = await _until(f"invoice {invoice.number} to be paid", paid)
    (payment,) = [
        p
        for p in await _payments_of(story, account.account_id)
        if any(a.invoice_id == invoice.invoice_id for a in p.allocations)
    ]
    state = payments_pb2.PaymentState.Name(payment.state).removeprefix("PAYMENT_STATE_")
    status = invoicing_pb2.InvoiceStatus.Name(settled.status).removeprefix("INVOICE_STATUS_")
    return (
        f"invoice {settled.number}: {money_text(settled.total_gross)} issued, collected from "
        f"the card by {payment.payment_id} ({state}), invoice {status}"
    )


async def declined_then_paid(story: Story) -> RenderableType:
    customer = story.fact("customer")
    reply = await story.accounts.CreateAccount(
        accounts_pb2.CreateAccountRequest(
            account=accounts_pb2.Account(
                customer_id=customer.customer_id,
                display_name="Second line",
                currency_code="EUR",
                time_zone="Europe/Amsterdam",
                bill_cycle_day=1,
                tax_region="NL",
                payment_terms_days=14,
                payment_mode=accounts_pb2.PAYMENT_MODE_POSTPAID,
                credit_limit=money_pb2.Money(currency_code="EUR", units=100),
            ),
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    account = reply.account
    await _card(story, account, "4000000000009995")  # insufficient funds
    invoice = await _issue_invoice(story, account.account_id, "Second line", "15.00")

    async def declined() -> Any:
        found = await _payments_of(story, account.account_id)
        failed = [p for p in found if p.state == payments_pb2.PAYMENT_STATE_FAILED]
        return failed[0] if failed else None

    failed = await _until("the collection to be declined", declined)
    retry = failed.next_retry_time.ToDatetime().date().isoformat()
    good = await _card(story, account, "4242424242424242")
    paid = await _payments(story).CreatePayment(
        payments_pb2.CreatePaymentRequest(
            account_id=account.account_id,
            amount=invoice.amount_due,
            channel=payments_pb2.CHANNEL_ONLINE_CARD,
            method_id=good.method_id,
            invoice_ids=[invoice.invoice_id],
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    settled = await _invoice_status(story, invoice.invoice_id)
    return (
        f"{failed.payment_id} declined ({failed.decline_code}; retry planned {retry}); "
        f"paid online with another card by {paid.payment.payment_id}: invoice "
        f"{settled.number} "
        f"{invoicing_pb2.InvoiceStatus.Name(settled.status).removeprefix('INVOICE_STATUS_')}"
    )


# (title, services needed, action): suite.demo wraps each in a StoryStep.
PAYMENT_STEPS: list[tuple[str, tuple[str, ...], Callable[[Story], Awaitable[RenderableType]]]] = [
    ("Put a card on file for the postpaid account", ("accounts", "payments"), card_on_file),
    (
        "Invoice it: collected from the card on file, marked paid",
        ("accounts", "invoicing", "payments"),
        invoice_collected,
    ),
    (
        "A declined card: retry planned, then paid online with another card",
        ("accounts", "invoicing", "payments"),
        declined_then_paid,
    ),
]
