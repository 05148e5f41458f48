"""Wire <-> service-layer translation for the rating API (used only by the servicer).

Request readers collect every problem into ``Violations`` naming the request
field (``events[3].quantity.value``), so one bad call reports all its faults.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from google.type import money_pb2

from reckon.rating.v1 import rating_pb2
from services.common.errors import InvalidArgument, Violations
from services.common.money import Money
from services.common.proto_convert import (
    MAX_MONEY_UNITS,
    money_from_proto,
    money_to_proto,
    timestamp_from_proto,
    timestamp_to_proto,
)
from services.rating.domain.catalog import (
    Catalog,
    PackageVersion,
    PlanVersion,
    PricePackage,
    PricePlan,
)
from services.rating.service_layer.model import ImportFile, Reject
from services.rating.service_layer.pricing import UsageInput
from services.rating.service_layer.unit_of_work import RatedRow
from services.rating.service_layer.usage_formats import PRESETS, ImportOptions, UsageFormat

MAX_ID: Final = 128
MAX_ACCOUNT_ID: Final = 64
MAX_SERVICE: Final = 64
MAX_DESTINATION: Final = 64
MAX_BATCH: Final = 10_000

UNIT_NAMES: Final = {
    rating_pb2.QUANTITY_UNIT_SECOND: "second",
    rating_pb2.QUANTITY_UNIT_BYTE: "byte",
    rating_pb2.QUANTITY_UNIT_EVENT: "event",
    rating_pb2.QUANTITY_UNIT_UNIT: "unit",
}
UNIT_ENUMS: Final = {name: value for value, name in UNIT_NAMES.items()}
_COST_LIMITS: Final = {
    None: rating_pb2.COST_LIMIT_NONE,
    "minimum": rating_pb2.COST_LIMIT_MINIMUM,
    "maximum": rating_pb2.COST_LIMIT_MAXIMUM,
}


# Event times rating can place in a time band and a bill cycle (the engine's range).
_EARLIEST_EVENT = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST_EVENT = datetime(2200, 1, 1, tzinfo=UTC)


def _event_time(value: Any, now: datetime, violations: Violations) -> datetime:
    try:
        moment: datetime = timestamp_from_proto(value, "event_time")
    except (ValueError, OverflowError, InvalidArgument):
        violations.add("event_time", "is not a valid timestamp")
        return now
    if not _EARLIEST_EVENT <= moment < _LATEST_EVENT:
        violations.add("event_time", "must be in the years 1900-2199")
        return now
    return moment


def _money(amount: str | Decimal, currency: str) -> money_pb2.Money:
    return money_to_proto(Money(Decimal(amount), currency))


def quantity(value: int, unit: str) -> rating_pb2.Quantity:
    return rating_pb2.Quantity(value=value, unit=UNIT_ENUMS.get(unit, 0))  # type: ignore[arg-type]


# -- requests ---------------------------------------------------------------------------


def usage_from_proto(
    event: rating_pb2.UsageEvent, violations: Violations, *, now: datetime
) -> UsageInput | None:
    before = len(violations.items)
    if len(event.record_id) > MAX_ID:
        violations.add("record_id", f"must be at most {MAX_ID} characters")
    violations.require(event.account_id, "account_id")
    if len(event.account_id) > MAX_ACCOUNT_ID:
        violations.add("account_id", f"must be at most {MAX_ACCOUNT_ID} characters")
    violations.require(event.service, "service")
    if len(event.service) > MAX_SERVICE:
        violations.add("service", f"must be at most {MAX_SERVICE} characters")
    if len(event.destination) > MAX_DESTINATION:
        violations.add("destination", f"must be at most {MAX_DESTINATION} characters")
    event_time = now
    if event.HasField("event_time"):
        event_time = _event_time(event.event_time, now, violations)
    else:
        violations.add("event_time", "is required")
    unit = ""
    if not event.HasField("quantity"):
        violations.add("quantity", "is required")
    else:
        if event.quantity.value < 0:
            violations.add("quantity.value", "must not be negative")
        elif event.quantity.value > MAX_MONEY_UNITS:
            violations.add("quantity.value", "is out of range: at most 10^15")
        if event.quantity.unit not in (0, *UNIT_NAMES):
            violations.add("quantity.unit", "is not a known unit")
        unit = UNIT_NAMES.get(event.quantity.unit, "")
    amount = None
    if event.HasField("base_amount"):
        money = money_from_proto(event.base_amount, "base_amount", violations)
        amount = money.amount if money is not None else None
    if len(violations.items) > before:
        return None
    return UsageInput(
        event.record_id,
        event.account_id,
        event.service,
        event.destination,
        event_time,
        event.quantity.value,
        unit,
        amount,
    )


def quote_usage(
    request: rating_pb2.QuoteRequest | rating_pb2.UnitsForAmountRequest,
    violations: Violations,
    *,
    now: datetime,
    quantity_value: int,
    unit: str,
) -> UsageInput:
    violations.require(request.account_id, "account_id")
    if len(request.account_id) > MAX_ACCOUNT_ID:
        violations.add("account_id", f"must be at most {MAX_ACCOUNT_ID} characters")
    violations.require(request.service, "service")
    if len(request.service) > MAX_SERVICE:
        violations.add("service", f"must be at most {MAX_SERVICE} characters")
    if len(request.destination) > MAX_DESTINATION:
        violations.add("destination", f"must be at most {MAX_DESTINATION} characters")
    event_time = now
    if request.HasField("event_time"):
        event_time = _event_time(request.event_time, now, violations)
    return UsageInput(
        "",
        request.account_id,
        request.service,
        request.destination,
        event_time,
        quantity_value,
        unit,
        None,
    )


def import_options_from_proto(
    options: rating_pb2.UsageFileOptions, file_name: str
) -> ImportOptions:
    """Options as given; ``ImportOptions.validate`` names the bad fields."""
    fmt = {
        rating_pb2.USAGE_FILE_FORMAT_CSV: UsageFormat.CSV,
        rating_pb2.USAGE_FILE_FORMAT_JSONL: UsageFormat.JSONL,
    }.get(options.format)
    if fmt is None:
        if options.format != rating_pb2.USAGE_FILE_FORMAT_UNSPECIFIED:
            fmt = "unknown"
        else:
            lowered = file_name.lower()
            fmt = (
                UsageFormat.JSONL
                if lowered.endswith((".jsonl", ".ndjson", ".json"))
                else (UsageFormat.CSV)
            )
    threshold = None
    if options.reject_threshold_percent:
        try:
            threshold = Decimal(options.reject_threshold_percent)
        except ArithmeticError:
            threshold = Decimal(-1)  # reported by validate()
        if not threshold.is_finite():
            threshold = Decimal(-1)
    return ImportOptions(
        format=fmt,
        preset=options.preset or "reckon",
        columns=dict(options.columns),
        has_header=options.has_header if options.has_header_set else None,
        default_service=options.default_service,
        source_time_zone=options.source_time_zone or "UTC",
        reject_threshold_percent=threshold,
    )


# -- responses --------------------------------------------------------------------------


def charge_to_proto(explained: dict[str, Any], start: datetime) -> rating_pb2.Charge:
    """A ``Charge`` from an explanation (see ``pricing.explanation``); absent steps are empty."""
    currency = explained["currency"]
    unit = explained.get("unit", "")
    segments = []
    for band, offset, seconds, first, increments, step, price, amount in explained.get(
        "segments", ()
    ):
        segments.append(
            rating_pb2.BandSegment(
                band=band,
                start_time=timestamp_to_proto(start + timedelta(seconds=offset)),
                seconds=seconds,
                first_increment_price=_money(first, currency),
                increments=increments,
                increment_seconds=step,
                increment_price=_money(price, currency),
                amount=_money(amount, currency),
            )
        )
    destination = None
    if explained.get("destination") or explained.get("prefix") or explained.get("number"):
        destination = rating_pb2.DestinationMatch(
            number=explained.get("number") or "",
            prefix=explained.get("prefix") or "",
            name=explained.get("destination") or "",
        )
    return rating_pb2.Charge(
        plan_code=explained["plan"],
        plan_version=explained["plan_version"],
        price_package=explained.get("package") or "",
        catalog_revision=explained["revision"],
        rate_id=explained["rate"],
        service=explained["service"],
        destination=destination,
        quantity=quantity(explained["quantity"], unit),
        charged_quantity=quantity(explained.get("charged", 0), unit),
        allowance_used=quantity(explained.get("allowance", 0), unit),
        connection_fee=_money(explained.get("connection_fee", "0"), currency),
        segments=segments,
        lines=[
            rating_pb2.ChargeLine(
                description=description,
                units=units,
                unit_price=price,
                amount=_money(amount, currency),
            )
            for description, units, price, amount in explained.get("lines", ())
        ],
        cost_limit=_COST_LIMITS.get(explained.get("cost_limit"), rating_pb2.COST_LIMIT_NONE),
        discounts=[
            rating_pb2.DiscountLine(code=code, name=code, amount=_money(amount, currency))
            for code, _kind, _value, amount in explained.get("discounts", ())
        ],
        net=_money(explained["net"], currency),
        taxes=[
            rating_pb2.TaxLine(
                code=code,
                name=name,
                percent=percent,
                inclusive=inclusive,
                amount=_money(amount, currency),
            )
            for code, name, percent, inclusive, amount in explained.get("taxes", ())
        ],
        gross=_money(explained["gross"], currency),
        time_zone=explained.get("time_zone", ""),
        tax_region=explained.get("tax_region", ""),
    )


def _version_summary(
    version: PlanVersion | PackageVersion, time_bands: str | None
) -> rating_pb2.PlanVersionSummary:
    return rating_pb2.PlanVersionSummary(
        version=version.version,
        valid_from=timestamp_to_proto(version.valid_from),
        valid_to=timestamp_to_proto(version.valid_to),
        services=sorted({rate.service for rate in version.rates}),
        rate_count=len(version.rates),
        time_bands=time_bands or "",
    )


def plan_to_proto(plan: PricePlan) -> rating_pb2.PlanSummary:
    return rating_pb2.PlanSummary(
        code=plan.code,
        name=plan.name,
        currency=plan.currency,
        versions=[
            _version_summary(v, v.time_bands)
            for v in sorted(plan.versions, key=lambda v: v.valid_from)
        ],
    )


def package_to_proto(package: PricePackage) -> rating_pb2.PricePackageSummary:
    return rating_pb2.PricePackageSummary(
        code=package.code,
        name=package.name,
        plan_code=package.plan,
        customer_id=package.customer_id or "",
        group=package.group or "",
        versions=[
            _version_summary(v, None) for v in sorted(package.versions, key=lambda v: v.valid_from)
        ],
    )


def catalog_summaries(
    catalog: Catalog,
) -> tuple[list[rating_pb2.PlanSummary], list[rating_pb2.PricePackageSummary]]:
    plans = [plan_to_proto(p) for p in sorted(catalog.plans, key=lambda p: p.code)]
    packages = [package_to_proto(p) for p in sorted(catalog.packages, key=lambda p: p.code)]
    return plans, packages


_IMPORT_STATUS: Final = {
    "importing": rating_pb2.IMPORT_STATUS_IMPORTING,
    "completed": rating_pb2.IMPORT_STATUS_COMPLETED,
    "failed": rating_pb2.IMPORT_STATUS_FAILED,
}


def reason_counts(counts: dict[str, int]) -> list[rating_pb2.ReasonCount]:
    return [
        rating_pb2.ReasonCount(reason=reason, count=count)
        for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def import_file_to_proto(import_file: ImportFile, duplicate_of: str = "") -> rating_pb2.ImportFile:
    return rating_pb2.ImportFile(
        file_id=import_file.file_id,
        file_name=import_file.file_name,
        checksum=import_file.checksum,
        status=_IMPORT_STATUS.get(str(import_file.status), 0),  # type: ignore[arg-type]
        failed_loudly=import_file.failed_loudly,
        failure_message=import_file.failure_message,
        records=import_file.records,
        rated=import_file.rated,
        rejected=import_file.rejected,
        skipped=import_file.skipped,
        rejects_by_reason=reason_counts(import_file.reason_counts()),
        rated_totals=[
            _money(amount, currency) for currency, amount in sorted(import_file.totals().items())
        ],
        start_time=timestamp_to_proto(import_file.started_at),
        finish_time=timestamp_to_proto(import_file.finished_at),
        duplicate_of=duplicate_of,
    )


_REJECT_STATUS: Final = {
    "open": rating_pb2.REJECT_STATUS_OPEN,
    "reprocessed": rating_pb2.REJECT_STATUS_REPROCESSED,
    "discarded": rating_pb2.REJECT_STATUS_DISCARDED,
}
REJECT_STATUS_NAMES: Final = {value: name for name, value in _REJECT_STATUS.items()}


def reject_to_proto(reject: Reject, file_name: str) -> rating_pb2.Reject:
    return rating_pb2.Reject(
        reject_id=str(reject.reject_id),
        file_id=reject.file_id,
        file_name=file_name,
        line=reject.line,
        record_id=reject.record_id,
        account_id=reject.account_id,
        reason=reject.reason,
        message=reject.message,
        raw_record=reject.raw_record,
        status=_REJECT_STATUS.get(str(reject.status), 0),  # type: ignore[arg-type]
        create_time=timestamp_to_proto(reject.created_at),
        attempts=reject.attempts,
    )


def rated_usage_to_proto(
    row: RatedRow, number_of: Callable[[str], str] | None = None
) -> rating_pb2.RatedUsage:
    nanos = Decimal(10) ** 9
    amount = Decimal(row.amount_nanos) / nanos
    net = Decimal(row.net_nanos) / nanos
    tax = Decimal(row.tax_nanos) / nanos
    # The stored breakdown plus what the row's columns say: the full explanation.
    explained = {
        **json.loads(row.breakdown),
        "revision": row.catalog_revision,
        "plan": row.plan_code,
        "plan_version": row.plan_version,
        "service": row.service,
        "currency": row.currency,
        "unit": row.unit,
        "quantity": row.quantity,
        "number": number_of(row.destination) if number_of is not None else "",
        "net": str(net),
        "tax": str(tax),
        "gross": str(amount),
    }
    return rating_pb2.RatedUsage(
        record_id=row.record_id,
        account_id=row.account_id,
        service=row.service,
        destination=row.destination,
        event_time=timestamp_to_proto(row.event_time),
        quantity=quantity(row.quantity, row.unit),
        amount=_money(amount, row.currency),
        net=_money(net, row.currency),
        tax=_money(tax, row.currency),
        plan_code=row.plan_code,
        file_id=row.file_id or "",
        line=row.line or 0,
        catalog_revision=row.catalog_revision,
        rate_time=timestamp_to_proto(row.rated_at),
        charge=charge_to_proto(explained, row.event_time),
        current=row.is_current,
        rerate_id=row.rerate_id or "",
    )


def preset_names() -> Sequence[str]:
    return sorted(PRESETS)


def utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)
