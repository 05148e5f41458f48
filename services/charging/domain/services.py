"""Rating groups: what each service is measured in and how it is charged.

A credit-control request names rating groups; their definitions say the unit
(seconds, bytes, a count of something, or money), whether the service is priced
by rating (unit buckets first, then money), drawn from unit buckets only, or
free (and then allowed even for suspended or barred accounts, CHG-11).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from services.charging.domain.units import Unit, UnitKind

MAX_RATING_GROUP: Final = 2**32 - 1


class Charging(StrEnum):
    RATED = "rated"
    UNITS_ONLY = "units_only"
    FREE = "free"


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    rating_group: int
    service: str
    unit_kind: UnitKind
    unit_name: str = ""
    charging: Charging = Charging.RATED
    default_quota: int = 0
    validity_seconds: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.rating_group <= MAX_RATING_GROUP:
            raise ValueError("rating group out of range")

    @property
    def is_free(self) -> bool:
        return self.charging is Charging.FREE

    @property
    def is_rated(self) -> bool:
        return self.charging is Charging.RATED and self.unit_kind is not UnitKind.MONEY

    def unit(self, currency: str = "") -> Unit:
        """The unit requests of this service use; money services take the request's currency."""
        if self.unit_kind is UnitKind.SERVICE_UNITS:
            return Unit(UnitKind.SERVICE_UNITS, self.unit_name or "unit")
        if self.unit_kind is UnitKind.MONEY:
            return Unit(UnitKind.MONEY, currency)
        return Unit(self.unit_kind)

    def accepts(self, unit: Unit) -> bool:
        if unit.kind is not self.unit_kind:
            return False
        if self.unit_kind is UnitKind.SERVICE_UNITS:
            return unit.code == (self.unit_name or "unit")
        return True
