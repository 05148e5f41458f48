"""What goes on an account's invoice for a cycle boundary (pure: no I/O).

The invoice made when cycle P ends (the boundary D = P.end, N the cycle after)
carries, per the conventions:

- recurring fees **in advance** for N: every plan and add-on in force at D, in full;
- recurring fees **in arrears** for P: every plan and add-on that ran during P,
  prorated by the days it ran (``fee * days / days_in_cycle``, rounded once);
- usage of P (and anything rated earlier and not yet invoiced), aggregated into
  one line per account, service and destination group, summed exactly and
  rounded once;
- pending items: mid-cycle changes (a credit for the unused part of the old
  price, a charge for the new one, priced from the plan's in-advance fees),
  one-time fees of new subscriptions, and charges or credits added by operators
  or dunning.

Prices come from rating as ``FeeQuote``s (nets after the plan's discounts) and
the VAT rate of each service from rating's tax rules; invoicing only prorates,
aggregates and adds up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext
from enum import StrEnum

from services.common.money import Money, Rounding, round_decimal

from .arithmetic import round_money
from .cycles import Cycle, prorate
from .model import InvoiceLine, LineKind, PendingItem


class FeeTiming(StrEnum):
    IN_ADVANCE = "in_advance"
    IN_ARREARS = "in_arrears"
    ONE_TIME = "one_time"


@dataclass(frozen=True)
class FeeQuote:
    """A plan fee as rating prices it for this account: the net of one unit for a cycle."""

    code: str
    name: str
    service: str
    amount: Money
    timing: FeeTiming
    tax_category: str
    tax_rate: Decimal


@dataclass(frozen=True)
class TaxRate:
    category: str
    rate: Decimal


@dataclass(frozen=True)
class Segment:
    """A plan or add-on of a subscription in force over [start, end)."""

    subscription_id: str
    item_code: str
    is_add_on: bool
    quantity: int
    start: datetime
    end: datetime | None

    def active_at(self, instant: datetime) -> bool:
        return self.start <= instant and (self.end is None or instant < self.end)


@dataclass(frozen=True)
class RatedUsage:
    record_id: str
    account_id: str
    service: str
    destination: str
    quantity: Decimal
    unit: str
    net: Decimal
    event_time: datetime


@dataclass(frozen=True)
class UsageTotal:
    """The rated usage of one account for one (service, destination group, unit), added up.

    ``net`` is the exact sum (never rounded here); ``first``/``last`` the event times of
    the earliest and latest record. A bill run's storage adds records up in SQL
    (ADR 0056); ``total_usage`` does the same for records in memory.
    """

    service: str
    destination: str
    unit: str
    count: int
    quantity: Decimal
    net: Decimal
    first: datetime
    last: datetime


def total_usage(records: Sequence[RatedUsage]) -> list[UsageTotal]:
    """Records grouped per (service, destination, unit), summed exactly."""
    groups: dict[tuple[str, str, str], list[RatedUsage]] = {}
    for record in records:
        groups.setdefault((record.service, record.destination, record.unit), []).append(record)
    totals = []
    for (service, destination, unit), members in groups.items():
        with localcontext() as context:
            context.prec = 60
            exact = sum((r.net for r in members), Decimal(0))
            quantity = sum((r.quantity for r in members), Decimal(0))
        totals.append(
            UsageTotal(
                service,
                destination,
                unit,
                len(members),
                quantity,
                exact,
                min(r.event_time for r in members),
                max(r.event_time for r in members),
            )
        )
    return totals


@dataclass
class Charges:
    """What one account contributes to an invoice (its own or its parent's).

    Usage comes either as records (``usage``: their ids are reported in
    ``BuiltLines.usage_record_ids`` for the caller to take) or already added up and
    taken by storage (``usage_totals``); both may be given.
    """

    account_id: str
    segments: Sequence[Segment] = ()
    usage: Sequence[RatedUsage] = ()
    pending: Sequence[PendingItem] = ()
    usage_totals: Sequence[UsageTotal] = ()


@dataclass
class BuiltLines:
    lines: list[InvoiceLine] = field(default_factory=list)
    usage_record_ids: list[str] = field(default_factory=list)
    pending_item_ids: list[str] = field(default_factory=list)
    # Priced pending items "not subject to VAT" (O: top-up receipts) and their lines.
    not_subject: list[tuple[str, InvoiceLine]] = field(default_factory=list)


class Pricing:
    """The fee quotes and VAT rates of an account, as fetched from rating."""

    def __init__(
        self,
        fees: Mapping[str, Sequence[FeeQuote]],
        tax_rates: Mapping[str, TaxRate],
        default_tax: TaxRate,
    ) -> None:
        self.fees = fees
        self.tax_rates = tax_rates
        self.default_tax = default_tax

    def of(self, plan_code: str, timing: FeeTiming) -> list[FeeQuote]:
        return [fee for fee in self.fees.get(plan_code, ()) if fee.timing == timing]

    def tax_for(self, service: str) -> TaxRate:
        return self.tax_rates.get(service, self.default_tax)


def build_lines(
    *,
    boundary: Cycle,
    ended: Cycle | None,
    currency: str,
    sources: Sequence[Charges],
    pricing: Pricing,
    billing_account_id: str,
) -> BuiltLines:
    """The lines of the invoice at the start of ``boundary`` (``ended`` is the cycle before).

    ``ended`` is None for an immediate invoice (pending items only).
    """
    out = BuiltLines()
    for source in sources:
        child = "" if source.account_id == billing_account_id else source.account_id
        if ended is not None:
            _advance_fees(out, boundary, source, pricing, child)
            _arrears_fees(out, ended, source, pricing, child)
        _pending(out, source, pricing, child, currency)
        _usage(out, source, pricing, child, currency)
    _keep_not_subject_apart(out)
    for index, line in enumerate(out.lines, start=1):
        out.lines[index - 1] = _with_id(line, str(index))
    return out


def _keep_not_subject_apart(out: BuiltLines) -> None:
    """EN 16931 allows "not subject to VAT" (O) only alone on a document (BR-O-11..14):
    priced pending items in O (top-up receipts) beside other charges stay pending, for an
    invoice of their own (``CreateImmediateInvoice`` once the others are billed)."""
    if not out.not_subject or all(line.tax_category == "O" for line in out.lines):
        return
    lines = {id(line) for _, line in out.not_subject}
    items = {item_id for item_id, _ in out.not_subject}
    out.lines = [line for line in out.lines if id(line) not in lines]
    out.pending_item_ids = [i for i in out.pending_item_ids if i not in items]
    out.not_subject = []


def _with_id(line: InvoiceLine, line_id: str) -> InvoiceLine:
    # A copy with its id, field by field as ``dataclasses.replace`` would make it but
    # without running ``__init__`` again: a bill run numbers thousands of lines.
    copy = object.__new__(InvoiceLine)
    copy.__dict__.update(line.__dict__, line_id=line_id)
    return copy


def _fee_line(
    fee: FeeQuote,
    segment_or_item: Segment | PendingItem,
    *,
    quantity: int,
    days: int,
    days_in_cycle: int,
    period: tuple[datetime, datetime],
    child: str,
    credit: bool = False,
    kind: LineKind | None = None,
) -> InvoiceLine:
    # The line is rounded once (fee x quantity x days / days in cycle); the unit price
    # shown is that net per unit, with up to 9 decimals (EN 16931 allows them).
    net = prorate(Money(fee.amount.amount * quantity, fee.amount.currency), days, days_in_cycle)
    unit = (
        net
        if quantity == 1
        else Money(round_decimal(net.amount / quantity, 9, Rounding.HALF_UP), net.currency)
    )
    full = days == days_in_cycle
    label = fee.name or fee.code
    if not full:
        label = f"{label} ({days}/{days_in_cycle} days)"
    if credit:
        label = f"Unused {label}"
        net = -net
    subscription_id = segment_or_item.subscription_id
    plan_code = (
        segment_or_item.item_code
        if isinstance(segment_or_item, Segment)
        else segment_or_item.fee_plan_code
    )
    return InvoiceLine(
        line_id="",
        kind=kind or (LineKind.RECURRING if full and not credit else LineKind.PRORATION),
        description=label,
        service=fee.service,
        quantity=Decimal(quantity),
        unit_code="C62",
        unit_price=-unit if credit else unit,
        net_amount=net,
        tax_category=fee.tax_category,
        tax_rate=fee.tax_rate,
        period_start=period[0],
        period_end=period[1],
        subscription_id=subscription_id,
        plan_code=plan_code,
        source_account_id=child,
    )


def _advance_fees(
    out: BuiltLines, boundary: Cycle, source: Charges, pricing: Pricing, child: str
) -> None:
    start = boundary.start
    for segment in source.segments:
        if not segment.active_at(start):
            continue
        for fee in pricing.of(segment.item_code, FeeTiming.IN_ADVANCE):
            out.lines.append(
                _fee_line(
                    fee,
                    segment,
                    quantity=segment.quantity,
                    days=boundary.days,
                    days_in_cycle=boundary.days,
                    period=(boundary.start, boundary.end),
                    child=child,
                )
            )


def _arrears_fees(
    out: BuiltLines, ended: Cycle, source: Charges, pricing: Pricing, child: str
) -> None:
    for segment in source.segments:
        start = max(segment.start, ended.start)
        end = ended.end if segment.end is None else min(segment.end, ended.end)
        if start >= end:
            continue
        days = ended.days_until(end) - ended.days_until(start)
        if days <= 0:
            continue
        for fee in pricing.of(segment.item_code, FeeTiming.IN_ARREARS):
            out.lines.append(
                _fee_line(
                    fee,
                    segment,
                    quantity=segment.quantity,
                    days=days,
                    days_in_cycle=ended.days,
                    period=(start, end),
                    child=child,
                )
            )


def _pending(out: BuiltLines, source: Charges, pricing: Pricing, child: str, currency: str) -> None:
    for item in source.pending:
        out.pending_item_ids.append(item.pending_item_id)
        if item.fee_plan_code:
            timing = FeeTiming.ONE_TIME if item.kind == LineKind.ONE_TIME else FeeTiming.IN_ADVANCE
            for fee in pricing.of(item.fee_plan_code, timing):
                days_in_cycle = item.days_in_cycle if timing != FeeTiming.ONE_TIME else 1
                days = item.days_used if timing != FeeTiming.ONE_TIME else 1
                period = (
                    item.period_start or item.create_time,
                    item.period_end or item.create_time,
                )
                out.lines.append(
                    _fee_line(
                        fee,
                        item,
                        quantity=item.quantity,
                        days=days,
                        days_in_cycle=days_in_cycle,
                        period=period,
                        child=child,
                        credit=item.credit,
                        kind=LineKind.ONE_TIME if timing == FeeTiming.ONE_TIME else None,
                    )
                )
            continue
        if item.amount is None:
            continue
        tax = (
            TaxRate(item.tax_category, item.tax_rate)
            if item.tax_category and item.tax_rate is not None
            else pricing.tax_for(item.service)
        )
        line = InvoiceLine(
            line_id="",
            kind=item.kind,
            description=item.description,
            service=item.service,
            quantity=Decimal(1),
            unit_code="C62",
            unit_price=item.amount,
            net_amount=item.amount,
            tax_category=tax.category,
            tax_rate=tax.rate,
            period_start=item.period_start,
            period_end=item.period_end,
            source_account_id=child,
        )
        out.lines.append(line)
        if tax.category == "O":
            out.not_subject.append((item.pending_item_id, line))


def _usage(out: BuiltLines, source: Charges, pricing: Pricing, child: str, currency: str) -> None:
    totals: dict[tuple[str, str, str], UsageTotal] = {}
    for total in [*total_usage(source.usage), *source.usage_totals]:
        key = (total.service, total.destination, total.unit)
        totals[key] = _merge(totals[key], total) if key in totals else total
    for (service, destination, unit), total in sorted(totals.items()):
        net = round_money(total.net, currency)
        tax = pricing.tax_for(service)
        label = f"{service} {destination}".strip() + f" ({total.count} records)"
        out.lines.append(
            InvoiceLine(
                line_id="",
                kind=LineKind.USAGE,
                description=label,
                service=service,
                destination_group=destination,
                quantity=total.quantity,
                unit_code=unit_code(unit),
                unit_price=_unit_price(total.net, total.quantity, currency),
                net_amount=net,
                tax_category=tax.category,
                tax_rate=tax.rate,
                period_start=total.first,
                period_end=total.last,
                source_account_id=child,
                detail_count=total.count,
                unrounded_amount=total.net,
            )
        )
    out.usage_record_ids.extend(r.record_id for r in source.usage)


def _merge(a: UsageTotal, b: UsageTotal) -> UsageTotal:
    with localcontext() as context:
        context.prec = 60
        return UsageTotal(
            a.service,
            a.destination,
            a.unit,
            a.count + b.count,
            a.quantity + b.quantity,
            a.net + b.net,
            min(a.first, b.first),
            max(a.last, b.last),
        )


# Rating's units as UN/ECE recommendation 20 codes (EN 16931 BT-130).
UNIT_CODES = {"second": "SEC", "minute": "MIN", "byte": "AD", "event": "C62", "unit": "C62"}


def unit_code(unit: str) -> str:
    if unit.lower() in UNIT_CODES:
        return UNIT_CODES[unit.lower()]
    return unit if unit.isupper() and 2 <= len(unit) <= 3 else "C62"


def _unit_price(exact: Decimal, quantity: Decimal, currency: str) -> Money:
    # Informative average price per unit (the line net is the rounded exact sum).
    if quantity == 0:
        return Money(exact.quantize(Decimal("0.000001")), currency)
    with localcontext() as context:
        context.prec = 40
        return Money((exact / quantity).quantize(Decimal("0.000001")), currency)
