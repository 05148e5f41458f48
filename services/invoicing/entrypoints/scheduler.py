"""The bill-run scheduler: the daily run, and stalled runs' work queued again.

It looks at the injected clock every ``interval_seconds`` (1 s by default), so a
test clock moved forward is noticed within about a second: as soon as a cycle ended
in some account's own zone (local midnight of its bill cycle day), a run starts and
invoices every account whose cycle ended (ADR 0024, 0062).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from services.common import clock as kit_clock
from services.common.clock import Clock
from services.common.telemetry import tracer
from services.invoicing.service_layer import billruns
from services.invoicing.service_layer.drafting import FeePricer
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork

log = logging.getLogger(__name__)
ZONES_TTL_SECONDS = 5.0


class BillRunScheduler:
    def __init__(
        self,
        uow_factory: Callable[[], InvoicingUnitOfWork],
        pricer: FeePricer,
        clock: Clock,
        *,
        interval_seconds: float = 1.0,
        daily_runs: bool = True,
        stalled_after: timedelta = timedelta(seconds=60),
    ) -> None:
        self._uow_factory = uow_factory
        self._pricer = pricer
        self._clock = clock
        self._interval = interval_seconds
        self._daily_runs = daily_runs
        self._stalled_after = stalled_after
        self._seen_offset: object = None
        # The (BCD, zone) pairs of the accounts, read again every few seconds: a query
        # over every account is too much once a second, and a pair that is new since
        # costs at most this long (ADR 0062).
        self._zones: list[tuple[int, str]] = []
        self._zones_read_at: float | None = None
        self._zones_ttl = max(ZONES_TTL_SECONDS, interval_seconds)

    def _cycle_zones(self) -> list[tuple[int, str]]:
        now = time.monotonic()
        if self._zones_read_at is None or now - self._zones_read_at >= self._zones_ttl:
            self._zones = billruns.cycle_zones(self._uow_factory)
            self._zones_read_at = now
        return self._zones

    def run_once(self) -> str | None:
        started = None
        if self._daily_runs:
            with self._moved_clock_span():
                started = billruns.start_scheduled_run(
                    self._uow_factory, self._pricer, self._clock.now(), self._cycle_zones()
                )
            if started:
                log.info("started the daily bill run %s", started)
        requeued = billruns.requeue_stalled(self._uow_factory, self._stalled_after)
        if requeued:
            log.warning("queued the work of %d accounts of stalled bill runs again", requeued)
        return started

    def _moved_clock_span(self) -> contextlib.AbstractContextManager[object]:
        """The first pass after a traced test-clock move continues the mover's trace.

        A run started because someone moved the suite's test clock (``reckon demo``,
        a test) is part of what the mover did (ADR 0054); every other pass stays
        untraced, so the once-a-second look at the clock makes no spans.
        """
        offset = getattr(self._clock, "offset", None)
        move_context = getattr(self._clock, "move_context", None)
        if offset is None or move_context is None or offset == self._seen_offset:
            return contextlib.nullcontext()
        self._seen_offset = offset
        try:
            parent = move_context()
        except Exception:
            log.warning("cannot read who moved the test clock", exc_info=True)
            return contextlib.nullcontext()
        if parent is None:
            return contextlib.nullcontext()
        return tracer().start_as_current_span(
            "reckon.invoicing daily bill run after a clock move", context=parent
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.run_once)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bill-run scheduler failed; will retry")
            sleeper = getattr(kit_clock, "clock_sleep", None)
            if sleeper is not None:  # the kit's: wakes at once when the test clock moves
                await sleeper(self._clock, self._interval, stop=stop)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
