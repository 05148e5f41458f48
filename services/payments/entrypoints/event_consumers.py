"""Payments' consumer of invoicing's events: ``InvoiceIssued`` starts a collection (PAY-2)."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from services.common.events import EventEnvelope, stream_for
from services.common.streams import StreamConsumer
from services.payments.service_layer.collection import Collector
from services.payments.service_layer.invoice_events import (
    CONSUMER,
    IssuedInvoice,
    on_invoice_issued,
)

log = logging.getLogger(__name__)


def invoice_issued_consumer(
    client: aioredis.Redis,
    collector: Collector,
    *,
    claim_idle_ms: int = 30_000,
    block_ms: int = 1000,
) -> StreamConsumer:
    async def handle(envelope: EventEnvelope) -> None:
        invoice = IssuedInvoice.from_payload(envelope.event_id, envelope.payload)
        if invoice is None:
            log.warning("InvoiceIssued %s cannot be collected: bad payload", envelope.event_id)
            return
        await asyncio.to_thread(on_invoice_issued, collector, invoice)

    return StreamConsumer(
        client,
        group=CONSUMER,
        streams=[stream_for("invoicing")],
        handler=handle,
        event_types={"InvoiceIssued"},
        claim_idle_ms=claim_idle_ms,
        block_ms=block_ms,
    )
