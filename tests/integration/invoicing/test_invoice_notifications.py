"""An invoice's details show its notifications (issue 10 item 6, issue 12 item 5).

Invoicing keeps them from notifications' ``MessageStatusChanged`` events on
``reckon:events:notifications`` (ADR 0063): end to end with the real notifications
service e-mailing the invoice, and the projection's rules (latest status wins, a
redelivered event changes nothing) with events put on the real stream.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, timedelta
from decimal import Decimal
from pathlib import Path

from google.type import money_pb2

from reckon.invoicing.v1 import invoicing_pb2 as pb
from services.common.events import EventEnvelope, stream_for
from services.common.ids import new_id
from services.notifications.domain.events import MessageStatusChanged
from tests.conftest import TestDatabase
from tests.integration.invoicing.conftest import World, wait_for
from tests.integration.notifications.test_with_invoicing import notifications_for


def _eur(amount: str) -> money_pb2.Money:
    value = Decimal(amount)
    units = int(value)
    return money_pb2.Money(
        currency_code="EUR", units=units, nanos=int((value - units) * 1_000_000_000)
    )


async def _issued_invoice(world: World) -> pb.Invoice:
    _, account_id = await world.account()
    await world.processed(2)
    await world.stub.AddPendingItem(
        pb.AddPendingItemRequest(
            account_id=account_id, description="Conference call", amount=_eur("100.00"),
            request_id=new_id("req"),
        )
    )  # fmt: skip
    reply = await world.stub.CreateImmediateInvoice(
        pb.CreateImmediateInvoiceRequest(
            account_id=account_id, finalize=True, request_id=new_id("req")
        )
    )
    invoice: pb.Invoice = reply.invoice
    return invoice


async def _notifications(
    world: World, invoice_id: str, status: str
) -> list[pb.InvoiceNotification]:
    async def probe() -> list[pb.InvoiceNotification] | None:
        reply = await world.stub.GetInvoice(pb.GetInvoiceRequest(invoice_id=invoice_id))
        found = list(reply.notifications)
        return found if found and all(n.status == status for n in found) else None

    result: list[pb.InvoiceNotification] = await wait_for(
        probe, 20, f"the invoice's notifications {status}"
    )
    return result


async def test_the_invoice_email_shows_in_the_invoice_details(
    world: World, database: TestDatabase, tmp_path: Path
) -> None:
    async with notifications_for(world, database, tmp_path) as (notifications, catcher):
        invoice = await _issued_invoice(world)
        # Notifications plans the e-mail from InvoiceIssued: invoicing learns it is QUEUED.
        (queued,) = await _notifications(world, invoice.invoice_id, "QUEUED")
        assert (queued.channel, queued.template, queued.source_event_type) == (
            "EMAIL",
            "invoice_issued",
            "InvoiceIssued",
        )
        assert queued.recipient == "a***@example.com"  # masked: the address stays there
        assert await notifications.app.dispatcher.dispatch_once() == 1
        (sent,) = await _notifications(world, invoice.invoice_id, "SENT")
        assert len(catcher.messages()) == 1
    assert sent.message_id == queued.message_id
    assert (sent.attempts, sent.last_error) == (1, "")
    assert sent.status_time.ToDatetime(UTC) == world.clock.now()


async def test_the_latest_status_wins_and_redelivery_changes_nothing(world: World) -> None:
    invoice = await _issued_invoice(world)
    created = world.clock.now()

    def changed(
        status: str, attempts: int, after: timedelta, error: str = ""
    ) -> MessageStatusChanged:
        return MessageStatusChanged(
            message_id="msg_1",
            invoice_id=invoice.invoice_id,
            customer_id=invoice.customer_id,
            channel="SMS",
            recipient_masked="+316******78",
            template="invoice_sms",
            source_event_type="InvoiceIssued",
            status=status,
            attempts=attempts,
            last_error=error,
            created_at=created,
            status_time=created + after,
        )

    # Out of order: the delivery receipt arrives before the older QUEUED and SENT.
    await world.publish("notifications", changed("DELIVERED", 1, timedelta(minutes=2)))
    await world.publish("notifications", changed("QUEUED", 0, timedelta(0)))
    sent_event_id = await world.publish("notifications", changed("SENT", 1, timedelta(minutes=1)))
    (delivered,) = await _notifications(world, invoice.invoice_id, "DELIVERED")
    assert delivered.status_time.ToDatetime(UTC) == created + timedelta(minutes=2)

    # A later failure replaces it.
    bounced = changed("BOUNCED", 1, timedelta(minutes=5), error="handset unreachable")
    await world.publish("notifications", bounced)
    (latest,) = await _notifications(world, invoice.invoice_id, "BOUNCED")
    assert latest.last_error == "handset unreachable"

    # The SENT event delivered again (here claiming a newer time) is applied once only;
    # a second message published after it shows the consumer got past it.
    again = changed("SENT", 1, timedelta(minutes=10))
    await world.redis.xadd(
        stream_for("notifications"), {"envelope": _envelope(world, sent_event_id, again)}
    )
    second = replace(changed("QUEUED", 0, timedelta(minutes=6)), message_id="msg_2")
    await world.publish("notifications", replace(second, channel="EMAIL"))

    async def both() -> list[pb.InvoiceNotification] | None:
        reply = await world.stub.GetInvoice(pb.GetInvoiceRequest(invoice_id=invoice.invoice_id))
        return list(reply.notifications) if len(reply.notifications) == 2 else None

    first, queued = await wait_for(both, 20, "the second message")
    assert (first.message_id, first.status, first.channel) == ("msg_1", "BOUNCED", "SMS")
    assert (queued.message_id, queued.status, queued.channel) == ("msg_2", "QUEUED", "EMAIL")
    assert first.recipient == "+316******78"


def _envelope(world: World, event_id: str, event: MessageStatusChanged) -> str:
    return EventEnvelope(
        event_id=event_id,
        event_type=event.event_type,
        source="notifications",
        aggregate_id=event.aggregate_id,
        occurred_at=world.clock.now(),
        payload=event.payload(),
    ).to_json()
