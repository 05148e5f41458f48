"""Dunning's DunningMessageDue becomes e-mail and SMS by the rule table, once per recipient."""

from __future__ import annotations

import email
import email.policy
from typing import Any

import pytest

from services.notifications.domain.model import Channel, MessageStatus
from services.notifications.domain.sms import decode_part
from tests.integration.notifications.conftest import Notifications, wait_for
from tests.integration.notifications.test_messages import parsed_mail


def message_due(channel: str, template: str, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "account_id": "acc_ada",
        "customer_id": "cus_ada",
        "episode_id": "dep_1",
        "level": 1,
        "level_name": "reminder",
        "channel": channel,
        "template": template,
        "amount_overdue": {"amount": "121.00", "currency": "EUR"},
        "days_past_due": 1,
        "oldest_due_date": "2027-01-14",
        "message_key": f"dep_1:1:{template}",
    }
    payload.update(extra)
    return payload


async def _consumed(n: Notifications, event_id: str) -> bool:
    with n.service.app.uow_factory() as uow:
        return not uow.mark_processed("notifications", event_id)


async def test_a_reminder_level_sends_one_email_and_a_redelivery_nothing_more(
    notifications: Notifications,
) -> None:
    n = notifications
    await n.customer()
    event_id = await n.publish(
        "dunning", "DunningMessageDue", message_due("EMAIL", "dunning_reminder")
    )
    # The same event again (a consumer restart, a stream replay after a Redis loss).
    await n.publish(
        "dunning", "DunningMessageDue", message_due("EMAIL", "dunning_reminder"), event_id=event_id
    )
    [message] = await n.wait_messages(1)
    await wait_for(lambda: _consumed(n, event_id), 10, "the event consumed")
    assert (message.channel, message.recipient, message.template) == (
        Channel.EMAIL,
        "ada@example.com",
        "dunning_reminder",
    )
    assert await n.dispatch() == 1
    assert await n.dispatch() == 0
    [mail] = parsed_mail(n)
    assert mail["Subject"] == "Payment reminder: 121.00 EUR is overdue"
    body = mail.get_body(("plain",))
    assert body is not None
    assert "overdue for 1 days" in body.get_content()
    assert [m.status for m in n.all_messages()] == [MessageStatus.SENT]


async def test_an_sms_level_sends_one_sms_in_the_customers_language(
    notifications: Notifications,
) -> None:
    n = notifications
    await n.customer(language="nl")
    await n.publish(
        "dunning",
        "DunningMessageDue",
        message_due("SMS", "dunning_reminder_sms", level=2, days_past_due=7),
    )
    [message] = await n.wait_messages(1)
    assert (message.channel, message.recipient, message.language) == (
        Channel.SMS,
        "+31612345678",
        "nl",
    )
    await n.dispatch()
    text = "".join(
        decode_part(p.short_message, p.data_coding, p.esm_class)[0] for p in n.smsc.received
    )
    assert text == "Reckon: 121.00 EUR staat al 7 dagen open. Betaal a.u.b. nu."


@pytest.mark.parametrize(
    ("language", "subject"),
    [
        ("en", "Your service is suspended: 121.00 EUR overdue"),
        ("nl", "Uw dienst is opgeschort: 121.00 EUR staat open"),
        ("es", "Su servicio está suspendido: 121.00 EUR vencido"),
        ("ru", "Обслуживание приостановлено: просрочено 121.00 EUR"),
        ("fr", "Votre service est suspendu : 121.00 EUR en retard"),
    ],
)
async def test_each_language_renders_the_suspension_email(
    notifications: Notifications, language: str, subject: str
) -> None:
    n = notifications
    await n.customer(language=language)
    await n.publish(
        "dunning",
        "DunningMessageDue",
        message_due("EMAIL", "dunning_suspended", level=3, days_past_due=14),
    )
    await n.wait_messages(1)
    await n.dispatch()
    [path] = n.catcher.messages()
    mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert mail["Subject"] == subject
