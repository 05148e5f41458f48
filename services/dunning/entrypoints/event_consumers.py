"""Event consumers inside the dunning service.

- ``projection_consumer`` (group ``dunning-projection``) reads invoicing's, payments'
  and accounts' streams and folds each event into dunning's projection; a case whose
  overdue money is cleared ends in the same transaction (DUN-3, at once). Idempotent
  through the inbox: a redelivered event changes nothing.
- ``work_consumer`` (group ``dunning-run``) reads ``reckon:dunning:work``: each message
  is a batch of accounts of a daily run, judged one transaction per account.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

import redis.asyncio as aioredis

from services.common.errors import Aborted
from services.common.events import EventEnvelope, stream_for
from services.common.streams import StreamConsumer
from services.dunning.service_layer import handlers, runs
from services.dunning.service_layer.unit_of_work import DunningUnitOfWork

PROJECTION_GROUP: Final = "dunning-projection"
WORK_GROUP: Final = "dunning-run"
_ATTEMPTS: Final = 5
UowFactory = Callable[[], DunningUnitOfWork]


def fold_with_retries(uow_factory: UowFactory, envelope: EventEnvelope) -> bool:
    for attempt in range(_ATTEMPTS):
        try:
            return handlers.on_event(
                uow_factory(),
                envelope.event_id,
                envelope.event_type,
                envelope.payload,
                envelope.occurred_at,
            )
        except Aborted:
            # The daily run judged the same account meanwhile: fold again on fresh rows.
            if attempt == _ATTEMPTS - 1:
                raise
    return False  # pragma: no cover


def projection_consumer(
    client: aioredis.Redis,
    uow_factory: UowFactory,
    *,
    claim_idle_ms: int = 30_000,
    block_ms: int = 1000,
) -> StreamConsumer:
    async def handle(envelope: EventEnvelope) -> None:
        await asyncio.to_thread(fold_with_retries, uow_factory, envelope)

    return StreamConsumer(
        client,
        group=PROJECTION_GROUP,
        streams=[stream_for("invoicing"), stream_for("payments"), stream_for("accounts")],
        handler=handle,
        event_types=handlers.INVOICE_EVENTS | handlers.PAYMENT_EVENTS | handlers.ACCOUNT_EVENTS,
        claim_idle_ms=claim_idle_ms,
        block_ms=block_ms,
    )


def work_consumer(
    client: aioredis.Redis,
    uow_factory: UowFactory,
    *,
    claim_idle_ms: int = 30_000,
    block_ms: int = 1000,
    consumer_name: str | None = None,
) -> StreamConsumer:
    async def handle(envelope: EventEnvelope) -> None:
        payload = envelope.payload
        await asyncio.to_thread(
            runs.process,
            uow_factory,
            str(payload["run_id"]),
            [str(a) for a in payload["account_ids"]],
        )

    return StreamConsumer(
        client,
        group=WORK_GROUP,
        streams=[runs.WORK_STREAM],
        handler=handle,
        event_types={runs.DunningRunWork.event_type},
        claim_idle_ms=claim_idle_ms,
        block_ms=block_ms,
        consumer_name=consumer_name,
        batch_size=4,
    )
