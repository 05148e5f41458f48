"""Payments with the real invoicing service, both in-process on one Redis, SQLite and PostgreSQL.

The conference-call story (PAY-2): an invoice is finalised, invoicing announces
``InvoiceIssued``, payments charges the card on file and invoicing marks the
invoice paid. Manual payments settle several invoices oldest first with the
overpayment held as account credit in invoicing; a refund reopens the invoice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.type import money_pb2

from reckon.invoicing.v1 import invoicing_pb2 as ipb
from reckon.invoicing.v1 import invoicing_pb2_grpc
from reckon.payments.v1 import payments_pb2 as pb
from reckon.payments.v1 import payments_pb2_grpc
from services.common.clock import ManualClock
from services.common.config import load_settings
from services.common.db import make_engine
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from services.common.ids import new_id
from services.common.money import Money
from services.invoicing.bootstrap import RunningInvoicing
from services.invoicing.bootstrap import running_service as running_invoicing
from services.payments.adapters.invoicing_client import GrpcInvoicing
from services.payments.adapters.sandbox import SandboxProvider
from services.payments.bootstrap import running_service as running_payments
from services.payments.config import PaymentsSettings
from services.payments.service_layer.ports import PaymentToAllocate
from tests.conftest import TEST_TOKEN, TestDatabase
from tests.integration.invoicing.conftest import (
    PriceList,
    World,
    invoicing_settings,
    wait_for,
)


def eur(amount: str) -> money_pb2.Money:
    value = Decimal(amount)
    units = int(value)
    return money_pb2.Money(
        currency_code="EUR", units=units, nanos=int((value - units) * 1_000_000_000)
    )


def amount(money: money_pb2.Money) -> Decimal:
    return Decimal(money.units) + Decimal(money.nanos) / Decimal(1_000_000_000)


@dataclass
class Billing:
    invoicing: World
    payments: Any  # PaymentsServiceStub
    sandbox: SandboxProvider

    async def customer(self) -> tuple[str, str]:
        customer_id, account_id = await self.invoicing.account()
        await self.invoicing.processed(2)
        return customer_id, account_id

    async def card(self, customer_id: str, account_id: str, number: str) -> None:
        await self.payments.AddPaymentMethod(
            pb.AddPaymentMethodRequest(
                account_id=account_id,
                customer_id=customer_id,
                currency_code="EUR",
                kind=pb.PAYMENT_METHOD_KIND_CARD,
                card=pb.CardInput(number=number, exp_month=12, exp_year=2031, cvc="123"),
                request_id=f"card-{account_id}",
            )
        )

    async def invoice(self, account_id: str, net: str, key: str) -> ipb.Invoice:
        stub = self.invoicing.stub
        await stub.AddPendingItem(
            ipb.AddPendingItemRequest(
                account_id=account_id,
                description="Conference call",
                amount=eur(net),
                request_id=f"item-{key}",
            )
        )
        reply = await stub.CreateImmediateInvoice(
            ipb.CreateImmediateInvoiceRequest(
                account_id=account_id, finalize=True, request_id=f"inv-{key}"
            )
        )
        made: ipb.Invoice = reply.invoice
        return made

    async def get(self, invoice_id: str) -> ipb.Invoice:
        reply = await self.invoicing.stub.GetInvoice(ipb.GetInvoiceRequest(invoice_id=invoice_id))
        found: ipb.Invoice = reply.invoice
        return found


@pytest.fixture
async def billing(
    database: TestDatabase, service_env: dict[str, str], redis_client: aioredis.Redis
) -> AsyncIterator[Billing]:

    clock = ManualClock(datetime(2027, 1, 10, 9, 0, tzinfo=UTC))
    async with running_invoicing(
        invoicing_settings(database), clock=clock, pricer=PriceList()
    ) as invoicing:
        running: RunningInvoicing = invoicing
        schema = f"{database.schema}_pay" if database.schema else None
        url = database.url.replace("test.db", "payments.db")
        settings = load_settings(
            PaymentsSettings,
            listen="127.0.0.1:0",
            database_url=url,
            database_schema=schema,
            shutdown_grace_seconds=0,
            worker_interval_seconds=0.2,
            invoicing_addr=f"127.0.0.1:{running.port}",
        )
        sandbox = SandboxProvider(clock)
        async with running_payments(settings, clock=clock, provider=sandbox) as payments:
            engine = make_engine(database.url, database.schema, instrument=False)
            inv_channel = open_channel(f"127.0.0.1:{running.port}", TEST_TOKEN, traced=False)
            pay_channel = open_channel(f"127.0.0.1:{payments.port}", TEST_TOKEN, traced=False)
            try:
                yield Billing(
                    World(
                        service=running,
                        stub=invoicing_pb2_grpc.InvoicingServiceStub(inv_channel),
                        channel=inv_channel,
                        redis=redis_client,
                        database=database,
                        engine=engine,
                        clock=clock,
                    ),
                    payments_pb2_grpc.PaymentsServiceStub(pay_channel),
                    sandbox,
                )
            finally:
                await inv_channel.close()
                await pay_channel.close()
                engine.dispose()
        if schema:
            drop = make_engine(url, None, instrument=False)
            with drop.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            drop.dispose()


async def test_an_issued_invoice_is_charged_to_the_card_on_file_and_marked_paid(
    billing: Billing,
) -> None:
    customer_id, account_id = await billing.customer()
    await billing.card(customer_id, account_id, "4242424242424242")
    invoice = await billing.invoice(account_id, "10.00", "a")
    assert amount(invoice.amount_due) == Decimal("12.1")

    async def paid() -> ipb.Invoice | None:
        found = await billing.get(invoice.invoice_id)
        return found if found.status == ipb.INVOICE_STATUS_PAID else None

    settled = await wait_for(paid, 60, "the invoice paid")
    assert amount(settled.amount_due) == 0
    history = await billing.payments.ListPayments(pb.ListPaymentsRequest(account_id=account_id))
    (payment,) = history.payments
    assert payment.state == pb.PAYMENT_STATE_SUCCEEDED
    assert [a.invoice_id for a in payment.allocations] == [invoice.invoice_id]
    assert billing.sandbox.charges_made == 1

    # A partial refund reopens the invoice for what was given back.
    await billing.payments.RefundPayment(
        pb.RefundPaymentRequest(
            payment_id=payment.payment_id, amount=eur("2.10"), request_id="refund-1"
        )
    )
    reopened = await billing.get(invoice.invoice_id)
    assert amount(reopened.amount_due) == Decimal("2.1")
    assert reopened.status == ipb.INVOICE_STATUS_PARTIALLY_PAID


async def test_a_declined_card_leaves_the_invoice_open_for_dunning(billing: Billing) -> None:
    customer_id, account_id = await billing.customer()
    await billing.card(customer_id, account_id, "4000000000009987")  # lost card
    invoice = await billing.invoice(account_id, "10.00", "b")

    async def failed() -> Any:
        reply = await billing.payments.ListPayments(pb.ListPaymentsRequest(account_id=account_id))
        done = [p for p in reply.payments if p.state != pb.PAYMENT_STATE_PENDING]
        return done or None

    (payment,) = await wait_for(failed, 60, "the collection")
    assert payment.state == pb.PAYMENT_STATE_FAILED
    assert payment.decline_code == "lost_card"
    assert payment.hard_decline
    assert (await billing.get(invoice.invoice_id)).status == ipb.INVOICE_STATUS_OPEN


async def test_a_manual_payment_settles_oldest_first_and_the_rest_is_credit(
    billing: Billing,
) -> None:
    _, account_id = await billing.customer()  # no method on file: nothing is collected
    first = await billing.invoice(account_id, "10.00", "c1")  # 12.10
    billing.invoicing.clock.advance(timedelta(days=1))
    second = await billing.invoice(account_id, "20.00", "c2")  # 24.20
    await asyncio.sleep(0.5)  # InvoiceIssued consumed: references kept, nothing charged
    reply = await billing.payments.CreatePayment(
        pb.CreatePaymentRequest(
            account_id=account_id,
            amount=eur("40.00"),
            channel=pb.CHANNEL_CASH_DESK,
            external_reference="desk-receipt-1",
            request_id="desk-1",
        )
    )
    payment = reply.payment
    assert payment.state == pb.PAYMENT_STATE_SUCCEEDED
    assert [(a.invoice_id, amount(a.amount)) for a in payment.allocations] == [
        (first.invoice_id, Decimal("12.1")),
        (second.invoice_id, Decimal("24.2")),
    ]
    assert amount(payment.credit) == Decimal("3.7")
    assert (await billing.get(first.invoice_id)).status == ipb.INVOICE_STATUS_PAID
    assert (await billing.get(second.invoice_id)).status == ipb.INVOICE_STATUS_PAID
    credit = await billing.invoicing.stub.GetAccountCredit(
        ipb.GetAccountCreditRequest(account_id=account_id)
    )
    assert amount(credit.balance) == Decimal("3.7")


async def test_record_payments_allocates_a_batch_as_record_payment_would(
    billing: Billing,
) -> None:
    _, account_id = await billing.customer()
    first = await billing.invoice(account_id, "10.00", "batch-1")
    second = await billing.invoice(account_id, "20.00", "batch-2")
    client = GrpcInvoicing(f"127.0.0.1:{billing.invoicing.service.port}", TEST_TOKEN)
    batch = [
        PaymentToAllocate("pay_b1", "pay_b1", ((first.invoice_id, Money.of("12.1", "EUR")),)),
        PaymentToAllocate("pay_b2", "pay_b2", ((second.invoice_id, Money.of("5", "EUR")),)),
        PaymentToAllocate("pay_b3", "pay_b3", ((new_id("inv"), Money.of("1", "EUR")),)),
    ]
    try:
        answers = await asyncio.to_thread(client.record_payments, batch)
        assert answers[:2] == [None, None]
        assert "NOT_FOUND" in str(answers[2])  # refused alone; the others are recorded
        # Sent again whole (a retry after a lost answer): each request id counts once.
        again = await asyncio.to_thread(client.record_payments, batch)
        assert again[:2] == [None, None]
    finally:
        client.close()
    assert (await billing.get(first.invoice_id)).status == ipb.INVOICE_STATUS_PAID
    half = await billing.get(second.invoice_id)
    assert half.status == ipb.INVOICE_STATUS_PARTIALLY_PAID
    assert amount(half.amount_due) == Decimal("19.2")
    # Bad input refuses the whole request, naming the item's field.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await billing.invoicing.stub.RecordPayments(
            ipb.RecordPaymentsRequest(
                payments=[
                    ipb.RecordPaymentRequest(
                        invoice_id=second.invoice_id,
                        payment_id="pay_b4",
                        amount=eur("-1"),
                        request_id="pay_b4",
                    )
                ]
            )
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "payments[0].amount" in details_of(refused.value).fields
    assert amount((await billing.get(second.invoice_id)).amount_due) == Decimal("19.2")
