"""Payments' consumer of invoicing's events: ``InvoiceIssued`` starts a collection (PAY-2)."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from services.common.events import EventEnvelope, stream_for
from services.common.streams import StreamConsumer
from services.payments.service_layer.collection import Collector
from services.payments.service_layer.collection_run import DEFAULT_BATCH_SIZE, CollectionRun
from services.payments.service_layer.invoice_events import (
    CONSUMER,
    IssuedInvoice,
    on_invoice_issued,
    on_invoices_issued,
)

log = logging.getLogger(__name__)


def invoice_issued_consumer(
    client: aioredis.Redis,
    collector: Collector,
    *,
    claim_idle_ms: int = 30_000,
    block_ms: int = 1000,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> StreamConsumer:
    run = CollectionRun(collector, batch_size=batch_size)

    async def handle(envelope: EventEnvelope) -> None:
        invoice = IssuedInvoice.from_payload(envelope.event_id, envelope.payload)
        if invoice is None:
            log.warning("InvoiceIssued %s cannot be collected: bad payload", envelope.event_id)
            return
        await asyncio.to_thread(on_invoice_issued, collector, invoice)

    async def handle_batch(envelopes: list[EventEnvelope]) -> None:
        # Many invoices issued at once (a bill run): one collection run for what one
        # read returned; a bad payload is skipped here as the one-event handler skips it.
        invoices = []
        for envelope in envelopes:
            invoice = IssuedInvoice.from_payload(envelope.event_id, envelope.payload)
            if invoice is None:
                log.warning("InvoiceIssued %s cannot be collected: bad payload", envelope.event_id)
            else:
                invoices.append(invoice)
        await asyncio.to_thread(on_invoices_issued, run, invoices)

    return StreamConsumer(
        client,
        group=CONSUMER,
        streams=[stream_for("invoicing")],
        handler=handle,
        event_types={"InvoiceIssued"},
        claim_idle_ms=claim_idle_ms,
        block_ms=block_ms,
        batch_size=batch_size,
        batch_handler=handle_batch,
    )
