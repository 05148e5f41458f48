"""SQL repositories of the notifications service (mapped classes plus a few Core statements)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from services.notifications.adapters.orm import (
    account_links,
    contacts,
    invoice_refs,
    messages,
    preferences,
    sms_refs,
    webhook_attempts,
    webhook_endpoints,
)
from services.notifications.domain.model import (
    AccountLink,
    Channel,
    Contact,
    Message,
    MessageStatus,
    Preference,
    WebhookEndpoint,
)
from services.notifications.service_layer.unit_of_work import ClaimedWebhook, DeliveryAttempt

_OUTCOME_COLUMNS = (
    "status",
    "attempts",
    "last_error",
    "provider_ref",
    "response_code",
    "sent_at",
    "updated_at",
    "lease_until",
    "next_attempt_at",
    "status_version",
)


# The dispatcher's per-batch statements, built once: building a statement (and its cache
# key) for every batch cost about as much as executing it (bench/RESULTS.md, ADR 0079).
# They run on the session's connection: Core statements, nothing for the ORM to do.
_SAVE_OUTCOMES = (
    update(messages)
    .where(messages.c.message_id == bindparam("b_message_id"))
    .values({name: bindparam(f"b_{name}") for name in _OUTCOME_COLUMNS})
)
_LOG_ATTEMPT = insert(webhook_attempts)
_CLEAR_FAILURES = (
    update(webhook_endpoints)
    .where(
        webhook_endpoints.c.endpoint_id.in_(bindparam("ids", expanding=True)),
        webhook_endpoints.c.failing_since.is_not(None),
    )
    .values(failing_since=None, version=webhook_endpoints.c.version + 1)
)


# The claim's columns: a webhook becomes a ClaimedWebhook from them, other messages are
# loaded as entities by id afterwards (in the same transaction, so with their lease).
_CLAIMED = (
    messages.c.message_id,
    messages.c.channel,
    messages.c.event_id,
    messages.c.event_type,
    messages.c.recipient,
    messages.c.payload,
    messages.c.created_at,
    messages.c.next_attempt_at,
    messages.c.attempts,
    messages.c.status_version,
    messages.c.trace_context,
    messages.c.provider_ref,
    messages.c.sent_at,
    messages.c.response_code,
)


def _outcome_row(message: Message) -> dict[str, object]:
    # Read from the instance's __dict__ where the value is loaded: a mapped attribute's
    # descriptor costs several times a dict lookup, ten columns per delivery.
    state = vars(message)
    row: dict[str, object] = {"b_message_id": message.message_id}
    for name in _OUTCOME_COLUMNS:
        row[f"b_{name}"] = state[name] if name in state else getattr(message, name)
    return row


class SqlMessageRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def exists(self, event_id: str, channel: Channel, recipient: str) -> bool:
        found = self._session.execute(
            select(messages.c.message_id).where(
                messages.c.event_id == event_id,
                messages.c.channel == channel,
                messages.c.recipient == recipient,
            )
        ).first()
        return found is not None

    def add(self, message: Message) -> None:
        self._session.add(message)

    def get(self, message_id: str) -> Message | None:
        return self._session.get(Message, message_id)

    def due(self, now: datetime, limit: int) -> Sequence[str]:
        rows = self._session.execute(
            select(messages.c.message_id)
            .where(
                messages.c.status == MessageStatus.QUEUED,
                messages.c.next_attempt_at <= now,
                or_(messages.c.lease_until.is_(None), messages.c.lease_until < now),
            )
            .order_by(messages.c.next_attempt_at)
            .limit(limit)
        )
        return [row[0] for row in rows]

    def get_many(self, message_ids: Sequence[str]) -> list[Message]:
        if not message_ids:
            return []
        found = self._session.scalars(select(Message).where(messages.c.message_id.in_(message_ids)))
        by_id = {message.message_id: message for message in found}
        return [by_id[i] for i in message_ids if i in by_id]

    def claim_many(self, message_ids: Sequence[str], now: datetime, lease: timedelta) -> list[str]:
        # One conditional UPDATE for the batch; RETURNING says which rows this
        # dispatcher took (of two dispatchers, each row goes to one).
        if not message_ids:
            return []
        rows = self._session.execute(
            update(messages)
            .where(
                messages.c.message_id.in_(message_ids),
                messages.c.status == MessageStatus.QUEUED,
                or_(messages.c.lease_until.is_(None), messages.c.lease_until < now),
            )
            .values(lease_until=now + lease)
            .returning(messages.c.message_id)
            .execution_options(synchronize_session=False)
        )
        taken = {row[0] for row in rows}
        return [i for i in message_ids if i in taken]

    def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[Message]:
        # One statement takes and loads the batch: the conditional UPDATE of the due rows
        # RETURNING them (was a SELECT of ids, an UPDATE of an IN list of up to 500 ids and
        # a SELECT of another). The subquery's rows are checked again by the UPDATE, so
        # of two dispatchers each row still goes to one (on PostgreSQL a row another one
        # took meanwhile no longer matches and is skipped).
        held = or_(messages.c.lease_until.is_(None), messages.c.lease_until < now)
        due = (
            select(messages.c.message_id)
            .where(
                messages.c.status == MessageStatus.QUEUED, messages.c.next_attempt_at <= now, held
            )
            .order_by(messages.c.next_attempt_at)
            .limit(limit)
        )
        taken = list(
            self._session.scalars(
                update(Message)
                .where(
                    messages.c.message_id.in_(due.scalar_subquery()),
                    messages.c.status == MessageStatus.QUEUED,
                    held,
                )
                .values(lease_until=now + lease)
                .returning(Message),
                execution_options={"synchronize_session": False},
            )
        )
        taken.sort(key=lambda message: message.next_attempt_at)  # RETURNING has no order
        return taken

    def claim_due_rows(
        self, now: datetime, limit: int, lease: timedelta
    ) -> tuple[list[ClaimedWebhook], list[Message]]:
        # The same one-statement claim as ``claim_due`` through Core: RETURNING plain
        # rows, not ``Message`` entities (loading, identity map and instrumented state
        # cost more per webhook than the signature and the post together, ADR 0080).
        held = or_(messages.c.lease_until.is_(None), messages.c.lease_until < now)
        due = (
            select(messages.c.message_id)
            .where(
                messages.c.status == MessageStatus.QUEUED, messages.c.next_attempt_at <= now, held
            )
            .order_by(messages.c.next_attempt_at)
            .limit(limit)
        )
        rows = self._session.connection().execute(
            update(messages)
            .where(
                messages.c.message_id.in_(due.scalar_subquery()),
                messages.c.status == MessageStatus.QUEUED,
                held,
            )
            .values(lease_until=now + lease)
            .returning(*_CLAIMED)
        )
        webhooks: list[ClaimedWebhook] = []
        others: list[str] = []
        for row in rows:
            if row[1] is Channel.WEBHOOK:
                webhooks.append(ClaimedWebhook(row[0], *row[2:]))
            else:
                others.append(row[0])
        webhooks.sort(key=lambda claimed: claimed.next_attempt_at)  # RETURNING has no order
        loaded = self.get_many(others)
        loaded.sort(key=lambda message: message.next_attempt_at)
        return webhooks, loaded

    def save_outcome_rows(self, rows: Sequence[Mapping[str, object]]) -> None:
        if rows:
            self._session.connection().execute(_SAVE_OUTCOMES, list(rows))

    def save_outcomes(self, changed: Sequence[Message]) -> None:
        # One executemany UPDATE of the columns an attempt changes, for a batch of
        # messages this dispatcher holds (their other columns never change after planning).
        if not changed:
            return
        self._session.connection().execute(_SAVE_OUTCOMES, [_outcome_row(m) for m in changed])

    def claim(self, message_id: str, now: datetime, lease: timedelta) -> bool:
        # One conditional UPDATE: of two dispatchers only one sees its row change.
        result = self._session.execute(
            update(messages)
            .where(
                messages.c.message_id == message_id,
                messages.c.status == MessageStatus.QUEUED,
                or_(messages.c.lease_until.is_(None), messages.c.lease_until < now),
            )
            .values(lease_until=now + lease)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0)) == 1

    def list(
        self,
        *,
        customer_id: str = "",
        invoice_id: str = "",
        recipient: str = "",
        after: str = "",
        limit: int,
    ) -> Sequence[Message]:
        query = select(Message).order_by(messages.c.message_id).limit(limit)
        if customer_id:
            query = query.where(messages.c.customer_id == customer_id)
        if invoice_id:
            query = query.where(messages.c.invoice_id == invoice_id)
        if recipient:
            query = query.where(messages.c.recipient == recipient)
        if after:
            query = query.where(messages.c.message_id > after)
        return list(self._session.scalars(query))

    def of_recipient_between(
        self, recipient: str, start: datetime, end: datetime
    ) -> Sequence[Message]:
        return list(
            self._session.scalars(
                select(Message)
                .where(
                    messages.c.recipient == recipient,
                    messages.c.created_at >= start,
                    messages.c.created_at < end,
                )
                .order_by(messages.c.created_at)
            )
        )

    def add_sms_ref(self, provider_id: str, message_id: str) -> None:
        self._session.execute(
            insert(sms_refs).values(provider_id=provider_id, message_id=message_id)
        )

    def add_sms_refs(self, refs: Sequence[tuple[str, str]]) -> None:
        if refs:
            self._session.execute(
                insert(sms_refs), [{"provider_id": p, "message_id": m} for p, m in refs]
            )

    def by_sms_ref(self, provider_id: str) -> Message | None:
        message_id = self._session.execute(
            select(sms_refs.c.message_id).where(sms_refs.c.provider_id == provider_id)
        ).scalar()
        return self.get(message_id) if message_id else None

    def log_attempt(self, attempt: DeliveryAttempt) -> None:
        self.log_attempts([attempt])

    def log_attempts(self, attempts: Sequence[DeliveryAttempt]) -> None:
        if attempts:  # one executemany INSERT for a batch of deliveries
            # The rows by hand: ``dataclasses.asdict`` deep-copies every field (the
            # datetime too) and cost more than the INSERT itself (bench/RESULTS.md).
            self._session.connection().execute(
                _LOG_ATTEMPT,
                [
                    {
                        "attempt_id": a.attempt_id,
                        "endpoint_id": a.endpoint_id,
                        "message_id": a.message_id,
                        "event_type": a.event_type,
                        "attempted_at": a.attempted_at,
                        "response_code": a.response_code,
                        "error": a.error,
                        "duration_ms": a.duration_ms,
                    }
                    for a in attempts
                ],
            )

    def attempts(self, endpoint_id: str, *, after: str, limit: int) -> Sequence[DeliveryAttempt]:
        query = (
            select(webhook_attempts)
            .where(webhook_attempts.c.endpoint_id == endpoint_id)
            .order_by(webhook_attempts.c.attempt_id)
            .limit(limit)
        )
        if after:
            query = query.where(webhook_attempts.c.attempt_id > after)
        return [DeliveryAttempt(**row._mapping) for row in self._session.execute(query)]

    def keys_of_events(self, event_ids: Sequence[str]) -> set[tuple[str, Channel, str]]:
        if not event_ids:
            return set()
        # The unique key's index leads with event_id: one range read per event.
        rows = self._session.execute(
            select(messages.c.event_id, messages.c.channel, messages.c.recipient).where(
                messages.c.event_id.in_(event_ids)
            )
        )
        return {(row[0], Channel(row[1]), row[2]) for row in rows}

    def add_many(self, new: Sequence[Message]) -> None:
        # New messages of a planning batch as one executemany INSERT, not through the
        # ORM's flush (a third of a batch's CPU); they are read back by id when sent.
        if new:
            names = [column.name for column in messages.columns]
            self._session.execute(
                insert(messages), [{name: getattr(m, name) for name in names} for m in new]
            )


class SqlContactRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, customer_id: str) -> Contact | None:
        return self._session.get(Contact, customer_id)

    def add(self, contact: Contact) -> None:
        self._session.add(contact)

    def link(self, account_id: str) -> AccountLink | None:
        return self._session.get(AccountLink, account_id)

    def add_link(self, link: AccountLink) -> None:
        self._session.add(link)

    def invoice_number(self, invoice_id: str) -> str | None:
        return self._session.execute(
            select(invoice_refs.c.number).where(invoice_refs.c.invoice_id == invoice_id)
        ).scalar()

    def remember_invoice(self, invoice_id: str, number: str) -> None:
        if self.invoice_number(invoice_id) is None:
            self._session.execute(insert(invoice_refs).values(invoice_id=invoice_id, number=number))

    def get_many(self, customer_ids: Collection[str]) -> dict[str, Contact]:
        if not customer_ids:
            return {}
        found = self._session.scalars(
            select(Contact).where(contacts.c.customer_id.in_(list(customer_ids)))
        )
        return {contact.customer_id: contact for contact in found}

    def links(self, account_ids: Collection[str]) -> dict[str, AccountLink]:
        if not account_ids:
            return {}
        found = self._session.scalars(
            select(AccountLink).where(account_links.c.account_id.in_(list(account_ids)))
        )
        return {link.account_id: link for link in found}

    def invoice_numbers(self, invoice_ids: Collection[str]) -> dict[str, str]:
        if not invoice_ids:
            return {}
        rows = self._session.execute(
            select(invoice_refs.c.invoice_id, invoice_refs.c.number).where(
                invoice_refs.c.invoice_id.in_(list(invoice_ids))
            )
        )
        return {row[0]: row[1] for row in rows}

    def remember_invoices(self, numbers: Mapping[str, str]) -> None:
        if numbers:  # one multi-row INSERT of invoices not known before
            self._session.execute(
                insert(invoice_refs),
                [{"invoice_id": i, "number": n} for i, n in numbers.items()],
            )


class SqlPreferenceRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, customer_id: str, channel: Channel) -> Preference | None:
        return self._session.get(Preference, (customer_id, channel))

    def of_customer(self, customer_id: str) -> Sequence[Preference]:
        return list(
            self._session.scalars(
                select(Preference).where(preferences.c.customer_id == customer_id)
            )
        )

    def add(self, preference: Preference) -> None:
        self._session.add(preference)

    def of_customers(self, customer_ids: Collection[str]) -> dict[tuple[str, Channel], Preference]:
        if not customer_ids:
            return {}
        found = self._session.scalars(
            select(Preference).where(preferences.c.customer_id.in_(list(customer_ids)))
        )
        return {(p.customer_id, p.channel): p for p in found}


class SqlEndpointRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, endpoint_id: str) -> WebhookEndpoint | None:
        return self._session.get(WebhookEndpoint, endpoint_id)

    def get_many(self, endpoint_ids: Sequence[str]) -> dict[str, WebhookEndpoint]:
        if not endpoint_ids:
            return {}
        found = self._session.scalars(
            select(WebhookEndpoint).where(webhook_endpoints.c.endpoint_id.in_(endpoint_ids))
        )
        return {endpoint.endpoint_id: endpoint for endpoint in found}

    def add(self, endpoint: WebhookEndpoint) -> None:
        self._session.add(endpoint)

    def clear_failures(self, endpoint_ids: Sequence[str]) -> None:
        # What ``WebhookEndpoint.delivered`` does, for endpoints whose deliveries just all
        # succeeded, without loading them: nearly always nothing is failing, so this is one
        # UPDATE that changes no row. The version moves on like an ORM write's, so a
        # concurrent ORM write of the same endpoint fails and is written again.
        if endpoint_ids:
            self._session.connection().execute(_CLEAR_FAILURES, {"ids": list(endpoint_ids)})

    def enabled(self) -> Sequence[WebhookEndpoint]:
        return list(
            self._session.scalars(
                select(WebhookEndpoint).where(webhook_endpoints.c.enabled.is_(True))
            )
        )

    def list(self, *, after: str, limit: int) -> Sequence[WebhookEndpoint]:
        query = select(WebhookEndpoint).order_by(webhook_endpoints.c.endpoint_id).limit(limit)
        if after:
            query = query.where(webhook_endpoints.c.endpoint_id > after)
        return list(self._session.scalars(query))
