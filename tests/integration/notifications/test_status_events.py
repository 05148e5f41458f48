"""MessageStatusChanged: every status an e-mail or SMS takes reaches the bus, in order."""

from __future__ import annotations

from typing import Any

from services.common.events import EventEnvelope, stream_for
from services.notifications.domain.model import Channel, MessageStatus
from tests.integration.notifications.conftest import Notifications, wait_for
from tests.integration.notifications.test_messages import invoice_issued


async def _status_events(n: Notifications) -> list[dict[str, Any]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await n.redis.xrange(  # type: ignore[assignment]
        stream_for("notifications")
    )
    envelopes = [EventEnvelope.from_json(fields[b"envelope"]) for _, fields in entries]
    assert all(e.event_type == "MessageStatusChanged" for e in envelopes)
    assert all(e.aggregate_id == e.payload["message_id"] for e in envelopes)
    return [e.payload for e in envelopes]


async def _statuses(n: Notifications, count: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        found = await _status_events(n)
        return found if len(found) >= count else None

    found: list[dict[str, Any]] = await wait_for(enough, 10, f"{count} status events")
    return found


async def test_an_invoice_email_announces_queued_then_sent(notifications: Notifications) -> None:
    n = notifications
    await n.customer()
    source_id = await n.publish("invoicing", "InvoiceIssued", invoice_issued())
    [message] = await n.wait_messages(1)
    await n.dispatch()
    queued, sent = await _statuses(n, 2)
    assert queued == {
        "message_id": message.message_id,
        "source_event_id": source_id,
        "source_event_type": "InvoiceIssued",
        "channel": "EMAIL",
        "recipient": "a***@example.com",  # masked: addresses stay in notifications
        "customer_id": "cus_ada",
        "invoice_id": "inv_001",
        "template": "invoice_issued",
        "status": "QUEUED",
        "attempts": 0,
        "last_error": "",
        "status_version": 1,
        "created_at": n.clock.now().isoformat(),
        "changed_at": n.clock.now().isoformat(),
    }
    assert (sent["status"], sent["status_version"], sent["attempts"]) == ("SENT", 2, 1)
    assert len(await _status_events(n)) == 2  # nothing more: one event per change


async def test_an_sms_is_announced_delivered_from_its_receipt(notifications: Notifications) -> None:
    n = notifications
    await n.customer()
    await n.publish("charging", "BalanceLow", {
        "account_id": "acc_ada", "balance": {"amount": "1.50", "currency": "EUR"},
        "threshold": {"amount": "5.00", "currency": "EUR"},
    })  # fmt: skip
    await n.wait_messages(2)
    await n.dispatch()

    async def delivered() -> bool:
        await n.service.app.dispatcher.poll_receipts()
        return [m.status for m in n.all_messages() if m.channel is Channel.SMS] == [
            MessageStatus.DELIVERED
        ]

    await wait_for(delivered, 10, "the SMS delivery receipt")
    found = await _statuses(n, 5)
    sms = [(e["status"], e["status_version"]) for e in found if e["channel"] == "SMS"]
    assert sms == [("QUEUED", 1), ("SENT", 2), ("DELIVERED", 3)]
    assert [e["invoice_id"] for e in found] == [""] * len(found)


async def test_a_webhook_delivery_is_not_announced(notifications: Notifications) -> None:
    n = notifications
    from reckon.notifications.v1 import notifications_pb2 as pb

    await n.stub.CreateWebhookEndpoint(
        pb.CreateWebhookEndpointRequest(
            endpoint=pb.WebhookEndpoint(url=n.receiver.url, owner_email="ops@example.com")
        )
    )
    await n.publish("invoicing", "InvoiceVoided", {"invoice_id": "inv_9", "reason": "x"})
    await n.wait_messages(1)
    await n.dispatch()
    assert await _status_events(n) == []
