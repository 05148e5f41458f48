"""Use cases of the notifications service, each in one unit of work.

``plan_event`` turns one event into messages (the send queue): contacts and
account links first, then the rules for e-mail and SMS, then every webhook
endpoint subscribed to the event. The inbox (``mark_processed``) and the unique
key ``(event_id, channel, recipient)`` make a redelivered event plan nothing new.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Final

from opentelemetry.propagate import inject

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from services.common.events import EventEnvelope
from services.common.ids import new_id
from services.notifications.domain.addresses import (
    email_problem,
    phone_problem,
    webhook_url_problem,
)
from services.notifications.domain.events import status_changed
from services.notifications.domain.model import (
    AccountLink,
    Category,
    Channel,
    Contact,
    Message,
    MessageStatus,
    Preference,
    WebhookEndpoint,
    language_of,
)
from services.notifications.domain.rules import RuleBook
from services.notifications.service_layer.unit_of_work import (
    DeliveryAttempt,
    NotificationsUnitOfWork,
)

log = logging.getLogger(__name__)

CONSUMER: Final = "notifications"
# Events that are bookkeeping between services, not business facts for integrations.
NOT_FOR_WEBHOOKS: Final = frozenset({"UsageRated", "UsageBatchRated"})
SECRET_OVERLAP: Final = timedelta(hours=24)  # both secrets sign for this long after a rotation


@dataclass(frozen=True)
class Planning:
    rules: RuleBook
    own_ports: frozenset[int] = field(default_factory=frozenset)
    # Events older than this make no messages (contacts are still learnt): a consumer
    # group created on a long stream must not e-mail last year's invoices again.
    max_event_age: timedelta = timedelta(days=3)


def plan_event(envelope: EventEnvelope, uow: NotificationsUnitOfWork, planning: Planning) -> int:
    """Record what the event says about contacts and queue its messages; returns how many."""
    with uow:
        if not uow.mark_processed(CONSUMER, envelope.event_id):
            return 0
        now = uow.clock.now()
        payload = envelope.payload
        _learn_contacts(envelope.event_type, payload, uow, now)
        invoice_ids = _invoice_ids(payload)
        if envelope.source == "invoicing" and invoice_ids and payload.get("number"):
            uow.contacts.remember_invoice(invoice_ids[0], str(payload["number"]))
        customer_id = str(payload.get("customer_id") or "")
        link = uow.contacts.link(str(payload.get("account_id") or ""))
        if not customer_id and link is not None:
            customer_id = link.customer_id
        contact = uow.contacts.get(customer_id) if customer_id else None
        planned = 0
        if now - envelope.occurred_at > planning.max_event_age:
            log.info("event %s is too old to notify about; skipped", envelope.event_id)
            uow.commit()
            return 0
        if contact is not None:
            time_zone = link.time_zone if link is not None else contact.time_zone
            for rule in planning.rules.select(envelope.event_type, payload, contact.group_id):
                preference = uow.preferences.get(contact.customer_id, rule.channel) or Preference(
                    contact.customer_id, rule.channel
                )
                if not preference.allows(rule.category, needs_opt_in=rule.opt_in):
                    continue
                attach = [
                    a for a in rule.attach if a != "einvoice_xml" or preference.wants_einvoice
                ]
                recipient = contact.email if rule.channel is Channel.EMAIL else contact.phone_number
                problem = (
                    email_problem(recipient)
                    if rule.channel is Channel.EMAIL
                    else phone_problem(recipient)
                )
                message = _message(
                    envelope,
                    channel=rule.channel,
                    recipient=recipient,
                    customer_id=contact.customer_id,
                    template=rule.template,
                    language=language_of(preference.language_code or contact.language_code),
                    category=rule.category,
                    payload={
                        "event": payload,
                        "customer": {"display_name": contact.display_name, "email": contact.email},
                        "invoices": [
                            {"invoice_id": i, "number": uow.contacts.invoice_number(i) or i}
                            for i in invoice_ids
                        ],
                        "attach": attach,
                    },
                    now=now,
                )
                if problem:
                    field_name = "email" if rule.channel is Channel.EMAIL else "phone_number"
                    message.failed(now, f"contact.{field_name}: {problem}")
                elif rule.channel is Channel.SMS:
                    quiet = preference.quiet_until(now, time_zone)
                    message.next_attempt_at = quiet or now
                if not uow.messages.exists(message.event_id, message.channel, message.recipient):
                    uow.messages.add(message)
                    announce(uow, message, now)
                    planned += 1
        if envelope.event_type not in NOT_FOR_WEBHOOKS:
            planned += _plan_webhooks(envelope, uow, customer_id, now)
        uow.commit()
        return planned


def announce(uow: NotificationsUnitOfWork, message: Message, now: datetime) -> None:
    """Publish the message's status (e-mail, SMS) with the change, in the same transaction."""
    event = status_changed(message, now)
    if event is not None:
        uow.publish(event)


def _message(
    envelope: EventEnvelope,
    *,
    channel: Channel,
    recipient: str,
    customer_id: str,
    template: str,
    language: str,
    category: Category,
    payload: dict[str, Any],
    now: datetime,
) -> Message:
    carrier: dict[str, str] = {}
    inject(carrier)  # the consumer's span: the send continues the event's trace
    return Message(
        message_id=new_id("msg"),
        event_id=envelope.event_id,
        event_type=envelope.event_type,
        channel=channel,
        recipient=recipient,
        customer_id=customer_id,
        invoice_id=next(iter(_invoice_ids(envelope.payload)), ""),
        template=template,
        language=language,
        category=category,
        payload=payload,
        status=MessageStatus.QUEUED,
        created_at=now,
        next_attempt_at=now,
        updated_at=now,
        trace_context=carrier,
    )


def _invoice_ids(payload: Mapping[str, Any]) -> list[str]:
    """The invoices an event concerns: invoicing's ``invoice_id``, payments' ``invoice_ids``."""
    many = payload.get("invoice_ids")
    if isinstance(many, list) and many:
        return [str(i) for i in many if i]
    one = payload.get("invoice_id")
    return [str(one)] if one else []


def _plan_webhooks(
    envelope: EventEnvelope, uow: NotificationsUnitOfWork, customer_id: str, now: datetime
) -> int:
    planned = 0
    body = {
        "type": envelope.event_type,
        "timestamp": envelope.occurred_at.isoformat(),
        "data": {"event_id": envelope.event_id, "source": envelope.source, **envelope.payload},
    }
    for endpoint in uow.endpoints.enabled():
        if not endpoint.wants(envelope.event_type):
            continue
        if uow.messages.exists(envelope.event_id, Channel.WEBHOOK, endpoint.endpoint_id):
            continue
        uow.messages.add(
            _message(
                envelope,
                channel=Channel.WEBHOOK,
                recipient=endpoint.endpoint_id,
                customer_id=customer_id,
                template="",
                language="",
                category=Category.SERVICE,
                payload={"body": body},
                now=now,
            )
        )
        planned += 1
    return planned


def _learn_contacts(
    event_type: str, payload: Mapping[str, Any], uow: NotificationsUnitOfWork, now: datetime
) -> None:
    if event_type in ("CustomerCreated", "CustomerUpdated"):
        customer_id = str(payload.get("customer_id") or "")
        if not customer_id:
            return
        contact = uow.contacts.get(customer_id)
        if contact is None:
            contact = Contact(customer_id=customer_id)
            uow.contacts.add(contact)
        contact.email = str(payload.get("email") or "")
        # CustomerCreated carries the phone number since notifications needs it (additive).
        if "phone_number" in payload:
            contact.phone_number = str(payload.get("phone_number") or "")
        contact.language_code = str(payload.get("language_code") or "en")
        contact.group_id = str(payload.get("group_id") or "")
        contact.display_name = str(payload.get("display_name") or "")
        contact.updated_at = now
    elif event_type in ("AccountCreated", "AccountUpdated"):
        account_id = str(payload.get("account_id") or "")
        if not account_id:
            return
        link = uow.contacts.link(account_id)
        if link is None:
            link = AccountLink(account_id=account_id, customer_id="")
            uow.contacts.add_link(link)
        link.customer_id = str(payload.get("customer_id") or "")
        link.time_zone = str(payload.get("time_zone") or "UTC")


# -- queries and operators' commands ---------------------------------------------------------


@dataclass(frozen=True)
class Page:
    items: Sequence[Any]
    next_after: str


def list_messages(
    uow: NotificationsUnitOfWork,
    *,
    customer_id: str = "",
    invoice_id: str = "",
    endpoint_id: str = "",
    after: str = "",
    limit: int = 50,
) -> Page:
    if not (customer_id or invoice_id or endpoint_id):
        raise InvalidArgument.field("customer_id", "name a customer_id, invoice_id or endpoint_id")
    with uow:
        items = uow.messages.list(
            customer_id=customer_id,
            invoice_id=invoice_id,
            recipient=endpoint_id,
            after=after,
            limit=limit + 1,
        )
    return Page(items[:limit], items[limit - 1].message_id if len(items) > limit else "")


def get_message(uow: NotificationsUnitOfWork, message_id: str) -> Message:
    with uow:
        message = uow.messages.get(message_id)
    if message is None:
        raise NotFound(f"message {message_id} not found", reason="MESSAGE_NOT_FOUND")
    return message


def retry_message(uow: NotificationsUnitOfWork, message_id: str) -> Message:
    """Queue a failed or bounced message again, e.g. after its template was fixed."""
    with uow:
        message = uow.messages.get(message_id)
        if message is None:
            raise NotFound(f"message {message_id} not found", reason="MESSAGE_NOT_FOUND")
        if message.status not in (MessageStatus.FAILED, MessageStatus.BOUNCED):
            raise FailedPrecondition(
                f"message {message_id} is {message.status.value}; only failed or bounced "
                "messages are retried",
                reason="MESSAGE_NOT_FAILED",
            )
        now = uow.clock.now()
        message.requeue(now)
        announce(uow, message, now)
        uow.commit()
    return message


@dataclass(frozen=True)
class PreferenceChange:
    customer_id: str
    channel: Channel
    opted_in: bool
    opted_out: bool
    marketing_opted_out: bool
    language_code: str
    quiet_start: time | None
    quiet_end: time | None
    wants_einvoice: bool


def set_preference(uow: NotificationsUnitOfWork, change: PreferenceChange) -> Preference:
    with uow:
        preference = uow.preferences.get(change.customer_id, change.channel)
        if preference is None:
            preference = Preference(change.customer_id, change.channel)
            uow.preferences.add(preference)
        preference.opted_in = change.opted_in
        preference.opted_out = change.opted_out
        preference.marketing_opted_out = change.marketing_opted_out
        preference.language_code = change.language_code
        preference.quiet_start, preference.quiet_end = change.quiet_start, change.quiet_end
        preference.wants_einvoice = change.wants_einvoice
        preference.updated_at = uow.clock.now()
        uow.commit()
    return preference


def get_preferences(uow: NotificationsUnitOfWork, customer_id: str) -> Sequence[Preference]:
    with uow:
        return uow.preferences.of_customer(customer_id)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def create_endpoint(
    uow: NotificationsUnitOfWork,
    *,
    url: str,
    event_types: Sequence[str],
    owner_email: str,
    description: str,
    own_ports: frozenset[int],
    request_id: str = "",
) -> WebhookEndpoint:
    violations = Violations()
    problem = webhook_url_problem(url, own_ports)
    violations.check(problem is None, "endpoint.url", problem or "")
    owner_problem = email_problem(owner_email)
    violations.check(owner_problem is None, "endpoint.owner_email", owner_problem or "")
    violations.check(
        all(t and t.isidentifier() for t in event_types),
        "endpoint.event_types",
        "event type names only",
    )
    violations.raise_if_any()
    fingerprint = hashlib.sha256(
        "\x1f".join([url, ",".join(event_types), owner_email, description]).encode()
    ).hexdigest()
    with uow:
        replayed = uow.replayed_resource("CreateWebhookEndpoint", request_id, fingerprint)
        if replayed:
            endpoint = uow.endpoints.get(replayed)
            assert endpoint is not None
            return endpoint
        now = uow.clock.now()
        endpoint = WebhookEndpoint(
            endpoint_id=new_id("whe"),
            url=url,
            event_types=list(event_types),
            secret=new_secret(),
            owner_email=owner_email,
            description=description,
            enabled=True,
            created_at=now,
            updated_at=now,
        )
        uow.endpoints.add(endpoint)
        uow.remember_request("CreateWebhookEndpoint", request_id, fingerprint, endpoint.endpoint_id)
        uow.commit()
    return endpoint


def _endpoint(uow: NotificationsUnitOfWork, endpoint_id: str) -> WebhookEndpoint:
    endpoint = uow.endpoints.get(endpoint_id)
    if endpoint is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found", reason="ENDPOINT_NOT_FOUND")
    return endpoint


def rotate_secret(uow: NotificationsUnitOfWork, endpoint_id: str) -> WebhookEndpoint:
    with uow:
        endpoint = _endpoint(uow, endpoint_id)
        endpoint.rotate(new_secret(), uow.clock.now(), SECRET_OVERLAP)
        uow.commit()
    return endpoint


def enable_endpoint(uow: NotificationsUnitOfWork, endpoint_id: str) -> WebhookEndpoint:
    with uow:
        endpoint = _endpoint(uow, endpoint_id)
        endpoint.enabled, endpoint.disabled_reason, endpoint.failing_since = True, "", None
        endpoint.updated_at = uow.clock.now()
        uow.commit()
    return endpoint


def replay(
    uow: NotificationsUnitOfWork,
    endpoint_id: str,
    *,
    message_id: str = "",
    start: datetime | None = None,
    end: datetime | None = None,
) -> int:
    """Queue one message, or every message of the endpoint made in [start, end), again."""
    with uow:
        _endpoint(uow, endpoint_id)
        now = uow.clock.now()
        if message_id:
            message = uow.messages.get(message_id)
            if message is None or message.recipient != endpoint_id:
                raise NotFound(
                    f"message {message_id} of endpoint {endpoint_id} not found",
                    reason="MESSAGE_NOT_FOUND",
                )
            chosen: Sequence[Message] = [message]
        else:
            if start is None or end is None or end <= start:
                raise InvalidArgument.field("end_time", "give message_id, or start < end")
            chosen = uow.messages.of_recipient_between(endpoint_id, start, end)
        count = 0
        for message in chosen:
            if message.status is not MessageStatus.QUEUED:
                message.requeue(now)
                message.attempts = 0  # the retry schedule starts over
                count += 1
        uow.commit()
    return count


def delivery_log(uow: NotificationsUnitOfWork, endpoint_id: str, *, after: str, limit: int) -> Page:
    with uow:
        _endpoint(uow, endpoint_id)
        items = uow.messages.attempts(endpoint_id, after=after, limit=limit + 1)
    next_after = items[limit - 1].attempt_id if len(items) > limit else ""
    return Page(list[DeliveryAttempt](items[:limit]), next_after)
