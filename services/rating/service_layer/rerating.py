"""Re-rating (RAT-7) of an account's usage in a period after a tariff correction.

Every current rating of the account with an event time in ``[start, end)`` is
rated again with the catalog in force now. Where the result differs (amount or
catalog revision), the old row becomes history (``is_current`` false) and the new
row, tagged with the re-rating run, takes its place, so nothing is overwritten
and the invoice can show the correction. A record that cannot be rated any more
keeps its old rating and is counted as failed. Totals before and after, and the
difference, are returned per currency, stored with the run and published as
``UsageRerated`` with the changed records, all in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.common.clock import Clock
from services.common.errors import InvalidArgument, ReckonError
from services.common.ids import new_id
from services.rating.service_layer.cycles import (
    LIFETIME,
    CycleCounters,
    allowance_counter,
    usage_counter,
)
from services.rating.service_layer.events import UsageRerated
from services.rating.service_layer.model import RerateRun
from services.rating.service_layer.pricing import (
    Subscriber,
    UsageInput,
    discount_key,
    rate_usage,
    stored_rating,
    subscriber,
)
from services.rating.service_layer.tariffs import TariffCache
from services.rating.service_layer.unit_of_work import RATED_COLUMNS, RatedRow, RatingUnitOfWork

_PAGE = 1000
_NANOS = Decimal(10) ** 9
_GROSS = RATED_COLUMNS.index("amount_nanos")
# One re-rating runs in one transaction; beyond this the caller should cut the period.
MAX_RERATE_RECORDS = 200_000


@dataclass(frozen=True)
class RerateTotals:
    currency: str
    old_total: Decimal
    new_total: Decimal

    @property
    def difference(self) -> Decimal:
        return self.new_total - self.old_total


def totals_of(run: RerateRun) -> list[RerateTotals]:
    raw: dict[str, dict[str, str]] = json.loads(run.totals)
    return [
        RerateTotals(currency, Decimal(values["old_total"]), Decimal(values["new_total"]))
        for currency, values in sorted(raw.items())
    ]


def rerate(
    uow_factory: Callable[[], RatingUnitOfWork],
    tariffs: TariffCache,
    clock: Clock,
    *,
    account_id: str,
    start: datetime,
    end: datetime,
    request_id: str = "",
) -> RerateRun:
    if end <= start:
        raise InvalidArgument.field("period_end", "must be after period_start")
    fingerprint = hashlib.sha256(
        f"{account_id}\0{start.isoformat()}\0{end.isoformat()}".encode()
    ).hexdigest()
    tariff = tariffs.current()
    now = clock.now()
    rerate_id = new_id("rrt")
    old: dict[str, int] = {}
    new: dict[str, int] = {}
    corrections: list[dict[str, Any]] = []
    records = changed = failed = 0
    with uow_factory() as uow:
        replayed = uow.replayed_resource("rerate", request_id, fingerprint)
        if replayed is not None:
            earlier = uow.rerates.get(replayed)
            if earlier is not None:
                return earlier
        account = subscriber(uow.accounts.get(account_id))
        if account is not None:
            # Released and drawn again under the account's lock, as imports draw (ADR 0014).
            uow.counters.lock([account_id])
        stored_rows = _current_rows(uow, account_id, start, end, rerate_id)
        records = len(stored_rows)
        counters = CycleCounters()
        if account is not None:
            # The cycles of the period and the account's lifetime counters (discount uses).
            cycles = {(account_id, account.cycle_of(r.event_time)) for r in stored_rows}
            counters.load(uow, cycles | {(account_id, LIFETIME)})
            for stored in stored_rows:
                _release(tariffs, account, stored, counters)
        superseded: list[int] = []
        rows = []
        for stored in stored_rows:
            old[stored.currency] = old.get(stored.currency, 0) + stored.amount_nanos
            usage = UsageInput(
                stored.record_id,
                stored.account_id,
                stored.service,
                stored.destination,
                stored.event_time,
                stored.quantity,
                amount=_base_amount(stored.breakdown),
            )
            try:
                charge, known, plan = rate_usage(tariff, account, usage, counters)
            except ReckonError:
                failed += 1
                new[stored.currency] = new.get(stored.currency, 0) + stored.amount_nanos
                if account is not None:
                    # It keeps its old rating, so it keeps what it drew too.
                    _release(tariffs, account, stored, counters, sign=1)
                continue
            row, _ = stored_rating(
                usage,
                charge,
                tariff,
                known,
                plan,
                file_id=stored.file_id,
                line=stored.line,
                rated_at=now,
                rerate_id=rerate_id,
            )
            amount = row[_GROSS]
            new[charge.currency] = new.get(charge.currency, 0) + amount
            if (
                amount == stored.amount_nanos
                and charge.currency == stored.currency
                and stored.catalog_revision == tariff.revision
                and charge.allowance_units == stored.allowance_units
            ):
                continue
            changed += 1
            superseded.append(stored.id)
            rows.append(row)
            corrections.append(
                {
                    "record_id": stored.record_id,
                    "event_time": stored.event_time.isoformat(),
                    "old": {
                        "amount": str(Decimal(stored.amount_nanos) / _NANOS),
                        "currency": stored.currency,
                    },
                    "new": {"amount": str(charge.gross), "currency": charge.currency},
                }
            )
        # History first, so the partial unique index sees one current row per record.
        uow.usage.supersede(superseded)
        uow.usage.add_rated(rows)
        # Net change of the cycle counters: new draws minus the released old ones.
        uow.counters.increment(counters.take_increments())
        totals = {
            currency: {
                "old_total": str(Decimal(old.get(currency, 0)) / _NANOS),
                "new_total": str(Decimal(new.get(currency, 0)) / _NANOS),
                "difference": str(Decimal(new.get(currency, 0) - old.get(currency, 0)) / _NANOS),
            }
            for currency in sorted(old.keys() | new.keys())
        }
        run = RerateRun(
            rerate_id=rerate_id,
            account_id=account_id,
            period_start=start,
            period_end=end,
            catalog_revision=tariff.revision,
            records=records,
            changed=changed,
            failed=failed,
            totals=json.dumps(totals, sort_keys=True),
            created_at=now,
            request_id=request_id,
        )
        uow.rerates.add(run)
        uow.remember_request("rerate", request_id, fingerprint, rerate_id)
        uow.publish(
            UsageRerated(
                rerate_id,
                account_id,
                start.isoformat(),
                end.isoformat(),
                tariff.revision,
                totals,
                corrections,
            )
        )
        uow.commit()
    return run


def _current_rows(
    uow: RatingUnitOfWork, account_id: str, start: datetime, end: datetime, rerate_id: str
) -> list[RatedRow]:
    """The account's current ratings in the period, in event time order (the order in
    which allowances are drawn again)."""
    found: list[RatedRow] = []
    after_id = 0
    while True:
        page = uow.usage.current_in_period(
            account_id, start, end, after_id, _PAGE, not_from_rerate=rerate_id
        )
        if not page:
            break
        after_id = page[-1].id
        found.extend(page)
        if len(found) > MAX_RERATE_RECORDS:
            raise InvalidArgument.field(
                "period_end", f"more than {MAX_RERATE_RECORDS} records: re-rate a shorter period"
            )
    found.sort(key=lambda row: (row.event_time, row.id))
    return found


def _release(
    tariffs: TariffCache,
    account: Subscriber,
    stored: RatedRow,
    counters: CycleCounters,
    *,
    sign: int = -1,
) -> None:
    """Give back (or, with ``sign=1``, take again) what an old rating drew from the
    cycle counters, as the revision that rated it counted them."""
    try:
        rated_with = tariffs.at(stored.catalog_revision)
    except ReckonError:
        return
    cycle = account.cycle_of(stored.event_time)
    if stored.allowance_units:
        candidates = rated_with.allowances_at(stored.plan_code, stored.event_time, stored.service)
        destination = json.loads(stored.breakdown).get("destination")
        chosen = next(
            (a for a in candidates if a.covers(stored.service, destination)),
            candidates[0] if candidates else None,
        )
        if chosen is not None:
            key = (account.account_id, cycle, allowance_counter(chosen.code))
            counters.add(key, sign * stored.allowance_units)
    if rated_with.cumulative:
        key = (account.account_id, cycle, usage_counter(stored.service))
        counters.add(key, sign * stored.charged_units)
    if rated_with.counted_discounts and '"discounts"' in stored.breakdown:
        # One use of each count-limited discount the old rating took money off.
        for line in json.loads(stored.breakdown).get("discounts", ()):
            discount = rated_with.counted_discounts.get(line[0])
            if discount is not None:
                counters.add(discount_key(account.account_id, cycle, discount), sign)


def _base_amount(stored_breakdown: str) -> Decimal | None:
    """The amount a percentage-priced record carried, kept in its breakdown."""
    try:
        value = json.loads(stored_breakdown).get("base_amount")
        return Decimal(value) if value is not None else None
    except (ValueError, ArithmeticError):
        return None
