"""Bad input: malformed addresses and numbers, templates that are unknown or fail to render
(the message fails with the reason, the event is not lost, a retry after the fix sends it),
and preferences: opt-outs, marketing, language."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from reckon.notifications.v1 import notifications_pb2 as pb
from services.common.events import EventEnvelope
from services.notifications.adapters.templates import DEFAULT_DIR
from services.notifications.domain.model import Category, Channel, MessageStatus
from services.notifications.domain.rules import Rule, RuleBook
from services.notifications.service_layer import handlers
from tests.integration.notifications.conftest import Notifications, wait_for
from tests.integration.notifications.test_messages import invoice_issued, parsed_mail
from tests.integration.notifications.test_webhooks import violations

LOW = {
    "account_id": "acc_ada",
    "balance": {"amount": "1.50", "currency": "EUR"},
    "threshold": {"amount": "5.00", "currency": "EUR"},
}


async def test_malformed_contact_data_fails_the_message_naming_the_field(
    notifications: Notifications,
) -> None:
    n = notifications
    await n.customer(email="ada@@example", phone="0612345678")
    await n.publish("charging", "BalanceLow", LOW)
    found = await n.wait_messages(2)
    by_channel = {m.channel: m for m in found}
    assert by_channel[Channel.EMAIL].status is MessageStatus.FAILED
    assert by_channel[Channel.EMAIL].last_error.startswith("contact.email: 'ada@@example'")
    assert by_channel[Channel.SMS].status is MessageStatus.FAILED
    assert (
        "contact.phone_number: '0612345678' is not an E.164" in by_channel[Channel.SMS].last_error
    )
    assert await n.dispatch() == 0
    listed = await n.stub.ListMessages(pb.ListMessagesRequest(customer_id="cus_ada"))
    assert {m.status for m in listed.messages} == {pb.MESSAGE_STATUS_FAILED}


async def test_a_template_that_fails_to_render_is_retried_after_the_fix(
    notifications: Notifications, tmp_path: Path
) -> None:
    n = notifications
    renderer = n.service.app.dispatcher._renderer
    broken = tmp_path / "templates"
    broken.mkdir()
    for path in DEFAULT_DIR.glob("*.yaml"):
        (broken / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    english = (broken / "en.yaml").read_text(encoding="utf-8")
    (broken / "en.yaml").write_text(
        english.replace("{{ event.balance | money }}, below", "{{ event.no_such_field }}, below"),
        encoding="utf-8",
    )
    renderer._dir = broken  # type: ignore[attr-defined]
    await n.customer()
    await n.publish("charging", "BalanceLow", LOW)
    await n.wait_messages(2)
    await n.dispatch()
    [mail] = [m for m in n.all_messages() if m.channel is Channel.EMAIL]
    assert mail.status is MessageStatus.FAILED
    assert "template balance_low.text failed to render" in mail.last_error
    assert "no_such_field" in mail.last_error
    assert n.catcher.messages() == []

    (broken / "en.yaml").write_text(english, encoding="utf-8")  # the operator's fix
    retried = await n.stub.RetryMessage(pb.RetryMessageRequest(message_id=mail.message_id))
    assert retried.message.status == pb.MESSAGE_STATUS_QUEUED
    assert await n.dispatch() == 1
    [sent] = parsed_mail(n)
    assert sent["Subject"] == "Your balance is low: 1.50 EUR"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await n.stub.RetryMessage(pb.RetryMessageRequest(message_id=mail.message_id))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_an_unknown_template_fails_the_message(notifications: Notifications) -> None:
    # The shipped rules are checked at start (a rule naming no template stops the
    # service); a template removed later fails its messages with the reason.
    n = notifications
    await n.customer()
    await wait_for(_contact_known(n), 10, "the contact")
    book = RuleBook((Rule("BalanceLow", Channel.EMAIL, "no_such_template", Category.SERVICE),))
    envelope = EventEnvelope("evt_x", "BalanceLow", "charging", "acc_ada", n.clock.now(), LOW)
    handlers.plan_event(envelope, n.service.app.uow_factory(), handlers.Planning(book))
    await n.dispatch()
    [message] = [m for m in n.all_messages() if m.event_id == "evt_x"]
    assert message.status is MessageStatus.FAILED
    assert "unknown template 'no_such_template'" in message.last_error


def _contact_known(n: Notifications) -> Callable[[], bool]:
    def known() -> bool:
        with n.service.app.uow_factory() as uow:
            return uow.contacts.link("acc_ada") is not None and bool(uow.contacts.get("cus_ada"))

    return known


async def test_opt_outs_marketing_and_language_preferences(notifications: Notifications) -> None:
    n = notifications
    await n.customer()
    await n.stub.SetPreference(
        pb.SetPreferenceRequest(
            preference=pb.Preference(
                customer_id="cus_ada",
                channel=pb.CHANNEL_EMAIL,
                marketing_opted_out=True,
                language_code="fr-BE",
                wants_einvoice=True,
            )
        )
    )
    await n.stub.SetPreference(
        pb.SetPreferenceRequest(
            preference=pb.Preference(customer_id="cus_ada", channel=pb.CHANNEL_SMS, opted_out=True)
        )
    )
    await n.publish("charging", "BalanceLow", LOW)  # service message: e-mail, not SMS
    await n.publish("invoicing", "InvoiceIssued", invoice_issued())  # legal: despite marketing
    found = await n.wait_messages(2)
    assert {m.channel for m in found} == {Channel.EMAIL}
    await n.dispatch()
    subjects = sorted(m["Subject"] for m in parsed_mail(n))
    assert subjects == ["Facture INV-2027-000001 de Reckon", "Votre solde est bas : 1.50 EUR"]
    assert sorted(kind for _, kind in n.documents.asked) == ["einvoice_xml", "invoice_pdf"]
    prefs = await n.stub.GetPreferences(pb.GetPreferencesRequest(customer_id="cus_ada"))
    assert sorted(p.channel for p in prefs.preferences) == [pb.CHANNEL_EMAIL, pb.CHANNEL_SMS]


@pytest.mark.parametrize(
    ("preference", "field", "problem"),
    [
        (pb.Preference(channel=pb.CHANNEL_SMS), "preference.customer_id", "required"),
        (pb.Preference(customer_id="c", channel=pb.CHANNEL_WEBHOOK), "preference.channel", ""),
        (
            pb.Preference(customer_id="c", channel=pb.CHANNEL_SMS, quiet_start="25:00",
                          quiet_end="07:00"),
            "preference.quiet_start",
            "HH:MM",
        ),
        (
            pb.Preference(customer_id="c", channel=pb.CHANNEL_EMAIL, quiet_start="22:00",
                          quiet_end="07:00"),
            "preference.quiet_start",
            "SMS only",
        ),
    ],
)  # fmt: skip
async def test_bad_preferences_name_the_field(
    notifications: Notifications, preference: pb.Preference, field: str, problem: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifications.stub.SetPreference(pb.SetPreferenceRequest(preference=preference))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert problem in violations(caught.value)[field]


async def test_list_messages_needs_a_filter(notifications: Notifications) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifications.stub.ListMessages(pb.ListMessagesRequest())
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "customer_id" in violations(caught.value)
