"""Notifications with the real invoicing service, both in-process on one Redis: an invoice
finalised in invoicing is e-mailed at once, in the customer's language, with the PDF that
invoicing's GetInvoiceDocument serves attached byte for byte."""

from __future__ import annotations

import contextlib
import email
import email.policy
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from google.type import money_pb2

from reckon.invoicing.v1 import invoicing_pb2 as ipb
from services.common.config import load_settings
from services.common.db import make_engine
from services.notifications.adapters.documents import GrpcInvoiceDocuments
from services.notifications.adapters.smtp import SmtpEmailSender
from services.notifications.bootstrap import Channels, RunningNotifications, running_service
from services.notifications.config import NotificationsSettings
from services.notifications.domain.model import Channel, MessageStatus
from services.notifications.service_layer import handlers
from suite.mail_catcher import MailCatcher
from tests.conftest import TEST_TOKEN, TestDatabase
from tests.integration.invoicing.conftest import World
from tests.integration.notifications.conftest import wait_for

pytestmark = pytest.mark.slow


def eur(amount: str) -> money_pb2.Money:
    value = Decimal(amount)
    units = int(value)
    return money_pb2.Money(
        currency_code="EUR", units=units, nanos=int((value - units) * 1_000_000_000)
    )


@contextlib.asynccontextmanager
async def notifications_for(
    world: World, database: TestDatabase, tmp_path: Path
) -> AsyncIterator[tuple[RunningNotifications, MailCatcher]]:
    """Notifications beside a running invoicing (and whatever else shares its Redis)."""
    catcher = MailCatcher(tmp_path / "mail").start()
    settings = load_settings(
        NotificationsSettings,
        listen="127.0.0.1:0",
        database_url=database.url.replace("test.db", "notifications.db"),
        database_schema=f"{database.schema}_ntf" if database.schema else None,
    )
    channels = Channels(
        email=SmtpEmailSender(catcher.url, settings.mail_from),
        documents=GrpcInvoiceDocuments(f"127.0.0.1:{world.service.port}", TEST_TOKEN),
    )
    try:
        async with running_service(
            settings, clock=world.clock, channels=channels, dispatch=False
        ) as service:
            yield service, catcher
    finally:
        catcher.stop()
        if database.schema:
            drop = make_engine(database.url, None, instrument=False)
            with drop.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{database.schema}_ntf" CASCADE')
            drop.dispose()


@pytest.fixture
async def notifications_beside(
    world: World, database: TestDatabase, tmp_path: Path, redis_client: aioredis.Redis
) -> AsyncIterator[tuple[RunningNotifications, MailCatcher]]:
    async with notifications_for(world, database, tmp_path) as running:
        yield running


async def test_an_issued_invoice_is_emailed_with_invoicings_pdf(
    world: World, notifications_beside: tuple[RunningNotifications, MailCatcher]
) -> None:
    service, catcher = notifications_beside
    customer_id, account_id = await world.account()  # CustomerCreated (nl), AccountCreated
    await world.processed(2)
    handlers.set_preference(  # this customer wants the e-invoice (UBL) beside the PDF
        service.app.uow_factory(),
        handlers.PreferenceChange(
            customer_id, Channel.EMAIL, False, False, False, "", None, None, wants_einvoice=True
        ),
    )
    await world.stub.AddPendingItem(
        ipb.AddPendingItemRequest(
            account_id=account_id, description="Conference call", amount=eur("100.00"),
            request_id="item-1",
        )
    )  # fmt: skip
    reply = await world.stub.CreateImmediateInvoice(
        ipb.CreateImmediateInvoiceRequest(account_id=account_id, finalize=True, request_id="i-1")
    )
    invoice = reply.invoice

    def planned() -> list[object]:
        with service.app.uow_factory() as uow:
            return [
                m
                for m in uow.messages.list(invoice_id=invoice.invoice_id, limit=10)
                if m.channel is Channel.EMAIL
            ]

    await wait_for(planned, 20, "the invoice e-mail planned")
    assert await service.app.dispatcher.dispatch_once() == 1
    [path] = catcher.messages()
    mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert mail["Subject"] == f"Factuur {invoice.number} van Reckon"
    [pdf] = [p for p in mail.walk() if p.get_content_type() == "application/pdf"]
    document = await world.stub.GetInvoiceDocument(
        ipb.GetInvoiceDocumentRequest(invoice_id=invoice.invoice_id, format=ipb.DOCUMENT_FORMAT_PDF)
    )
    assert pdf.get_filename() == document.file_name
    assert pdf.get_payload(decode=True) == document.content
    [xml] = [p for p in mail.walk() if p.get_content_type() == "application/xml"]
    ubl = await world.stub.GetInvoiceDocument(
        ipb.GetInvoiceDocumentRequest(invoice_id=invoice.invoice_id, format=ipb.DOCUMENT_FORMAT_UBL)
    )
    assert xml.get_payload(decode=True) == ubl.content
    assert b"urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" in ubl.content
    with service.app.uow_factory() as uow:
        [message] = uow.messages.list(invoice_id=invoice.invoice_id, limit=10)
    assert message.status is MessageStatus.SENT
