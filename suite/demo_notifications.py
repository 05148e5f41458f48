"""The notifications part of ``reckon demo``: what the customer was sent.

A step appended to ``suite.demo.STORY`` (one line there), after the payment steps:
it waits until the story's invoice e-mail and payment confirmation were sent (the
mail catcher of ``reckon up`` received them) and shows every message notifications
made for the story's customer: channel, recipient, template, language and status.
``reckon mail list`` / ``reckon mail show N`` then open them, PDF included; SMS are
shown as the SMSC simulator of ``reckon up`` received them (``reckon sms list``).
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
        f"Sent to {to}. Open them: reckon mail list, reckon mail show N --save-attachments out/;"
        " the SMS: reckon sms list, reckon sms show N"
    )
    return Group(table, hint)


LOW_BALANCE = "0.50"


async def low_balance_alert(story: Story) -> RenderableType:
    """Charging tells when the prepaid balance falls below the account's threshold."""
    from google.type import money_pb2

    from reckon.charging.v1 import charging_pb2
    from suite.demo_story import request_id

    account = story.fact("prepaid_account")
    current = await story.charging.GetAccountPolicy(
        charging_pb2.GetAccountPolicyRequest(account_id=account.account_id),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    policy = current.policy
    units, _, cents = LOW_BALANCE.partition(".")
    policy.low_balance_threshold.CopyFrom(
        money_pb2.Money(currency_code="EUR", units=int(units), nanos=int(cents.ljust(9, "0")))
    )
    await story.charging.SetAccountPolicy(
        charging_pb2.SetAccountPolicyRequest(policy=policy, request_id=request_id()),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return f"    {account.account_id}: BalanceLow when the balance falls below {LOW_BALANCE} EUR"


async def low_balance_notice(story: Story) -> RenderableType:
    """The BalanceLow the call caused: an e-mail at the mail catcher, an SMS at the SMSC."""
    from pathlib import Path

    from suite.demo_billing import _mail_text, _mail_to

    customer = story.fact("customer")
    deadline = time.monotonic() + WAIT_SECONDS
    low: list[Any] = []
    while time.monotonic() < deadline:
        messages = await _messages(story, customer.customer_id)
        low = [m for m in messages if m.event_type == "BalanceLow"]
        if any(
            m.channel == notifications_pb2.CHANNEL_EMAIL
            and m.status == notifications_pb2.MESSAGE_STATUS_SENT
            for m in low
        ):
            break
        await asyncio.sleep(0.3)
    if not low:
        from suite.demo_story import StoryError

        raise StoryError("no BalanceLow message was made for the prepaid call")
    lines: list[RenderableType] = []
    for m in low:
        status = notifications_pb2.MessageStatus.Name(m.status).removeprefix("MESSAGE_STATUS_")
        channel = notifications_pb2.Channel.Name(m.channel).removeprefix("CHANNEL_")
        lines.append(f"    {channel} to {m.recipient}: {m.template}, {status}")
    data_dir = Path(story.fact("suite").data_dir)
    mails = [
        (path, message)
        for path, message in _mail_to(data_dir, customer.email)
        if "balance" in str(message.get("Subject", "")).lower()
    ]
    lines.extend(_mail_text(path, message) for path, message in mails[-1:])
    lines.append(await sms_as_arrived(story, "BalanceLow"))
    return Group(*lines)


async def sms_as_arrived(story: Story, event_type: str) -> RenderableType:
    """The story customer's SMS made from ``event_type``, as the SMSC simulator received
    it (``reckon up`` starts one; its SMS are in DATA_DIR/sms), once notifications sent it,
    with the status the SMSC's delivery receipt gave it."""
    from pathlib import Path

    from suite.sms_cli import received_sms

    customer = story.fact("customer")
    deadline = time.monotonic() + WAIT_SECONDS
    done = (notifications_pb2.MESSAGE_STATUS_SENT, notifications_pb2.MESSAGE_STATUS_DELIVERED)
    sms: list[Any] = []
    while time.monotonic() < deadline:
        sms = [
            m
            for m in await _messages(story, customer.customer_id)
            if m.event_type == event_type and m.channel == notifications_pb2.CHANNEL_SMS
        ]
        if sms and all(m.status == notifications_pb2.MESSAGE_STATUS_DELIVERED for m in sms):
            break
        await asyncio.sleep(0.3)
    if not sms:
        return Text(f"    no SMS was made for {event_type} (the customer has no phone number?)")
    message = sms[-1]
    status = notifications_pb2.MessageStatus.Name(message.status).removeprefix("MESSAGE_STATUS_")
    if message.status not in done:
        return Text(
            f"    SMS to {message.recipient}: {status} {message.last_error[:60]} "
            "(no SMSC in this suite? reckon up starts one unless SMPP_URL is set)"
        )
    number = message.recipient.removeprefix("+")
    arrived = [
        s for s in received_sms(Path(story.fact("suite").data_dir)) if s.destination == number
    ]
    if not arrived:
        return Text(f"    SMS to {message.recipient}: {status} (at an SMSC outside this suite)")
    last = arrived[-1]
    head = Table.grid(padding=(0, 1))
    head.add_row(
        "[dim]SMSC[/]", f"{last.received_at} UTC, {last.encoding}, {len(last.parts)} part(s)"
    )
    head.add_row("[dim]From[/]", last.source)
    head.add_row("[dim]To[/]", f"+{last.destination}")
    head.add_row(
        "[dim]status[/]", f"{status} (delivery receipt)" if status == "DELIVERED" else status
    )
    return Group(head, Text(f"      {last.text}", style="italic"), Text("      reckon sms list"))


NOTIFICATION_STEPS: list[
    tuple[str, tuple[str, ...], Callable[[Story], Awaitable[RenderableType]]]
] = [
    (
        "The low-balance notice the call caused (e-mail and SMS as they arrived)",
        ("accounts", "charging", "notifications"),
        low_balance_notice,
    ),
    (
        "What the customer was sent (e-mails at the mail catcher)",
        ("accounts", "invoicing", "payments", "notifications"),
        customer_notified,
    ),
]
