"""Use cases of the notifications service, each in one unit of work.

Planning (events -> messages) lives in ``planning`` and is re-exported here; this
module keeps the operator and customer use cases: messages, retries, preferences
and webhook endpoints (registration, rotation, replay, delivery log).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Final

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from services.common.ids import new_id
from services.notifications.domain.addresses import (
    email_problem,
    webhook_url_problem,
)
from services.notifications.domain.model import (
    Channel,
    Message,
    MessageStatus,
    Preference,
    WebhookEndpoint,
)
from services.notifications.service_layer.planning import CONSUMER as CONSUMER
from services.notifications.service_layer.planning import NOT_FOR_WEBHOOKS as NOT_FOR_WEBHOOKS
from services.notifications.service_layer.planning import Planning as Planning
from services.notifications.service_layer.planning import announce as announce
from services.notifications.service_layer.planning import plan_event as plan_event
from services.notifications.service_layer.planning import plan_events as plan_events
from services.notifications.service_layer.unit_of_work import (
    DeliveryAttempt,
    NotificationsUnitOfWork,
)

log = logging.getLogger(__name__)

SECRET_OVERLAP: Final = timedelta(hours=24)  # both secrets sign for this long after a rotation


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
