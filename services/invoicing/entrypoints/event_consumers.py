"""Consumers inside invoicing: other services' facts, and bill-run work.

- ``facts_consumer`` (group ``invoicing``) reads accounts', rating's and notifications'
  streams and applies customers, accounts, subscription changes, rated usage and the
  status of messages about invoices
  (``service_layer.ingest``; idempotent by event id).
- ``work_consumer`` (group ``invoicing-billrun``) reads ``reckon:billrun:work``:
  several of them, in any number of processes, share a bill run. A message a
  killed worker left unacknowledged is claimed by another after ``claim_idle_ms``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

import redis.asyncio as aioredis

from services.common.errors import Aborted
from services.common.events import EventEnvelope, stream_for
from services.common.streams import StreamConsumer
from services.invoicing.service_layer import billruns, ingest
from services.invoicing.service_layer.drafting import FeePricer
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork

log = logging.getLogger(__name__)

FACTS_GROUP: Final = "invoicing"
WORK_GROUP: Final = "invoicing-billrun"
_ATTEMPTS: Final = 5


def facts_consumer(
    client: aioredis.Redis,
    uow_factory: Callable[[], InvoicingUnitOfWork],
    *,
    claim_idle_ms: int = 30_000,
    block_ms: int = 1000,
) -> StreamConsumer:
    def apply(envelope: EventEnvelope) -> None:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                ingest.handle(uow_factory, envelope.event_id, envelope.event_type, envelope.payload)
                return
            except Aborted:
                if attempt == _ATTEMPTS:
                    raise

    async def handle(envelope: EventEnvelope) -> None:
        await asyncio.to_thread(apply, envelope)

    return StreamConsumer(
        client,
        group=FACTS_GROUP,
        streams=[stream_for("accounts"), stream_for("rating"), stream_for("notifications")],
        handler=handle,
        event_types=set(ingest.HANDLERS),
        claim_idle_ms=claim_idle_ms,
        block_ms=block_ms,
    )


def work_consumer(
    client: aioredis.Redis,
    uow_factory: Callable[[], InvoicingUnitOfWork],
    pricer: FeePricer,
    *,
    claim_idle_ms: int = 30_000,
    block_ms: int = 1000,
    consumer_name: str | None = None,
    batch_size: int = 4,
) -> StreamConsumer:
    async def handle(envelope: EventEnvelope) -> None:
        payload = envelope.payload
        await asyncio.to_thread(
            billruns.process,
            uow_factory,
            pricer,
            str(payload["bill_run_id"]),
            str(payload["op"]),
            [str(a) for a in payload["account_ids"]],
        )

    return StreamConsumer(
        client,
        group=WORK_GROUP,
        streams=[billruns.WORK_STREAM],
        handler=handle,
        event_types={billruns.BillRunWork.event_type},
        claim_idle_ms=claim_idle_ms,
        block_ms=block_ms,
        consumer_name=consumer_name,
        batch_size=batch_size,
    )
