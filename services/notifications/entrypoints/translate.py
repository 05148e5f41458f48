"""Proto <-> domain for the notifications API; bad fields are reported all at once."""

from __future__ import annotations

from datetime import time

from reckon.notifications.v1 import notifications_pb2 as pb
from services.common.errors import Violations
from services.common.proto_convert import (
    decode_page_token,
    encode_page_token,
    page_size_from_proto,
    timestamp_to_proto,
)
from services.notifications.domain.model import (
    Channel,
    Message,
    MessageStatus,
    Preference,
    WebhookEndpoint,
)
from services.notifications.service_layer.handlers import PreferenceChange
from services.notifications.service_layer.unit_of_work import DeliveryAttempt

_CHANNELS = {
    Channel.EMAIL: pb.CHANNEL_EMAIL,
    Channel.SMS: pb.CHANNEL_SMS,
    Channel.WEBHOOK: pb.CHANNEL_WEBHOOK,
}
_STATUSES = {
    MessageStatus.QUEUED: pb.MESSAGE_STATUS_QUEUED,
    MessageStatus.SENT: pb.MESSAGE_STATUS_SENT,
    MessageStatus.DELIVERED: pb.MESSAGE_STATUS_DELIVERED,
    MessageStatus.FAILED: pb.MESSAGE_STATUS_FAILED,
    MessageStatus.BOUNCED: pb.MESSAGE_STATUS_BOUNCED,
}


def message_to_proto(message: Message) -> pb.Message:
    return pb.Message(
        message_id=message.message_id,
        event_id=message.event_id,
        event_type=message.event_type,
        channel=_CHANNELS[message.channel],
        recipient=message.recipient,
        customer_id=message.customer_id,
        invoice_id=message.invoice_id,
        template=message.template,
        language=message.language,
        status=_STATUSES[message.status],
        attempts=message.attempts,
        last_error=message.last_error,
        provider_ref=message.provider_ref,
        create_time=timestamp_to_proto(message.created_at),
        send_time=timestamp_to_proto(message.sent_at),
        next_attempt_time=timestamp_to_proto(
            message.next_attempt_at if message.status is MessageStatus.QUEUED else None
        ),
        response_code=message.response_code,
    )


def _hhmm(value: time | None) -> str:
    return value.strftime("%H:%M") if value else ""


def preference_to_proto(preference: Preference) -> pb.Preference:
    return pb.Preference(
        customer_id=preference.customer_id,
        channel=_CHANNELS[preference.channel],
        opted_in=preference.opted_in,
        opted_out=preference.opted_out,
        marketing_opted_out=preference.marketing_opted_out,
        language_code=preference.language_code,
        quiet_start=_hhmm(preference.quiet_start),
        quiet_end=_hhmm(preference.quiet_end),
        wants_einvoice=preference.wants_einvoice,
    )


def _parse_hhmm(text: str, name: str, violations: Violations) -> time | None:
    if not text:
        return None
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        violations.add(name, f"expected HH:MM (00:00-23:59), got {text!r}")
        return None


def preference_change(request: pb.SetPreferenceRequest) -> PreferenceChange:
    violations = Violations()
    given = request.preference
    violations.require(given.customer_id, "preference.customer_id")
    channel = {pb.CHANNEL_EMAIL: Channel.EMAIL, pb.CHANNEL_SMS: Channel.SMS}.get(given.channel)
    violations.check(channel is not None, "preference.channel", "expected EMAIL or SMS")
    start = _parse_hhmm(given.quiet_start, "preference.quiet_start", violations)
    end = _parse_hhmm(given.quiet_end, "preference.quiet_end", violations)
    violations.check(
        (start is None) == (end is None), "preference.quiet_end", "give both ends or neither"
    )
    violations.check(
        start is None or channel is Channel.SMS,
        "preference.quiet_start",
        "quiet hours apply to SMS only",
    )
    violations.check(
        len(given.language_code) <= 35, "preference.language_code", "a BCP-47 language tag"
    )
    violations.raise_if_any()
    assert channel is not None
    return PreferenceChange(
        customer_id=given.customer_id,
        channel=channel,
        opted_in=given.opted_in,
        opted_out=given.opted_out,
        marketing_opted_out=given.marketing_opted_out,
        language_code=given.language_code,
        quiet_start=start,
        quiet_end=end,
        wants_einvoice=given.wants_einvoice,
    )


def endpoint_to_proto(endpoint: WebhookEndpoint) -> pb.WebhookEndpoint:
    return pb.WebhookEndpoint(
        endpoint_id=endpoint.endpoint_id,
        url=endpoint.url,
        event_types=endpoint.event_types,
        secret=endpoint.secret,
        owner_email=endpoint.owner_email,
        description=endpoint.description,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        previous_secret_expire_time=timestamp_to_proto(endpoint.previous_secret_until),
        create_time=timestamp_to_proto(endpoint.created_at),
    )


def attempt_to_proto(attempt: DeliveryAttempt) -> pb.WebhookAttempt:
    return pb.WebhookAttempt(
        attempt_id=attempt.attempt_id,
        message_id=attempt.message_id,
        event_type=attempt.event_type,
        attempt_time=timestamp_to_proto(attempt.attempted_at),
        response_code=attempt.response_code,
        error=attempt.error,
        duration_ms=attempt.duration_ms,
    )


def page(page_size: int, token: str, key: str) -> tuple[int, str]:
    """Size and the id to continue after; a token is valid only for its filter ``key``."""
    violations = Violations()
    size = page_size_from_proto(page_size, violations)
    cursor = decode_page_token(token, violations) if token else None
    if cursor is not None and cursor.get("key") != key:
        violations.add("page_token", "issued for other filters")
    violations.raise_if_any()
    return size, (cursor or {}).get("after", "")


def next_token(after: str, key: str) -> str:
    return encode_page_token({"after": after, "key": key}) if after else ""
