"""Events in, messages out: the rules, exactly once per recipient, retries on the test clock."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from typing import Any

from services.common.events import EventEnvelope, stream_for
from services.notifications.domain.model import Channel, MessageStatus
from services.notifications.domain.sms import decode_part
from tests.integration.notifications.conftest import Notifications, wait_for


def invoice_issued(**extra: Any) -> dict[str, Any]:
    payload = {
        "invoice_id": "inv_001",
        "number": "INV-2027-000001",
        "series": "INV-2027",
        "account_id": "acc_ada",
        "customer_id": "cus_ada",
        "reseller_id": "",
        "group_id": "",
        "currency": "EUR",
        "status": "OPEN",
        "total": {"amount": "121.00", "currency": "EUR"},
        "amount_paid": {"amount": "0.00", "currency": "EUR"},
        "amount_due": {"amount": "121.00", "currency": "EUR"},
        "issue_date": "2027-01-15",
        "due_date": "2027-01-29",
        "language_code": "en",
        "bill_run_id": "",
        "resend": False,
    }
    payload.update(extra)
    return payload


def parsed_mail(n: Notifications) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for path in n.catcher.messages()
    ]


async def test_invoice_issued_is_emailed_with_its_pdf(notifications: Notifications) -> None:
    n = notifications
    await n.customer()
    await n.publish("invoicing", "InvoiceIssued", invoice_issued())
    [message] = await n.wait_messages(1)
    assert (message.channel, message.recipient, message.status) == (
        Channel.EMAIL,
        "ada@example.com",
        MessageStatus.QUEUED,
    )
    assert await n.dispatch() == 1
    [mail] = parsed_mail(n)
    assert mail["Subject"] == "Invoice INV-2027-000001 from Reckon"
    assert mail["Message-ID"].strip().startswith(f"<{message.event_id}.")
    [pdf] = [p for p in mail.walk() if p.get_content_type() == "application/pdf"]
    assert pdf.get_payload(decode=True) == n.documents.pdf
    assert n.documents.asked == [("inv_001", "invoice_pdf")]  # no e-invoice unless wanted
    [sent] = n.messages(invoice_id="inv_001")
    assert sent.status is MessageStatus.SENT
    assert sent.provider_ref == mail["Message-ID"].strip()


async def test_an_event_delivered_twice_sends_one_message(notifications: Notifications) -> None:
    n = notifications
    await n.customer()
    event_id = await n.publish("invoicing", "InvoiceIssued", invoice_issued())
    # The same event again: a stream replay after a Redis loss, or a consumer restart.
    await n.publish("invoicing", "InvoiceIssued", invoice_issued(), event_id=event_id)
    await n.publish("invoicing", "InvoiceIssued", invoice_issued(number="X"), event_id="evt_other")
    await n.wait_messages(2)
    await wait_for(lambda: _consumed(n), 10, "every event consumed")
    assert await n.dispatch() == 2
    assert await n.dispatch() == 0
    ids = [m["Message-ID"] for m in parsed_mail(n)]
    assert len(ids) == 2
    assert len(set(ids)) == 2
    assert sorted(m.event_id for m in n.all_messages()) == sorted([event_id, "evt_other"])


async def _consumed(n: Notifications) -> bool:
    pending: Any = await n.redis.xpending("reckon:events:invoicing", "notifications")
    info: Any = await n.redis.xinfo_groups("reckon:events:invoicing")
    return bool(pending["pending"] == 0 and info and info[0]["entries-read"] == 3)


async def test_smtp_down_for_a_while_then_back_sends_each_message_once(
    notifications: Notifications,
) -> None:
    n = notifications
    await n.customer()
    port = n.catcher.port
    n.catcher.stop()
    for number in range(5):
        await n.publish("invoicing", "InvoiceIssued", invoice_issued(invoice_id=f"inv_{number}"))
    await n.wait_messages(5)
    assert await n.dispatch() == 5
    queued = n.all_messages()
    assert {m.status for m in queued} == {MessageStatus.QUEUED}
    assert all("SMTP server unavailable" in m.last_error for m in queued)
    assert {m.next_attempt_at - n.clock.now() for m in queued} == {timedelta(seconds=10)}
    assert await n.dispatch() == 0  # not due yet: nothing is attempted early
    n.clock.advance(timedelta(seconds=10))
    assert await n.dispatch() == 5  # still down: second delay
    assert {m.next_attempt_at - n.clock.now() for m in n.all_messages()} == {timedelta(seconds=30)}
    n.catcher.port = port
    n.catcher.start()
    n.clock.advance(timedelta(seconds=30))
    assert await n.dispatch() == 5
    n.clock.advance(timedelta(hours=1))
    assert await n.dispatch() == 0
    mails = parsed_mail(n)
    assert len(mails) == 5
    assert len({m["Message-ID"] for m in mails}) == 5
    assert {m.status for m in n.all_messages()} == {MessageStatus.SENT}
    assert {m.attempts for m in n.all_messages()} == {3}


async def test_payment_confirmation_and_sms_only_where_asked(notifications: Notifications) -> None:
    n = notifications
    await n.customer()
    await n.customer("cus_bob", email="bob@example.com", phone="+31687654321", account_id="acc_b")
    from reckon.notifications.v1 import notifications_pb2 as pb

    await n.stub.SetPreference(
        pb.SetPreferenceRequest(
            preference=pb.Preference(customer_id="cus_bob", channel=pb.CHANNEL_SMS, opted_in=True)
        )
    )
    await n.publish("invoicing", "InvoiceIssued", invoice_issued(invoice_id="inv_1"))
    await n.wait_messages(1)
    await n.dispatch()
    for path in n.catcher.messages():
        path.unlink()
    for customer in ("cus_ada", "cus_bob"):  # payments' PaymentSucceeded payload
        await n.publish("payments", "PaymentSucceeded", {
            "payment_id": f"pay_{customer}", "account_id": "acc_x", "customer_id": customer,
            "amount": {"amount": "121.00", "currency": "EUR"}, "channel": "CARD",
            "purpose": "INVOICE", "provider_reference": "ch_1", "invoice_ids": ["inv_1"],
            "settled_at": None,
        })  # fmt: skip
    await n.wait_messages(4)
    await n.dispatch()
    subjects = sorted(m["Subject"] for m in parsed_mail(n))
    assert subjects == ["Payment received: 121.00 EUR"] * 2
    body = parsed_mail(n)[0].get_body(("plain",))
    assert body is not None
    assert "Invoice INV-2027-000001 is paid." in body.get_content()
    assert [m.invoice_id for m in n.messages(customer_id="cus_bob")] == ["inv_1", "inv_1"]
    [sms] = n.smsc.received
    assert sms.destination_addr == "31687654321"
    assert sms.short_message == b"Reckon: 121.00 EUR was charged. Thank you."


async def test_low_balance_sms_in_russian_is_delivered_per_receipt(
    notifications: Notifications,
) -> None:
    n = notifications
    await n.customer(language="ru", phone="+79161234567")
    await n.publish("charging", "BalanceLow", {
        "account_id": "acc_ada", "balance": {"amount": "1.50", "currency": "EUR"},
        "threshold": {"amount": "5.00", "currency": "EUR"},
    })  # fmt: skip
    await n.wait_messages(2)  # e-mail and SMS
    await n.dispatch()
    parts = n.smsc.received
    assert [p.data_coding for p in parts] == [8] * len(parts)
    text = "".join(decode_part(p.short_message, p.data_coding, p.esm_class)[0] for p in parts)
    assert text == "Reckon: ваш баланс 1.50 EUR, ниже 5.00 EUR. Пожалуйста, пополните счёт."
    [mail] = parsed_mail(n)
    assert mail["Subject"] == "Низкий баланс: 1.50 EUR"

    async def delivered() -> bool:
        await n.service.app.dispatcher.poll_receipts()
        return [
            m.status for m in n.messages(customer_id="cus_ada") if m.channel is Channel.SMS
        ] == [MessageStatus.DELIVERED]

    await wait_for(delivered, 10, "the SMS delivery receipt")


async def test_sms_waits_for_the_end_of_quiet_hours(notifications: Notifications) -> None:
    n = notifications
    from reckon.notifications.v1 import notifications_pb2 as pb

    # 12:00 UTC is 13:00 in Amsterdam: inside 12:30-14:00 local.
    await n.stub.SetPreference(
        pb.SetPreferenceRequest(
            preference=pb.Preference(
                customer_id="cus_ada",
                channel=pb.CHANNEL_SMS,
                quiet_start="12:30",
                quiet_end="14:00",
            )
        )
    )
    await n.customer()
    await n.publish("charging", "BalanceLow", {
        "account_id": "acc_ada", "balance": {"amount": "1.50", "currency": "EUR"},
        "threshold": {"amount": "5.00", "currency": "EUR"},
    })  # fmt: skip
    messages = await n.wait_messages(2)
    [sms] = [m for m in messages if m.channel is Channel.SMS]
    assert sms.next_attempt_at == n.clock.now() + timedelta(hours=1)
    await n.dispatch()
    assert n.smsc.received == []
    n.clock.advance(timedelta(hours=1))
    await n.dispatch()
    assert len(n.smsc.received) == 1


async def test_events_older_than_three_days_send_nothing(notifications: Notifications) -> None:
    # A consumer group created on a long stream reads its history: no old invoice again.
    n = notifications
    await n.customer()
    old = EventEnvelope(
        "evt_old", "InvoiceIssued", "invoicing", "inv_old",
        n.clock.now() - timedelta(days=3, minutes=1), invoice_issued(invoice_id="inv_old"),
    )  # fmt: skip
    await n.redis.xadd(stream_for("invoicing"), {"envelope": old.to_json()})
    fresh = await n.publish("invoicing", "InvoiceIssued", invoice_issued())
    [message] = await n.wait_messages(1)
    await wait_for(lambda: _consumed_two(n), 10, "both events consumed")
    assert [m.event_id for m in n.all_messages()] == [fresh]
    assert message.invoice_id == "inv_001"


async def _consumed_two(n: Notifications) -> bool:
    info: Any = await n.redis.xinfo_groups("reckon:events:invoicing")
    pending: Any = await n.redis.xpending("reckon:events:invoicing", "notifications")
    return bool(info and info[0]["entries-read"] == 2 and pending["pending"] == 0)
