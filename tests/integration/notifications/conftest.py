"""The notifications service in-process per test, on SQLite and PostgreSQL, with real
channels: the mail catcher (SMTP), an SMSC simulator (SMPP) and a webhook receiver (HTTP).

Tests drive the dispatcher themselves (``dispatch=False``) on a ``ManualClock``, so
retry schedules are checked without sleeping; the event consumer runs as in production.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

from reckon.notifications.v1 import notifications_pb2_grpc
from services.common.clock import ManualClock
from services.common.config import load_settings
from services.common.events import EventEnvelope, stream_for
from services.common.grpc_client import open_channel
from services.common.ids import new_id
from services.notifications.adapters.smpp import SmppGateway
from services.notifications.adapters.smtp import SmtpEmailSender
from services.notifications.adapters.webhook_http import HttpWebhookSender
from services.notifications.bootstrap import Channels, RunningNotifications, running_service
from services.notifications.config import NotificationsSettings
from services.notifications.domain.model import Message
from services.notifications.service_layer.ports import Attachment
from suite.mail_catcher import MailCatcher
from suite.smsc import SmscSimulator
from tests.conftest import TEST_TOKEN, TestDatabase
from tests.integration.invoicing.conftest import start_time, world  # noqa: F401 - fixtures
from tests.integration.notifications.receiver import WebhookReceiver
from tests.integration.notifications.test_channels import sample_pdf

T = TypeVar("T")


class InvoiceDocumentsStandIn:
    """Invoicing's GetInvoiceDocument for these tests: the bytes a real run would serve."""

    def __init__(self) -> None:
        self.pdf = sample_pdf()
        self.xml = (
            b'<?xml version="1.0"?>'
            b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"/>'
        )
        self.asked: list[tuple[str, str]] = []

    async def fetch(self, invoice_id: str, kind: str) -> Attachment:
        self.asked.append((invoice_id, kind))
        if kind == "invoice_pdf":
            return Attachment(f"{invoice_id}.pdf", "application/pdf", self.pdf)
        return Attachment(f"{invoice_id}.xml", "application/xml", self.xml)


@dataclass
class Notifications:
    service: RunningNotifications
    stub: Any
    redis: aioredis.Redis
    clock: ManualClock
    catcher: MailCatcher
    smsc: SmscSimulator
    receiver: WebhookReceiver
    documents: InvoiceDocumentsStandIn

    async def publish(
        self, source: str, event_type: str, payload: dict[str, Any], event_id: str = ""
    ) -> str:
        envelope = EventEnvelope(
            event_id=event_id or new_id("evt"),
            event_type=event_type,
            source=source,
            aggregate_id=str(payload.get("customer_id") or payload.get("account_id") or ""),
            occurred_at=self.clock.now(),
            payload=payload,
        )
        await self.redis.xadd(stream_for(source), {"envelope": envelope.to_json()})
        return envelope.event_id

    def messages(self, **filters: str) -> list[Message]:
        with self.service.app.uow_factory() as uow:
            return list(uow.messages.list(limit=1000, **filters))

    def all_messages(self) -> list[Message]:
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from services.notifications.adapters.orm import messages, start_mappers

        start_mappers()
        with Session(self.service.app.engine) as session:
            return list(session.scalars(select(Message).order_by(messages.c.message_id)))

    async def wait_messages(self, count: int, within: float = 10.0) -> list[Message]:
        found: list[Message] = await wait_for(
            lambda: _at_least(self.all_messages(), count), within, f"{count} messages"
        )
        return found

    async def dispatch(self) -> int:
        return await self.service.app.dispatcher.dispatch_once()

    async def customer(
        self,
        customer_id: str = "cus_ada",
        *,
        email: str = "ada@example.com",
        phone: str = "+31612345678",
        language: str = "en",
        group_id: str = "",
        account_id: str = "acc_ada",
        time_zone: str = "Europe/Amsterdam",
    ) -> None:
        await self.publish("accounts", "CustomerCreated", {
            "customer_id": customer_id, "display_name": "Ada Lovelace", "email": email,
            "phone_number": phone, "language_code": language, "reseller_id": "",
            "group_id": group_id,
        })  # fmt: skip
        await self.publish("accounts", "AccountCreated", {
            "account_id": account_id, "customer_id": customer_id, "time_zone": time_zone,
        })  # fmt: skip


def _at_least(items: list[T], count: int) -> list[T] | None:
    return items if len(items) >= count else None


async def wait_for(check: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def notifications(
    database: TestDatabase,
    service_env: dict[str, str],
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> AsyncIterator[Notifications]:
    clock = ManualClock(datetime(2027, 1, 15, 12, 0, tzinfo=UTC))
    catcher = MailCatcher(tmp_path / "mail").start()
    smsc = await SmscSimulator().start()
    receiver = WebhookReceiver(clock).start()
    documents = InvoiceDocumentsStandIn()
    settings = load_settings(
        NotificationsSettings,
        listen="127.0.0.1:0",
        database_url=database.url,
        database_schema=database.schema,
        claim_idle_ms=1000,
    )
    channels = Channels(
        email=SmtpEmailSender(catcher.url, settings.mail_from, timeout=5),
        sms=SmppGateway(smsc.url, timeout=5),
        webhooks=HttpWebhookSender(timeout=5, own_ports=settings.own_ports),
        documents=documents,
    )
    try:
        async with running_service(
            settings, clock=clock, channels=channels, dispatch=False
        ) as service:
            channel = open_channel(f"127.0.0.1:{service.port}", TEST_TOKEN)
            stub = notifications_pb2_grpc.NotificationsServiceStub(channel)
            yield Notifications(
                service, stub, redis_client, clock, catcher, smsc, receiver, documents
            )
            await channel.close()
    finally:
        catcher.stop()
        receiver.stop()
        await smsc.stop()
