"""Buckets and the order they are drawn in (CHG-5, CHG-6).

A bucket holds one unit (money of one currency, seconds, bytes or a count of
something) with a priority, an optional validity window and optionally the
services or rating groups it applies to. The rules, which the Lua scripts
implement again for atomicity (``adapters/lua/_lib.lua``, checked against this
module by a differential test):

- a bucket is *usable* at ``t`` when ``valid_from <= t < valid_until`` (each bound
  optional); an expired or not-yet-valid bucket is never drawn;
- it *applies* to a service and rating group when it names neither, or names the
  service or the rating group;
- among the buckets of the wanted unit, the draw order is: lower priority first,
  then the one expiring first (no end = last), then the oldest, then by id; the
  account's main money bucket (its credit line) always comes last;
- a postpaid account draws money only from its credit line; hybrid and prepaid
  draw every money bucket;
- free units come before money: a rating group is served from unit buckets while
  any applicable one has units left and only then from money (see ``wallet``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from services.charging.domain.accounts import BillingMode
from services.charging.domain.instants import to_ms
from services.charging.domain.units import Unit


@dataclass(frozen=True, slots=True)
class Bucket:
    bucket_id: str
    account_id: str
    unit: Unit
    priority: int = 100
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    services: frozenset[str] = field(default_factory=frozenset)
    rating_groups: frozenset[int] = field(default_factory=frozenset)
    label: str = ""
    main: bool = False
    created_at: datetime | None = None
    # Raised by every change after creation (UpdateBucket, CloseBucket), so SQL applies a
    # bucket's records in the order they were made, whatever order they arrive in.
    version: int = 0

    def usable_at(self, instant: datetime) -> bool:
        if self.valid_from is not None and instant < self.valid_from:
            return False
        return self.valid_until is None or instant < self.valid_until

    def applies_to(self, service: str, rating_group: int) -> bool:
        if not self.services and not self.rating_groups:
            return True
        return service in self.services or rating_group in self.rating_groups

    def draw_key(self) -> tuple[int, int, int, int, str]:
        """Sort key of the draw order; the Lua scripts sort by the same tuple."""
        until = to_ms(self.valid_until) if self.valid_until is not None else 0
        created = to_ms(self.created_at) if self.created_at is not None else 0
        return (
            1 if self.main else 0,
            self.priority,
            until if until else 2**62,
            created,
            self.bucket_id,
        )


def draw_order(
    buckets: Iterable[Bucket],
    unit: Unit,
    *,
    service: str,
    rating_group: int,
    at: datetime,
    mode: BillingMode,
) -> list[Bucket]:
    """The buckets of ``unit`` a rating group may draw from at ``at``, in draw order."""
    chosen = [
        bucket
        for bucket in buckets
        if bucket.unit == unit
        and bucket.usable_at(at)
        and bucket.applies_to(service, rating_group)
        and not (unit.is_money and mode is BillingMode.POSTPAID and not bucket.main)
    ]
    return sorted(chosen, key=Bucket.draw_key)


def display_order(buckets: Iterable[Bucket]) -> list[Bucket]:
    """Unit buckets before money, then the draw order: how a balance is shown."""
    return sorted(buckets, key=lambda b: (1 if b.unit.is_money else 0, b.unit.key, *b.draw_key()))
