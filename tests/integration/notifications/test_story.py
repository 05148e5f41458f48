"""The billing story with every real service but accounts (whose events are published):
invoicing issues the invoice, notifications e-mails it with its PDF, payments charges
the card on file, and the customer gets the payment confirmation naming the invoice;
a declined card brings the "payment failed" e-mail instead."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from reckon.invoicing.v1 import invoicing_pb2 as ipb
from reckon.invoicing.v1 import invoicing_pb2_grpc
from reckon.payments.v1 import payments_pb2_grpc
from services.common.clock import ManualClock
from services.common.config import load_settings
from services.common.db import make_engine
from services.common.grpc_client import open_channel
from services.invoicing.adapters.documents import ModelRenderer
from services.invoicing.bootstrap import running_service as running_invoicing
from services.notifications.bootstrap import RunningNotifications
from services.payments.adapters.sandbox import SandboxProvider
from services.payments.bootstrap import running_service as running_payments
from services.payments.config import PaymentsSettings
from suite.mail_catcher import MailCatcher
from tests.conftest import TEST_TOKEN, TestDatabase
from tests.integration.invoicing.conftest import PriceList, World, invoicing_settings
from tests.integration.notifications.conftest import wait_for
from tests.integration.notifications.test_with_invoicing import notifications_for
from tests.integration.payments.test_with_invoicing import Billing

pytestmark = pytest.mark.slow


@pytest.fixture
async def billing(
    database: TestDatabase, service_env: dict[str, str], redis_client: aioredis.Redis
) -> AsyncIterator[Billing]:
    """Invoicing (rendering documents) and payments (sandbox PSP), as payments' tests run them."""
    clock = ManualClock(datetime(2027, 1, 10, 9, 0, tzinfo=UTC))
    async with running_invoicing(
        invoicing_settings(database), clock=clock, pricer=PriceList(), renderer=ModelRenderer()
    ) as invoicing:
        schema = f"{database.schema}_pay" if database.schema else None
        url = database.url.replace("test.db", "payments.db")
        settings = load_settings(
            PaymentsSettings,
            listen="127.0.0.1:0",
            database_url=url,
            database_schema=schema,
            shutdown_grace_seconds=0,
            worker_interval_seconds=0.2,
            invoicing_addr=f"127.0.0.1:{invoicing.port}",
        )
        sandbox = SandboxProvider(clock)
        async with running_payments(settings, clock=clock, provider=sandbox) as payments:
            engine = make_engine(database.url, database.schema, instrument=False)
            inv_channel = open_channel(f"127.0.0.1:{invoicing.port}", TEST_TOKEN, traced=False)
            pay_channel = open_channel(f"127.0.0.1:{payments.port}", TEST_TOKEN, traced=False)
            try:
                yield Billing(
                    World(
                        service=invoicing,
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


def mails(catcher: MailCatcher) -> list[EmailMessage]:
    found = []
    for path in catcher.messages():
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(parsed)
    return found


async def _send_all(service: RunningNotifications, count: int) -> None:
    sent = 0

    async def more() -> bool:
        nonlocal sent
        sent += await service.app.dispatcher.dispatch_once()
        return sent >= count

    await wait_for(more, 20, f"{count} e-mails sent")


async def test_invoice_emailed_then_paid_by_card_then_confirmed(
    billing: Billing, database: TestDatabase, tmp_path: Path
) -> None:
    async with notifications_for(billing.invoicing, database, tmp_path) as (service, catcher):
        customer_id, account_id = await billing.customer()
        await billing.card(customer_id, account_id, "4242424242424242")
        invoice = await billing.invoice(account_id, "10.00", "story")
        await _send_all(service, 2)  # the invoice, then the payment confirmation
        invoice_mail, confirmation = sorted(
            mails(catcher), key=lambda m: "Betaling" in m["Subject"]
        )
        assert invoice_mail["Subject"] == f"Factuur {invoice.number} van Reckon"  # language nl
        [pdf] = [p for p in invoice_mail.walk() if p.get_content_type() == "application/pdf"]
        document = await billing.invoicing.stub.GetInvoiceDocument(
            ipb.GetInvoiceDocumentRequest(
                invoice_id=invoice.invoice_id, format=ipb.DOCUMENT_FORMAT_PDF
            )
        )
        assert pdf.get_payload(decode=True) == document.content
        assert confirmation["Subject"] == "Betaling ontvangen: 12.10 EUR"
        body = confirmation.get_body(("plain",))
        assert body is not None
        assert f"Factuur {invoice.number} is betaald." in body.get_content()
        with service.app.uow_factory() as uow:
            statuses = {m.template: m.status.value for m in uow.messages.list(
                invoice_id=invoice.invoice_id, limit=10)}  # fmt: skip
        assert statuses == {"invoice_issued": "SENT", "payment_succeeded": "SENT"}


async def test_a_declined_card_brings_the_payment_failed_email(
    billing: Billing, database: TestDatabase, tmp_path: Path
) -> None:
    async with notifications_for(billing.invoicing, database, tmp_path) as (service, catcher):
        customer_id, account_id = await billing.customer()
        await billing.card(customer_id, account_id, "4000000000000002")  # generic decline
        await billing.invoice(account_id, "10.00", "declined")
        await _send_all(service, 2)
        subjects = sorted(m["Subject"] for m in mails(catcher))
        assert subjects[0].startswith("Factuur ")
        assert subjects[1] == "Uw betaling van 12.10 EUR is mislukt"
