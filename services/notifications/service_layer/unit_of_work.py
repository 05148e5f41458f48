"""The unit of work the notifications handlers run in, and its repositories.

Lists are keyset-paginated on the time-ordered id: ``after`` is the last id of
the previous page.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from services.common.clock import Clock
from services.common.unit_of_work import UnitOfWork
from services.notifications.domain.model import (
    AccountLink,
    Channel,
    Contact,
    Message,
    Preference,
    WebhookEndpoint,
)


@dataclass(frozen=True)
class DeliveryAttempt:
    attempt_id: str
    endpoint_id: str
    message_id: str
    event_type: str
    attempted_at: datetime
    response_code: int
    error: str
    duration_ms: int


class ClaimedWebhook(NamedTuple):
    """A webhook message as the dispatcher's claim returns it: the columns a delivery and
    its record need, as a plain row (no ORM entity to load, track and write back: ADR
    0080). The outcome is written with ``save_outcome_rows``, as ``Message.sent`` /
    ``Message.failed_for_now`` would change the entity."""

    message_id: str
    event_id: str
    event_type: str
    recipient: str  # the endpoint id
    payload: dict[str, Any]
    created_at: datetime
    next_attempt_at: datetime
    attempts: int
    status_version: int
    trace_context: dict[str, str]
    provider_ref: str
    sent_at: datetime | None
    response_code: int

    @property
    def channel(self) -> Channel:
        return Channel.WEBHOOK


class MessageRepository(Protocol):
    def exists(self, event_id: str, channel: Channel, recipient: str) -> bool: ...

    def add(self, message: Message) -> None: ...

    def get(self, message_id: str) -> Message | None: ...

    def due(self, now: datetime, limit: int) -> Sequence[str]:
        """Ids of queued messages whose attempt is due and that no dispatcher holds."""
        ...

    def get_many(self, message_ids: Sequence[str]) -> list[Message]:
        """The messages found, in the order of ``message_ids``."""
        ...

    def claim_many(self, message_ids: Sequence[str], now: datetime, lease: timedelta) -> list[str]:
        """Take the messages for one attempt each; returns the ids taken (others: held/done)."""
        ...

    def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[Message]:
        """Take up to ``limit`` due messages no dispatcher holds (oldest due first), loaded."""
        ...

    def claim_due_rows(
        self, now: datetime, limit: int, lease: timedelta
    ) -> tuple[list[ClaimedWebhook], list[Message]]:
        """As ``claim_due``, webhooks as plain rows and other messages loaded as entities."""
        ...

    def save_outcomes(self, changed: Sequence[Message]) -> None:
        """Write the attempt columns (status, attempts, errors, times) of held messages."""
        ...

    def save_outcome_rows(self, rows: Sequence[Mapping[str, object]]) -> None:
        """Write attempt columns given as rows (``b_<column>`` keys, all of them)."""
        ...

    def claim(self, message_id: str, now: datetime, lease: timedelta) -> bool:
        """Take the message for one attempt (True), unless another dispatcher holds it."""
        ...

    def list(
        self,
        *,
        customer_id: str = "",
        invoice_id: str = "",
        recipient: str = "",
        after: str = "",
        limit: int,
    ) -> Sequence[Message]: ...

    def of_recipient_between(
        self, recipient: str, start: datetime, end: datetime
    ) -> Sequence[Message]: ...

    def add_sms_ref(self, provider_id: str, message_id: str) -> None: ...

    def add_sms_refs(self, refs: Sequence[tuple[str, str]]) -> None:
        """(provider_id, message_id) pairs, in one statement."""
        ...

    def by_sms_ref(self, provider_id: str) -> Message | None: ...

    def log_attempt(self, attempt: DeliveryAttempt) -> None: ...

    def log_attempts(self, attempts: Sequence[DeliveryAttempt]) -> None: ...

    def attempts(
        self, endpoint_id: str, *, after: str, limit: int
    ) -> Sequence[DeliveryAttempt]: ...

    def keys_of_events(self, event_ids: Sequence[str]) -> set[tuple[str, Channel, str]]:
        """The unique keys ``(event_id, channel, recipient)`` of these events' messages."""
        ...

    def add_many(self, new: Sequence[Message]) -> None:
        """Messages just made (never loaded), written at once."""
        ...


class ContactRepository(Protocol):
    def get(self, customer_id: str) -> Contact | None: ...

    def add(self, contact: Contact) -> None: ...

    def link(self, account_id: str) -> AccountLink | None: ...

    def add_link(self, link: AccountLink) -> None: ...

    def invoice_number(self, invoice_id: str) -> str | None: ...

    def remember_invoice(self, invoice_id: str, number: str) -> None: ...

    def get_many(self, customer_ids: Collection[str]) -> dict[str, Contact]:
        """The contacts found, by customer id."""
        ...

    def links(self, account_ids: Collection[str]) -> dict[str, AccountLink]:
        """The account links found, by account id."""
        ...

    def invoice_numbers(self, invoice_ids: Collection[str]) -> dict[str, str]:
        """The numbers known, by invoice id."""
        ...

    def remember_invoices(self, numbers: Mapping[str, str]) -> None:
        """Numbers of invoices not known yet, in one statement."""
        ...


class PreferenceRepository(Protocol):
    def get(self, customer_id: str, channel: Channel) -> Preference | None: ...

    def of_customer(self, customer_id: str) -> Sequence[Preference]: ...

    def add(self, preference: Preference) -> None: ...

    def of_customers(self, customer_ids: Collection[str]) -> dict[tuple[str, Channel], Preference]:
        """Every preference of these customers, by (customer, channel)."""
        ...


class EndpointRepository(Protocol):
    def get(self, endpoint_id: str) -> WebhookEndpoint | None: ...

    def get_many(self, endpoint_ids: Sequence[str]) -> dict[str, WebhookEndpoint]: ...

    def add(self, endpoint: WebhookEndpoint) -> None: ...

    def clear_failures(self, endpoint_ids: Sequence[str]) -> None:
        """Mark the endpoints as delivering again (``delivered``), without loading them."""
        ...

    def enabled(self) -> Sequence[WebhookEndpoint]: ...

    def list(self, *, after: str, limit: int) -> Sequence[WebhookEndpoint]: ...


class NotificationsUnitOfWork(UnitOfWork):
    messages: MessageRepository
    contacts: ContactRepository
    preferences: PreferenceRepository
    endpoints: EndpointRepository
    clock: Clock
