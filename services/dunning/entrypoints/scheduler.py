"""The background loops of the dunning service: the daily run and the effects dispatcher.

``DailyScheduler`` starts the run of each business date once the clock passes
``run_hour`` (UTC), catching up the days it missed (downtime, or a test clock moved
forward by days: each day is judged once, in order, so each level's messages go out
on their day). The run of a date judges each account on its own calendar date at that
instant (its time zone: ADR 0071), so every account's days past due count there.
It sleeps with ``clock_sleep``: moving the test clock wakes it at once.

``EffectsLoop`` does the reactions other services must apply (suspend, bar, restore,
pending items, the collections file); it is woken by every commit that wrote events
(a level reached, dunning ended) and otherwise retries every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import date, timedelta

from services.common.clock import Clock, clock_sleep
from services.dunning.service_layer import runs
from services.dunning.service_layer.effects import Effects
from services.dunning.service_layer.unit_of_work import DunningUnitOfWork

log = logging.getLogger(__name__)


class DailyScheduler:
    def __init__(
        self,
        uow_factory: Callable[[], DunningUnitOfWork],
        clock: Clock,
        *,
        run_hour: int = 1,
        catch_up_days: int = 35,
        interval_seconds: float = 60.0,
        inline: bool = False,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._run_hour = run_hour
        self._catch_up_days = catch_up_days
        self._interval = interval_seconds
        # Inline: judge in this process (no worker group); else queue for the workers.
        self._inline = inline

    def due_dates(self) -> list[date]:
        """Dates from the newest run on (at most ``catch_up_days`` back) whose run is missing
        or unfinished; today alone when there was never a run."""
        now = self._clock.now()
        latest = now.date() if now.hour >= self._run_hour else now.date() - timedelta(days=1)
        window = [latest - timedelta(days=back) for back in range(self._catch_up_days)]
        with self._uow_factory() as uow:
            found = {day: uow.runs.by_date(day) for day in window}
        started = [day for day, run in found.items() if run is not None]
        if not started:
            return [latest]
        newest = max(started)
        return sorted(
            day
            for day, run in found.items()
            if day >= newest and (run is None or run.state != "COMPLETED")
        )

    def run_once(self) -> int:
        started = 0
        for day in self.due_dates():
            if self._inline:
                runs.run_inline(self._uow_factory, day, run_hour=self._run_hour)
            else:
                runs.start_run(self._uow_factory, day, run_hour=self._run_hour)
            started += 1
        return started

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                started = await asyncio.to_thread(self.run_once)
                if started:
                    log.info("dunning: %d daily run(s) started or resumed", started)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("starting the daily dunning run failed; will retry")
            await clock_sleep(self._clock, self._interval, stop=stop)


class EffectsLoop:
    def __init__(self, effects: Effects, *, interval_seconds: float = 2.0) -> None:
        self._effects = effects
        self._interval = interval_seconds
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def notify(self) -> None:
        """Wake the loop (from any thread): a commit wrote events, effects may be due."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._wake.clear()
            try:
                while await asyncio.to_thread(self._effects.dispatch) > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dunning effects failed; will retry")
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(
                    waiters, timeout=self._interval, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
