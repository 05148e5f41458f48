"""Compiled tariffs per catalog revision, cached in memory.

A catalog revision is stored as the document operators wrote plus a destination
prefix set (tens of thousands of rows). Compiling it (parsing, validating,
building the engine's prefix maps) takes a fraction of a second, so each
revision is compiled once per process and kept; rating then never touches SQL
for tariff data. Which revision is current is re-checked at most every
``refresh_seconds``, so a catalog applied through another replica is in force
here within that time; one applied through this process is in force at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from services.common.errors import FailedPrecondition
from services.common.heap import settle_heap
from services.rating.domain.catalog import Allowance, Catalog, UsageUnit
from services.rating.domain.charge_models import GraduatedTiers, Package, VolumeTiers
from services.rating.domain.destinations import DestinationTable
from services.rating.domain.discounts import Discount
from services.rating.domain.document import parse_catalog
from services.rating.domain.engine import RatingEngine
from services.rating.domain.timebands import epoch_seconds
from services.rating.service_layer.catalog_document import as_mapping, load_document
from services.rating.service_layer.model import CatalogRevision
from services.rating.service_layer.unit_of_work import RatingUnitOfWork


class NoCatalog(FailedPrecondition):
    default_reason = "NO_CATALOG"


_CUMULATIVE_MODELS = (Package, GraduatedTiers, VolumeTiers)


@dataclass(frozen=True)
class Tariff:
    """One catalog revision compiled for rating, with what the cycle counters need."""

    revision: int
    engine: RatingEngine
    units: dict[str, UsageUnit]
    # Per plan: (valid from, valid to, allowances) of each version, in epoch seconds.
    allowance_windows: dict[str, tuple[tuple[int, int, tuple[Allowance, ...]], ...]] = field(
        default_factory=dict
    )
    # Some rate prices on the cycle total (package, tiers): usage to date matters.
    cumulative: bool = False
    # Discounts limited in count, by code: their uses are counted per account (or cycle).
    counted_discounts: dict[str, Discount] = field(default_factory=dict)

    @classmethod
    def of(cls, revision: int, engine: RatingEngine) -> Tariff:
        catalog = engine.catalog
        windows = {
            plan.code: tuple(
                (*version.window, version.allowances)
                for version in plan.versions
                if version.allowances
            )
            for plan in catalog.plans
        }
        rates = [
            rate for plan in catalog.plans for version in plan.versions for rate in version.rates
        ] + [rate for package in catalog.packages for v in package.versions for rate in v.rates]
        return cls(
            revision,
            engine,
            {product.code: product.unit for product in catalog.products},
            {code: found for code, found in windows.items() if found},
            any(isinstance(rate.pricing, _CUMULATIVE_MODELS) for rate in rates),
            {d.code: d for d in catalog.discounts if d.max_uses is not None},
        )

    @property
    def catalog(self) -> Catalog:
        return self.engine.catalog

    @cached_property
    def needs_counters(self) -> bool:
        """Whether rating depends on earlier usage of the bill cycle at all."""
        return self.cumulative or bool(self.allowance_windows) or bool(self.counted_discounts)

    @cached_property
    def unit_names(self) -> dict[str, str]:
        """Product code -> unit word: an enum's ``.value`` is slow on a per-record path."""
        return {code: unit.value for code, unit in self.units.items()}

    def allowances_at(self, plan: str, instant: datetime, service: str) -> tuple[Allowance, ...]:
        """The allowances for ``service`` of the plan version in force at ``instant``."""
        windows = self.allowance_windows.get(plan)
        if not windows:
            return ()
        moment = epoch_seconds(instant)
        for start, end, allowances in windows:
            if start <= moment < end:
                return tuple(a for a in allowances if a.service == service)
        return ()


def compile_revision(revision: CatalogRevision, destinations: DestinationTable) -> Tariff:
    """Build the engine for a stored revision (its document was valid when applied)."""
    loaded = load_document(revision.document, json_document=revision.document_format == "json")
    document = as_mapping(loaded.content) or {}
    catalog = parse_catalog(document, destinations=destinations)
    assert revision.revision is not None
    return Tariff.of(revision.revision, RatingEngine(catalog))


def _settle_heap() -> None:
    """Keep a compiled tariff out of the garbage collector's way.

    A compiled catalog is hundreds of thousands of long-lived objects (prefix maps,
    prices); every full collection would walk them all while an import allocates
    millions of short-lived ones, which costs rating more than a third of its time.
    Tariffs no longer cached are released before the survivors are frozen (ADR 0013).
    """
    settle_heap(release_unreachable=True)


class TariffCache:
    def __init__(
        self,
        uow_factory: Callable[[], RatingUnitOfWork],
        *,
        refresh_seconds: float = 2.0,
        keep: int = 3,
    ) -> None:
        self._uow_factory = uow_factory
        self._refresh = refresh_seconds
        self._keep = keep
        self._compiled: OrderedDict[int, Tariff] = OrderedDict()
        self._current: int | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def current(self) -> Tariff:
        """The tariff in force; ``NoCatalog`` when no catalog was ever applied."""
        now = time.monotonic()
        if self._current is None or now - self._checked > self._refresh:
            with self._uow_factory() as uow:
                number = uow.catalog.current_number()
            self._current = number
            self._checked = now
        if self._current is None:
            raise NoCatalog("no catalog has been applied yet: apply one with ApplyCatalog")
        return self.at(self._current)

    def current_or_none(self) -> Tariff | None:
        try:
            return self.current()
        except NoCatalog:
            return None

    def at(self, revision: int) -> Tariff:
        with self._lock:
            found = self._compiled.get(revision)
            if found is not None:
                self._compiled.move_to_end(revision)
                return found
            with self._uow_factory() as uow:
                stored = uow.catalog.get(revision)
                if stored is None:
                    raise NoCatalog(f"catalog revision {revision} does not exist")
                rows = (
                    dict(uow.catalog.prefix_rows(stored.prefix_set_id))
                    if (stored.prefix_set_id)
                    else {}
                )
            tariff = compile_revision(stored, DestinationTable(rows))
            self._compiled[revision] = tariff
            while len(self._compiled) > self._keep:
                self._compiled.popitem(last=False)
            _settle_heap()
            return tariff

    def installed(self, tariff: Tariff) -> None:
        """A revision this process just applied: in force here at once."""
        with self._lock:
            self._compiled[tariff.revision] = tariff
            while len(self._compiled) > self._keep:
                self._compiled.popitem(last=False)
            _settle_heap()
        self._current = tariff.revision
        self._checked = time.monotonic()
