"""The notifications consumer: every business event of the suite becomes messages.

One consumer group (``notifications``) reads the streams of accounts (contact
data), charging (balance, credit limit, buckets), invoicing, payments and
dunning. Rating's usage stream is not read: per-call records are not business
events for integrations and would dwarf everything else. Handling is idempotent
(the inbox plus the messages' unique key), so a redelivered event sends nothing
twice; once messages are queued the dispatcher is woken. The new events of one read
(per stream and producer trace, e.g. a bill run's ``InvoiceIssued``) are planned in
one transaction (``plan_events``, ADR 0082); if that fails, each event on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Final

import redis.asyncio as aioredis

from services.common.errors import Aborted
from services.common.events import EventEnvelope, stream_for
from services.common.streams import StreamConsumer
from services.notifications.service_layer import handlers
from services.notifications.service_layer.unit_of_work import NotificationsUnitOfWork

log = logging.getLogger(__name__)

GROUP: Final = handlers.CONSUMER
SOURCES: Final = ("accounts", "charging", "invoicing", "payments", "dunning")
_ATTEMPTS: Final = 5
# Events one read hands to one planning transaction (at most, per stream).
BATCH_SIZE: Final = 500


def notifications_consumer(
    client: aioredis.Redis,
    uow_factory: Callable[[], NotificationsUnitOfWork],
    planning: handlers.Planning,
    *,
    on_planned: Callable[[], None],
    claim_idle_ms: int = 30_000,
    block_ms: int = 1000,
    batch_size: int = BATCH_SIZE,
) -> StreamConsumer:
    async def handle(envelope: EventEnvelope) -> None:
        planned = await asyncio.to_thread(plan_with_retries, envelope, uow_factory, planning)
        if planned:
            on_planned()

    async def handle_batch(envelopes: list[EventEnvelope]) -> None:
        # Any failure (after the retries on conflicts) makes StreamConsumer plan each
        # event on its own through ``handle``, with its dead-letter accounting.
        planned = await asyncio.to_thread(
            plan_batch_with_retries, envelopes, uow_factory, planning, event_spans=True
        )
        if planned:
            on_planned()

    return StreamConsumer(
        client,
        group=GROUP,
        streams=[stream_for(source) for source in SOURCES],
        handler=handle,
        claim_idle_ms=claim_idle_ms,
        block_ms=block_ms,
        batch_size=batch_size,
        batch_handler=handle_batch,
    )


def plan_with_retries(
    envelope: EventEnvelope,
    uow_factory: Callable[[], NotificationsUnitOfWork],
    planning: handlers.Planning,
) -> int:
    return plan_batch_with_retries([envelope], uow_factory, planning)


def plan_batch_with_retries(
    envelopes: Sequence[EventEnvelope],
    uow_factory: Callable[[], NotificationsUnitOfWork],
    planning: handlers.Planning,
    *,
    event_spans: bool = False,
) -> int:
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return handlers.plan_events(envelopes, uow_factory(), planning, event_spans=event_spans)
        except Aborted:
            if attempt == _ATTEMPTS:
                raise  # left pending; delivered again later
            log.info(
                "planning %s (%d events) conflicted; retrying",
                envelopes[0].event_id,
                len(envelopes),
            )
    return 0  # pragma: no cover
