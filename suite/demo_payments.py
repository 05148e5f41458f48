"""The payments part of ``reckon demo``: the invoice is collected from the card on file.

A step of ``suite.demo.STORY``: a card goes on file for the story's postpaid account
(before its cycle ends, so the bill run's invoice is collected from it), and the
helpers ``suite.demo_billing`` uses to issue invoices and follow payments.
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

from reckon.invoicing.v1 import invoicing_pb2, invoicing_pb2_grpc
from reckon.payments.v1 import payments_pb2, payments_pb2_grpc

if TYPE_CHECKING:
    from suite.demo_story import Story

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
            from suite.demo_story import StoryError

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


# (title, services needed, action): suite.demo wraps each in a StoryStep. The card goes
# on file before the cycle ends (suite.demo_billing), so the bill run's invoice is
# collected from it on InvoiceIssued.
PAYMENT_STEPS: list[tuple[str, tuple[str, ...], Callable[[Story], Awaitable[RenderableType]]]] = [
    ("Put a card on file for the postpaid account", ("accounts", "payments"), card_on_file),
]
