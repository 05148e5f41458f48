"""The periodic task that applies scheduled subscription changes when they fall due.

END_OF_CYCLE plan changes and cancellations take effect at a bill cycle
boundary. Reads apply a due change themselves; this task makes sure the change
(and its ``SubscriptionChanged`` event, which invoicing prorates from) happens
even for subscriptions nobody reads. "Now" comes from the injected clock, so a
test clock moved past a boundary makes the next run apply the change. Several
replicas may run it at once: optimistic versioning lets one of them win each
subscription and the others skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from services.accounts.service_layer import handlers
from services.accounts.service_layer.unit_of_work import AccountsUnitOfWork

log = logging.getLogger(__name__)


class DueChangesScheduler:
    def __init__(
        self,
        uow_factory: Callable[[], AccountsUnitOfWork],
        *,
        interval_seconds: float = 30.0,
        batch_size: int = 500,
    ) -> None:
        self._uow_factory = uow_factory
        self._interval = interval_seconds
        self._batch_size = batch_size

    async def run_once(self) -> int:
        """Apply what is due now (one batch); returns how many subscriptions changed."""
        return await asyncio.to_thread(
            handlers.apply_due_subscription_changes, self._uow_factory(), limit=self._batch_size
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                applied = await self.run_once()
                if applied:
                    log.info("applied %d due subscription changes", applied)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("applying due subscription changes failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
