"""Background work of the payments service, each pass in a worker thread:

- the sandbox settles direct debits that fell due (its signed callbacks follow);
- the janitor asks the provider about attempts whose outcome is unknown;
- the retry runner sends failed collections whose retry day has come (and direct
  debits on their due date);
- the effects runner applies succeeded payments in invoicing and charging when an
  earlier try could not (a peer was down).
Each step is idempotent, so two replicas running it at once charge nothing twice
(attempt ids are the provider's idempotency keys; rows carry a version).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from services.common.clock import Clock, clock_sleep
from services.payments.service_layer.collection import Collector

log = logging.getLogger(__name__)


@dataclass
class PaymentWorkers:
    collector: Collector
    interval_seconds: float
    batch_size: int
    settle: Callable[[], int] | None = None  # the sandbox's settlement, when it is the provider
    # With it, a pass follows at once when the test clock moves (retries fall due).
    clock: Clock | None = None

    def run_once(self) -> None:
        if self.settle is not None:
            self.settle()
        self.collector.run_janitor(self.batch_size)
        self.collector.run_retries(self.batch_size)
        self.collector.run_effects(self.batch_size)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:
                log.exception("payments workers: a pass failed; trying again next time")
            if self.clock is not None:
                await clock_sleep(self.clock, self.interval_seconds, stop=stop)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_seconds)
