"""Planning: events of the suite become messages (the send queue), a batch at a time.

``plan_events`` turns a batch of events into messages in one transaction, each event
as if alone and in order: contacts and account links first, then the rules for e-mail
and SMS, then every webhook endpoint subscribed to the event. The inbox
(``mark_processed_many``) and the unique key ``(event_id, channel, recipient)`` make a
redelivered event plan nothing new; ``plan_event`` is a batch of one (ADR 0082).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Span, SpanKind

from services.common.events import EventEnvelope
from services.common.ids import new_id
from services.common.telemetry import tracer
from services.notifications.domain.addresses import (
    email_problem,
    phone_problem,
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
    NotificationsUnitOfWork,
)

log = logging.getLogger(__name__)

CONSUMER: Final = "notifications"
# Events that are bookkeeping between services, not business facts for integrations.
NOT_FOR_WEBHOOKS: Final = frozenset({"UsageRated", "UsageBatchRated"})


@dataclass(frozen=True)
class Planning:
    rules: RuleBook
    own_ports: frozenset[int] = field(default_factory=frozenset)
    # Events older than this make no messages (contacts are still learnt): a consumer
    # group created on a long stream must not e-mail last year's invoices again.
    max_event_age: timedelta = timedelta(days=3)


def plan_event(envelope: EventEnvelope, uow: NotificationsUnitOfWork, planning: Planning) -> int:
    """Record what the event says about contacts and queue its messages; returns how many."""
    return plan_events([envelope], uow, planning)


def plan_events(
    envelopes: Sequence[EventEnvelope],
    uow: NotificationsUnitOfWork,
    planning: Planning,
    *,
    event_spans: bool = False,
) -> int:
    """Plan a batch of events in one transaction, as ``plan_event`` would one after another.

    The reads are set-based: the inbox, the contacts, account links, preferences and
    invoice numbers the batch names, the endpoints and the messages' unique keys are each
    one query for the whole batch. What an event teaches (a contact, a link, an invoice
    number) is seen by the events after it in the batch. An event twice in the batch, or
    handled before, plans nothing. Returns how many messages were queued.

    ``event_spans`` (the consumer's batch path): each event is planned in a
    ``reckon.event.consume <type>`` span that is a child of its producer, as when it is
    consumed alone, and its messages carry that span: every hop of a story stays
    visible by name in its trace however the events were grouped.
    """
    with uow:
        batch = {e.event_id: e for e in reversed(envelopes)}  # the first of each id wins
        fresh_ids = uow.mark_processed_many(CONSUMER, [e.event_id for e in envelopes])
        fresh = [batch[i] for i in fresh_ids]
        if not fresh:
            return 0
        now = uow.clock.now()
        facts = _Facts.load(uow, fresh)
        endpoints: Sequence[WebhookEndpoint] = (
            uow.endpoints.enabled()
            if any(e.event_type not in NOT_FOR_WEBHOOKS for e in fresh)
            else ()
        )
        carrier: dict[str, str] = {}
        inject(carrier)  # the consumer's span: the sends continue the events' trace
        made: list[Message] = []
        for envelope in fresh:
            if not event_spans:
                made.extend(_plan(envelope, facts, endpoints, planning, now, carrier))
                continue
            with _consume_span(envelope):
                own: dict[str, str] = {}
                inject(own)
                made.extend(_plan(envelope, facts, endpoints, planning, now, own))
        uow.contacts.remember_invoices(facts.new_invoices)
        # An event's messages already queued (its inbox row was lost) are not queued
        # again; nor is a second message for one key within the batch.
        taken = uow.messages.keys_of_events(fresh_ids)
        queued: list[Message] = []
        for message in made:
            key = (message.event_id, message.channel, message.recipient)
            if key in taken:
                continue
            taken.add(key)
            queued.append(message)
            announce(uow, message, now)
        uow.messages.add_many(queued)
        uow.commit()
        return len(queued)


def _consume_span(envelope: EventEnvelope) -> AbstractContextManager[Span]:
    return tracer().start_as_current_span(
        f"reckon.event.consume {envelope.event_type}",
        context=extract(envelope.trace_context),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "redis",
            "messaging.operation": "process",
            "messaging.consumer.group.name": CONSUMER,
            "reckon.event.id": envelope.event_id,
            "reckon.event.type": envelope.event_type,
        },
    )


class _Facts:
    """The contacts, links, preferences and invoice numbers a batch needs, read at once.

    Lookups answer from what was loaded and what earlier events of the batch taught;
    a key not loaded up front (none is expected) is read on its own.
    """

    def __init__(self, uow: NotificationsUnitOfWork) -> None:
        self._uow = uow
        self.contacts: dict[str, Contact | None] = {}
        self.links: dict[str, AccountLink | None] = {}
        self.preferences: dict[tuple[str, Channel], Preference] = {}
        self.customers_with_preferences: set[str] = set()
        self.numbers: dict[str, str | None] = {}
        self.new_invoices: dict[str, str] = {}

    @classmethod
    def load(cls, uow: NotificationsUnitOfWork, envelopes: Sequence[EventEnvelope]) -> _Facts:
        facts = cls(uow)
        account_ids = {str(e.payload.get("account_id") or "") for e in envelopes} - {""}
        found_links = uow.contacts.links(account_ids)
        # No account is named "" (events without one): not asked for each such event.
        facts.links = {a: found_links.get(a) for a in account_ids}
        facts.links[""] = None
        # Every customer the batch can reach: named by an event, or by an account's link
        # (a link an event of the batch sets names its customer in that event's payload).
        customer_ids = {str(e.payload.get("customer_id") or "") for e in envelopes}
        customer_ids |= {link.customer_id for link in found_links.values()}
        customer_ids -= {""}
        found_contacts = uow.contacts.get_many(customer_ids)
        facts.contacts = {c: found_contacts.get(c) for c in customer_ids}
        facts.preferences = dict(uow.preferences.of_customers(customer_ids))
        facts.customers_with_preferences = customer_ids
        invoice_ids = {i for e in envelopes for i in _invoice_ids(e.payload)}
        found_numbers = uow.contacts.invoice_numbers(invoice_ids)
        facts.numbers = {i: found_numbers.get(i) for i in invoice_ids}
        return facts

    def contact(self, customer_id: str) -> Contact | None:
        if customer_id not in self.contacts:
            self.contacts[customer_id] = self._uow.contacts.get(customer_id)
        return self.contacts[customer_id]

    def link(self, account_id: str) -> AccountLink | None:
        if account_id not in self.links:
            self.links[account_id] = self._uow.contacts.link(account_id)
        return self.links[account_id]

    def preference(self, customer_id: str, channel: Channel) -> Preference:
        if customer_id not in self.customers_with_preferences:
            self.customers_with_preferences.add(customer_id)
            for preference in self._uow.preferences.of_customer(customer_id):
                self.preferences[(customer_id, preference.channel)] = preference
        key = (customer_id, channel)
        if key not in self.preferences:  # the defaults, made once (never stored)
            self.preferences[key] = Preference(customer_id, channel)
        return self.preferences[key]

    def invoice_number(self, invoice_id: str) -> str | None:
        if invoice_id not in self.numbers:
            self.numbers[invoice_id] = self._uow.contacts.invoice_number(invoice_id)
        return self.numbers[invoice_id]

    def add_contact(self, contact: Contact) -> None:
        self._uow.contacts.add(contact)
        self.contacts[contact.customer_id] = contact

    def add_link(self, link: AccountLink) -> None:
        self._uow.contacts.add_link(link)
        self.links[link.account_id] = link

    def remember_invoice(self, invoice_id: str, number: str) -> None:
        if self.invoice_number(invoice_id) is None:
            self.numbers[invoice_id] = self.new_invoices[invoice_id] = number


def _plan(
    envelope: EventEnvelope,
    facts: _Facts,
    endpoints: Sequence[WebhookEndpoint],
    planning: Planning,
    now: datetime,
    carrier: dict[str, str],
) -> list[Message]:
    """One event's messages (not yet checked against the unique key)."""
    payload = envelope.payload
    _learn_contacts(envelope.event_type, payload, facts, now)
    invoice_ids = _invoice_ids(payload)
    if envelope.source == "invoicing" and invoice_ids and payload.get("number"):
        facts.remember_invoice(invoice_ids[0], str(payload["number"]))
    if now - envelope.occurred_at > planning.max_event_age:
        log.info("event %s is too old to notify about; skipped", envelope.event_id)
        return []
    customer_id = str(payload.get("customer_id") or "")
    link = facts.link(str(payload.get("account_id") or ""))
    if not customer_id and link is not None:
        customer_id = link.customer_id
    contact = facts.contact(customer_id) if customer_id else None
    made: list[Message] = []
    if contact is not None:
        time_zone = link.time_zone if link is not None else contact.time_zone
        for rule in planning.rules.select(envelope.event_type, payload, contact.group_id):
            preference = facts.preference(contact.customer_id, rule.channel)
            if not preference.allows(rule.category, needs_opt_in=rule.opt_in):
                continue
            attach = [a for a in rule.attach if a != "einvoice_xml" or preference.wants_einvoice]
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
                        {"invoice_id": i, "number": facts.invoice_number(i) or i}
                        for i in invoice_ids
                    ],
                    "attach": attach,
                },
                now=now,
                trace_context=carrier,
            )
            if problem:
                field_name = "email" if rule.channel is Channel.EMAIL else "phone_number"
                message.failed(now, f"contact.{field_name}: {problem}")
            elif rule.channel is Channel.SMS:
                quiet = preference.quiet_until(now, time_zone)
                message.next_attempt_at = quiet or now
            made.append(message)
    if envelope.event_type not in NOT_FOR_WEBHOOKS:
        made.extend(_webhooks(envelope, endpoints, customer_id, now, carrier))
    return made


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
    trace_context: dict[str, str],
) -> Message:
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
        trace_context=dict(trace_context),
    )


def _invoice_ids(payload: Mapping[str, Any]) -> list[str]:
    """The invoices an event concerns: invoicing's ``invoice_id``, payments' ``invoice_ids``."""
    many = payload.get("invoice_ids")
    if isinstance(many, list) and many:
        return [str(i) for i in many if i]
    one = payload.get("invoice_id")
    return [str(one)] if one else []


def _webhooks(
    envelope: EventEnvelope,
    endpoints: Sequence[WebhookEndpoint],
    customer_id: str,
    now: datetime,
    carrier: dict[str, str],
) -> list[Message]:
    body = {
        "type": envelope.event_type,
        "timestamp": envelope.occurred_at.isoformat(),
        "data": {"event_id": envelope.event_id, "source": envelope.source, **envelope.payload},
    }
    return [
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
            trace_context=carrier,
        )
        for endpoint in endpoints
        if endpoint.wants(envelope.event_type)
    ]


def _learn_contacts(
    event_type: str, payload: Mapping[str, Any], facts: _Facts, now: datetime
) -> None:
    if event_type in ("CustomerCreated", "CustomerUpdated"):
        customer_id = str(payload.get("customer_id") or "")
        if not customer_id:
            return
        contact = facts.contact(customer_id)
        if contact is None:
            contact = Contact(customer_id=customer_id)
            facts.add_contact(contact)
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
        link = facts.link(account_id)
        if link is None:
            link = AccountLink(account_id=account_id, customer_id="")
            facts.add_link(link)
        link.customer_id = str(payload.get("customer_id") or "")
        link.time_zone = str(payload.get("time_zone") or "UTC")


# -- queries and operators' commands ---------------------------------------------------------
