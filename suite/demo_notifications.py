"""The notifications part of ``reckon demo``: what the customer was sent.

A step appended to ``suite.demo.STORY`` (one line there), after the payment steps:
it waits until the story's invoice e-mail and payment confirmation were sent (the
mail catcher of ``reckon up`` received them) and shows every message notifications
made for the story's customer: channel, recipient, template, language and status.
``reckon mail list`` / ``reckon mail show N`` then open them, PDF included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from reckon.notifications.v1 import notifications_pb2, notifications_pb2_grpc

if TYPE_CHECKING:
    from suite.demo_story import Story

CALL_TIMEOUT_SECONDS = 10.0
WAIT_SECONDS = 30.0
_WANTED = {"invoice_issued", "payment_succeeded"}


async def _messages(story: Story, customer_id: str) -> list[Any]:
    stub = notifications_pb2_grpc.NotificationsServiceStub(story.channels["notifications"])
    reply = await stub.ListMessages(
        notifications_pb2.ListMessagesRequest(customer_id=customer_id, page_size=100),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return list(reply.messages)


async def customer_notified(story: Story) -> RenderableType:
    customer = story.fact("customer")
    deadline = time.monotonic() + WAIT_SECONDS
    messages: list[Any] = []
    while time.monotonic() < deadline:
        messages = await _messages(story, customer.customer_id)
        sent = {
            m.template
            for m in messages
            if m.status in (notifications_pb2.MESSAGE_STATUS_SENT,
                            notifications_pb2.MESSAGE_STATUS_DELIVERED)
        }  # fmt: skip
        if sent >= _WANTED:
            break
        await asyncio.sleep(0.5)
    table = Table("event", "channel", "template", "lang", "status", "invoice")
    for m in messages:
        status = notifications_pb2.MessageStatus.Name(m.status).removeprefix("MESSAGE_STATUS_")
        table.add_row(
            m.event_type,
            notifications_pb2.Channel.Name(m.channel).removeprefix("CHANNEL_"),
            m.template,
            m.language,
            f"{status} ({m.last_error[:40]})" if m.last_error else status,
            m.invoice_id,
        )
    to = messages[0].recipient if messages else "nobody"
    hint = Text(
        f"Sent to {to}. Open them: reckon mail list, reckon mail show N --save-attachments out/"
    )
    return Group(table, hint)


NOTIFICATION_STEPS: list[
    tuple[str, tuple[str, ...], Callable[[Story], Awaitable[RenderableType]]]
] = [
    (
        "What the customer was sent (e-mails at the mail catcher)",
        ("accounts", "invoicing", "payments", "notifications"),
        customer_notified,
    ),
]
