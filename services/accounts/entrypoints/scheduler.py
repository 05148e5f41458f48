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
import logging
from collections.abc import Callable

from services.accounts.service_layer import handlers
from services.accounts.service_layer.unit_of_work import AccountsUnitOfWork
from services.common.clock import Clock, SystemClock, clock_sleep

log = logging.getLogger(__name__)


class DueChangesScheduler:
    def __init__(
        self,
        uow_factory: Callable[[], AccountsUnitOfWork],
        *,
        clock: Clock | None = None,
        interval_seconds: float = 30.0,
        batch_size: int = 500,
    ) -> None:
        self._uow_factory = uow_factory
        self._interval = interval_seconds
        # Only to wake on test-clock moves: handlers read "now" from their unit of work.
        self._clock = clock or SystemClock()
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
            # Wakes early when the test clock moves, so a change due at the new "now" applies.
            await clock_sleep(self._clock, self._interval, stop=stop)
