"""Bill-cycle counters: what the tariff engine needs to know about earlier usage.

The engine keeps no state. Included allowances ("6,000 voice seconds a month"),
packages and tiers priced on the cycle total need, for each event, what the
account already drew from the allowance and how many chargeable units it already
used in the current bill cycle. ``CycleCounters`` answers that for one import
(or re-rating) in memory, loading each account's cycle counters once, and
collects the increments the caller stores in the same transaction as the rated
records (``usage_counters``, incremented, never overwritten).

A bill cycle starts on the account's bill cycle day (the last day of shorter
months) at midnight in the account's time zone. Counters are keyed
``allowance:<code>``, ``usage:<service>`` and ``discount:<code>`` (uses of a
count-limited discount); a discount counted over the account's whole life keeps
its counter under the cycle ``LIFETIME`` ("").

Whoever draws (imports, re-processing, re-rating) first locks the accounts'
counters (``CounterRepository.lock``) and reads them inside the same transaction
that stores the draws, so two concurrent imports for one account never draw the
same allowance or discount use (ADR 0014). Questions (quotes) read without a lock.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from services.rating.service_layer.unit_of_work import CounterKey, RatingUnitOfWork


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def cycle_start(instant: datetime, time_zone: str, bill_cycle_day: int) -> date:
    """First day of the bill cycle containing ``instant`` for an account."""
    local = instant.astimezone(_zone(time_zone or "UTC")).date()
    day = max(1, bill_cycle_day)
    this_month = min(day, calendar.monthrange(local.year, local.month)[1])
    if local.day >= this_month:
        return date(local.year, local.month, this_month)
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


# The "cycle" of counters that span the account's whole life (lifetime discount uses).
LIFETIME = ""


def allowance_counter(code: str) -> str:
    return f"allowance:{code}"


def usage_counter(service: str) -> str:
    return f"usage:{service}"


def discount_counter(code: str) -> str:
    return f"discount:{code}"


class CycleCounters:
    def __init__(self) -> None:
        self._values: dict[CounterKey, int] = {}
        self._loaded: set[tuple[str, str]] = set()
        self.increments: dict[CounterKey, int] = {}

    def load(self, uow: RatingUnitOfWork, cycles: Iterable[tuple[str, str]]) -> None:
        """Read the stored counters of (account, cycle start) pairs not read yet."""
        wanted = {cycle for cycle in cycles if cycle not in self._loaded}
        if not wanted:
            return
        for key, units in uow.counters.read(wanted).items():
            # Increments of this run not yet stored are already in the value.
            self._values[key] = units + self._values.get(key, 0)
        self._loaded |= wanted

    def get(self, key: CounterKey) -> int:
        return self._values.get(key, 0)

    def add(self, key: CounterKey, units: int) -> None:
        if units:
            self._values[key] = self._values.get(key, 0) + units
            self.increments[key] = self.increments.get(key, 0) + units

    def take_increments(self) -> dict[CounterKey, int]:
        """Increments since the last call: stored with the batch that caused them."""
        taken, self.increments = self.increments, {}
        return taken

    def undo(self, increments: dict[CounterKey, int]) -> None:
        """Forget increments whose batch was not stored (it will be rated again)."""
        for key, units in increments.items():
            self._values[key] = self._values.get(key, 0) - units

    def forget(self) -> None:
        """Drop cached values (bounded memory); the next ``load`` reads them again."""
        self._values = {k: v for k, v in self.increments.items()}
        self._loaded.clear()
