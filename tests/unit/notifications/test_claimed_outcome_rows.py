"""A webhook claimed as a plain row (ADR 0080): the columns its outcome writes are those
the entity's transition (``Message.sent`` / ``failed_for_now`` / ``failed``) leaves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.notifications.adapters.repositories import _OUTCOME_COLUMNS
from services.notifications.domain.model import Category, Channel, Message, MessageStatus
from services.notifications.service_layer.dispatcher import Outcome, _claimed_outcome_row
from services.notifications.service_layer.unit_of_work import ClaimedWebhook

CREATED = datetime(2027, 1, 15, tzinfo=UTC)


def _pair(attempts: int, now: datetime) -> tuple[Message, ClaimedWebhook]:
    message = Message(
        "msg_1", "evt_1", "InvoiceVoided", Channel.WEBHOOK, "whe_1", "", "", "", "en",
        Category.SERVICE, {"body": {}}, MessageStatus.QUEUED, CREATED, now,
        attempts=attempts, last_error="HTTP 500: old", response_code=500,
        lease_until=now + timedelta(minutes=5), status_version=3,
    )  # fmt: skip
    claimed = ClaimedWebhook(
        "msg_1", "evt_1", "InvoiceVoided", "whe_1", {"body": {}}, CREATED, now, attempts, 3,
        {}, "", None, 500,
    )  # fmt: skip
    return message, claimed


@pytest.mark.parametrize(
    ("kind", "detail", "code"),
    [
        ("webhook", "", 204),
        ("webhook", "HTTP 503: busy", 503),
        ("webhook", "ClientConnectorError: refused", 0),
        ("retry", "RuntimeError: bug", 0),
        ("failed", "endpoint disabled", 0),
    ],
)
@pytest.mark.parametrize("attempts", [0, 3, 7, 20])
def test_row_is_what_the_entity_transition_leaves(
    kind: str, detail: str, code: int, attempts: int
) -> None:
    now = CREATED + timedelta(hours=attempts)
    message, claimed = _pair(attempts, now)
    if kind == "webhook" and not detail:
        message.sent(now, f"HTTP {code}", response_code=code)
    elif kind in ("webhook", "retry"):
        message.failed_for_now(now, detail, response_code=code)
    else:
        message.failed(now, detail)
    row = _claimed_outcome_row(claimed, Outcome(claimed, kind, detail, code=code), now)
    assert row == {"b_message_id": "msg_1"} | {
        f"b_{name}": getattr(message, name) for name in _OUTCOME_COLUMNS
    }
