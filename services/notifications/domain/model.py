"""Messages, their channels and states, contacts, preferences and webhook endpoints.

A ``Message`` is one notification to one recipient on one channel, made from one
event. Its key ``(event_id, channel, recipient)`` is unique: an event delivered
twice plans the same messages again and the second plan adds nothing (NOT-1,
"one message per event, channel and recipient"). Messages wait in the send queue
(status ``QUEUED`` with ``next_attempt_at``) until the dispatcher sends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo


class Channel(StrEnum):
    EMAIL = "EMAIL"
    SMS = "SMS"
    WEBHOOK = "WEBHOOK"


class MessageStatus(StrEnum):
    QUEUED = "QUEUED"  # waiting for its (next) attempt
    SENT = "SENT"  # the server/SMSC/receiver accepted it
    DELIVERED = "DELIVERED"  # a delivery receipt says it arrived (SMS)
    FAILED = "FAILED"  # given up, with the reason; an operator may retry it
    BOUNCED = "BOUNCED"  # the recipient was refused for good (SMTP 5xx, SMS undeliverable)


class Category(StrEnum):
    """Why a message is sent: opt-out of marketing never stops a legally required one."""

    LEGAL = "LEGAL"  # invoices, credit notes: required by law, sent despite opt-out
    SERVICE = "SERVICE"  # payments, balance, expiry: the customer may opt out per channel
    MARKETING = "MARKETING"


LANGUAGES: Final = ("en", "nl", "es", "ru", "fr")
DEFAULT_LANGUAGE: Final = "en"

# E-mail and SMS: a server that is down or refusing for now is asked again after
# these delays, the last one repeating, for up to ``GIVE_UP_AFTER`` (ADR 0031).
SEND_BACKOFF: Final = (
    timedelta(seconds=10),
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
)
GIVE_UP_AFTER: Final = timedelta(days=3)
# Webhooks: Standard Webhooks' schedule from the conventions (DOMAIN.md).
WEBHOOK_SCHEDULE: Final = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
WEBHOOK_DISABLE_AFTER: Final = timedelta(days=5)


def language_of(code: str) -> str:
    """The template language for a BCP-47 code: its primary subtag if supported, else en."""
    primary = (code or "").split("-")[0].split("_")[0].lower()
    return primary if primary in LANGUAGES else DEFAULT_LANGUAGE


@dataclass
class Message:
    message_id: str
    event_id: str
    event_type: str
    channel: Channel
    recipient: str  # e-mail address, E.164 number, or webhook endpoint id
    customer_id: str
    invoice_id: str
    template: str
    language: str
    category: Category
    payload: dict[str, Any]  # the event's payload, what templates render
    status: MessageStatus
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    last_error: str = ""
    provider_ref: str = ""  # SMTP Message-ID, SMSC message ids, receiver's answer
    sent_at: datetime | None = None
    updated_at: datetime | None = None
    # Attempts taken by a dispatcher until this instant (so two never send one message).
    lease_until: datetime | None = None
    response_code: int = 0  # webhooks: the receiver's last HTTP status
    # W3C trace context of the event's consumption: the send joins the event's trace.
    trace_context: dict[str, str] = field(default_factory=dict)
    # 1 when made, +1 per status change: MessageStatusChanged carries it so a consumer
    # keeps the latest status even when events arrive out of order.
    status_version: int = 1

    @property
    def is_final(self) -> bool:
        return self.status is not MessageStatus.QUEUED

    def sent(self, now: datetime, provider_ref: str, response_code: int = 0) -> None:
        self.attempts += 1
        self.status = MessageStatus.SENT
        self.status_version += 1
        self.provider_ref = provider_ref
        self.response_code = response_code
        self.sent_at = self.updated_at = now
        self.last_error = ""
        self.lease_until = None

    def failed_for_now(self, now: datetime, error: str, response_code: int = 0) -> None:
        """A temporary failure: queued again after the channel's next delay, or given up."""
        self.attempts += 1
        self.last_error = error[:1000]
        self.response_code = response_code
        self.updated_at = now
        self.lease_until = None
        retry_at = next_attempt_at(self.channel, self.created_at, self.attempts, now)
        if retry_at is None:
            self.status = MessageStatus.FAILED
            self.status_version += 1
            self.last_error = f"gave up after {self.attempts} attempts: {self.last_error}"
            return
        self.next_attempt_at = retry_at

    def failed(self, now: datetime, error: str, *, bounced: bool = False) -> None:
        """A failure another attempt cannot fix (bad address, template that fails)."""
        self.attempts += 1
        self.status = MessageStatus.BOUNCED if bounced else MessageStatus.FAILED
        self.status_version += 1
        self.last_error = error[:1000]
        self.updated_at = now
        self.lease_until = None

    def requeue(self, now: datetime) -> None:
        """An operator retries a failed message (e.g. after fixing its template)."""
        self.status = MessageStatus.QUEUED
        self.status_version += 1
        self.next_attempt_at = now
        self.updated_at = now
        self.lease_until = None

    def receipt(self, now: datetime, delivered: bool, detail: str) -> bool:
        """Apply an SMSC delivery receipt; True when it changed the status."""
        if self.status in (MessageStatus.SENT, MessageStatus.QUEUED):
            self.status = MessageStatus.DELIVERED if delivered else MessageStatus.BOUNCED
            self.status_version += 1
            self.last_error = "" if delivered else detail[:1000]
            self.updated_at = now
            return True
        return False


_GIVE_UP: Final = {
    Channel.EMAIL: GIVE_UP_AFTER,
    Channel.SMS: GIVE_UP_AFTER,
    # The schedule's end (about 32.5 h) comes first; this is only a bound.
    Channel.WEBHOOK: timedelta(days=2),
}


def next_attempt_at(
    channel: Channel, created_at: datetime, attempts: int, now: datetime
) -> datetime | None:
    """When a message that just failed its ``attempts``-th attempt is tried again; None:
    given up (the schedule ended, or the next attempt would be past the channel's bound)."""
    delay = next_delay(channel, attempts)
    if delay is None or now + delay - created_at > _GIVE_UP[channel]:
        return None
    return now + delay


def next_delay(channel: Channel, attempts: int) -> timedelta | None:
    """Delay before attempt ``attempts + 1``, or None when the channel's schedule ended."""
    if channel is Channel.WEBHOOK:
        return WEBHOOK_SCHEDULE[attempts - 1] if attempts <= len(WEBHOOK_SCHEDULE) else None
    return SEND_BACKOFF[min(attempts, len(SEND_BACKOFF)) - 1]


@dataclass
class Contact:
    """What notifications knows of a customer, from accounts' events."""

    customer_id: str
    email: str = ""
    phone_number: str = ""
    language_code: str = DEFAULT_LANGUAGE
    group_id: str = ""
    display_name: str = ""
    time_zone: str = "UTC"
    updated_at: datetime | None = None


@dataclass
class AccountLink:
    """An account's customer: charging's events name only the account."""

    account_id: str
    customer_id: str
    time_zone: str = "UTC"


@dataclass
class Preference:
    """A customer's choice for one channel."""

    customer_id: str
    channel: Channel
    opted_in: bool = False  # asked for messages that need consent (e.g. an SMS per charge)
    opted_out: bool = False  # no messages on this channel
    marketing_opted_out: bool = False  # no marketing on this channel; others still come
    language_code: str = ""  # overrides the customer's language when set
    quiet_start: time | None = None  # SMS only: none between start and end, local time
    quiet_end: time | None = None
    wants_einvoice: bool = False  # e-mail: attach the e-invoice XML beside the PDF
    updated_at: datetime | None = None

    def allows(self, category: Category, *, needs_opt_in: bool = False) -> bool:
        """Whether a message of ``category`` may go out on this channel.

        Legally required messages (invoices) ignore the marketing opt-out, which only
        ever stops marketing; a channel opt-out stops every message on that channel
        (ADR 0033), and consent-only rules need an explicit opt-in.
        """
        if self.opted_out:
            return False
        if category is Category.MARKETING and self.marketing_opted_out:
            return False
        return self.opted_in or not needs_opt_in

    def quiet_until(self, now: datetime, time_zone: str) -> datetime | None:
        """The end of the quiet hours ``now`` falls in (as a UTC instant), or None."""
        if self.quiet_start is None or self.quiet_end is None or self.quiet_start == self.quiet_end:
            return None
        zone = ZoneInfo(time_zone or "UTC")
        local = now.astimezone(zone)
        start, end, clock = self.quiet_start, self.quiet_end, local.time()
        inside = start <= clock < end if start < end else (clock >= start or clock < end)
        if not inside:
            return None
        end_day = local.date()
        if start > end and clock >= start:  # over midnight: ends tomorrow
            end_day = end_day + timedelta(days=1)
        local_end = datetime.combine(end_day, end, tzinfo=zone)
        return local_end.astimezone(now.tzinfo)


@dataclass
class WebhookEndpoint:
    """A receiver registered by an integration (CRM/ERP) for some event types."""

    endpoint_id: str
    url: str
    event_types: list[str]  # empty: every business event
    secret: str  # whsec_...
    owner_email: str
    description: str
    enabled: bool
    created_at: datetime
    # After a rotation the previous secret signs too, until this instant.
    previous_secret: str = ""
    previous_secret_until: datetime | None = None
    failing_since: datetime | None = None
    disabled_reason: str = ""
    updated_at: datetime | None = None
    version: int = field(default=1)

    def wants(self, event_type: str) -> bool:
        return self.enabled and (not self.event_types or event_type in self.event_types)

    def signing_secrets(self, now: datetime) -> list[str]:
        secrets = [self.secret]
        if self.previous_secret and self.previous_secret_until and now < self.previous_secret_until:
            secrets.append(self.previous_secret)
        return secrets

    def rotate(self, new_secret: str, now: datetime, overlap: timedelta) -> None:
        self.previous_secret, self.previous_secret_until = self.secret, now + overlap
        self.secret = new_secret
        self.updated_at = now

    def delivered(self) -> None:
        self.failing_since = None

    def delivery_failed(self, now: datetime) -> bool:
        """Record a failed attempt; True when this disables the endpoint (5 days failing)."""
        if self.failing_since is None:
            self.failing_since = now
            return False
        if self.enabled and now - self.failing_since >= WEBHOOK_DISABLE_AFTER:
            self.enabled = False
            self.disabled_reason = (
                f"every delivery failed since {self.failing_since.isoformat()} (5 days)"
            )
            self.updated_at = now
            return True
        return False
