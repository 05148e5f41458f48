"""Subscription of the rating service to the accounts service's event stream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis

from services.common.clock import Clock
from services.common.events import EventEnvelope, stream_for
from services.common.streams import StreamConsumer
from services.rating.service_layer.accounts_view import (
    CONSUMER,
    HANDLED_EVENTS,
    apply_account_event,
)
from services.rating.service_layer.unit_of_work import RatingUnitOfWork


def accounts_consumer(
    client: aioredis.Redis,
    uow_factory: Callable[[], RatingUnitOfWork],
    clock: Clock,
    *,
    claim_idle_ms: int = 30_000,
) -> StreamConsumer:
    """A consumer group that keeps rating's account view in step with accounts."""

    async def handle(envelope: EventEnvelope) -> None:
        await asyncio.to_thread(apply_account_event, uow_factory, clock, envelope)

    return StreamConsumer(
        client,
        group=CONSUMER,
        streams=[stream_for("accounts")],
        handler=handle,
        event_types=HANDLED_EVENTS,
        claim_idle_ms=claim_idle_ms,
    )
