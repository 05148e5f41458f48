"""Event consumers inside the accounts service.

The referral consumer reads ``CustomerCreated`` from the service's own stream
(``reckon:events:accounts``, group ``accounts-referrals``) and credits the
referrer. Crediting asynchronously keeps one aggregate per transaction (creating
a customer never locks the referrer's row) and makes the credit survive a crash
between the two steps: the event stays pending until handled. Handling is
idempotent through the inbox (``mark_processed`` in the crediting transaction),
so a redelivered event credits nobody twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

import redis.asyncio as aioredis

from services.accounts.adapters.unit_of_work import SOURCE
from services.accounts.domain.events import CustomerCreated
from services.accounts.service_layer import handlers
from services.accounts.service_layer.commands import RecordReferral
from services.accounts.service_layer.unit_of_work import AccountsUnitOfWork
from services.common.errors import Aborted
from services.common.events import EventEnvelope, stream_for
from services.common.streams import StreamConsumer

log = logging.getLogger(__name__)

REFERRALS_GROUP: Final = handlers.REFERRALS_CONSUMER
# A referrer credited by many sign-ups at once conflicts on its version; retrying at
# once is cheaper than leaving the event to be re-claimed after claim_idle_ms.
_ATTEMPTS: Final = 5


def referrals_consumer(
    client: aioredis.Redis,
    uow_factory: Callable[[], AccountsUnitOfWork],
    *,
    claim_idle_ms: int = 30_000,
    block_ms: int = 1000,
) -> StreamConsumer:
    async def handle(envelope: EventEnvelope) -> None:
        referrer = envelope.payload.get("referrer_customer_id")
        if not isinstance(referrer, str) or not referrer:
            return  # not a referral: nothing to credit, nothing to write
        command = RecordReferral(
            event_id=envelope.event_id,
            referrer_customer_id=referrer,
            referred_customer_id=str(envelope.payload.get("customer_id", "")),
        )
        await asyncio.to_thread(record_with_retries, command, uow_factory)

    return StreamConsumer(
        client,
        group=REFERRALS_GROUP,
        streams=[stream_for(SOURCE)],
        handler=handle,
        event_types={CustomerCreated.event_type},
        claim_idle_ms=claim_idle_ms,
        block_ms=block_ms,
    )


def record_with_retries(
    command: RecordReferral, uow_factory: Callable[[], AccountsUnitOfWork]
) -> bool:
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return handlers.record_referral(command, uow_factory())
        except Aborted:
            if attempt == _ATTEMPTS:
                raise  # the message stays pending and is delivered again later
            log.info("referral credit %s conflicted; retrying", command.event_id)
    return False  # pragma: no cover - the loop returns or raises
