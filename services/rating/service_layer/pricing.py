"""Rating one piece of usage for an account: from the account view to an explained charge.

The service layer's side of the tariff engine: it finds the account in rating's
local view, the plan the account was subscribed to at the event time, builds the
engine's ``UsageEvent`` and turns the engine's ``RatedCharge`` into the
*breakdown*: a JSON-ready dict stored with each rated record and translated to
the ``Charge`` message, so an invoice line can be explained long after the
catalog changed.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from json.encoder import encode_basestring_ascii
from typing import Any, Final, Protocol

from services.common.codes import EXTERNAL_PREFIX, service_id_candidates
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.rating.domain.catalog import Allowance
from services.rating.domain.destinations import normalise_number
from services.rating.domain.discounts import Discount, UsesPer
from services.rating.domain.engine import RatedCharge, UsageEvent
from services.rating.domain.errors import InvalidEvent, InvalidNumber
from services.rating.domain.taxes import TaxLine
from services.rating.service_layer.cycles import (
    LIFETIME,
    CycleCounters,
    allowance_counter,
    cycle_start,
    discount_counter,
    usage_counter,
)
from services.rating.service_layer.model import KnownAccount
from services.rating.service_layer.tariffs import Tariff
from services.rating.service_layer.unit_of_work import CounterKey, RatingUnitOfWork


class UnknownAccount(NotFound):
    default_reason = "UNKNOWN_ACCOUNT"


class NoPlan(FailedPrecondition):
    default_reason = "NO_PLAN"


class UnitMismatch(InvalidArgument):
    def __init__(self, field_name: str, description: str) -> None:
        super().__init__(
            InvalidArgument.field(field_name, description).violations, reason="UNIT_MISMATCH"
        )


class Usage(Protocol):
    """What rating needs of a piece of usage (a parsed file record or a request)."""

    @property
    def record_id(self) -> str: ...
    @property
    def account_id(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def destination(self) -> str: ...
    @property
    def event_time(self) -> datetime: ...
    @property
    def quantity(self) -> int: ...
    @property
    def unit(self) -> str: ...
    @property
    def amount(self) -> Decimal | None: ...


@dataclass(slots=True)
class UsageInput:
    """One piece of usage as the service layer receives it (from a file or a request)."""

    record_id: str
    account_id: str
    service: str
    destination: str
    event_time: datetime
    quantity: int
    unit: str = ""
    amount: Decimal | None = None


class Subscriber:
    """An account as rating reads it: plain attributes and its plans by start time.

    Built once from the stored ``KnownAccount`` and then read per record, so the hot
    path never goes through ORM attribute instrumentation or re-sorts assignments.
    """

    __slots__ = (
        "_plans",
        "_starts",
        "account_id",
        "bill_cycle_day",
        "customer_id",
        "customer_ref",
        "group",
        "tax_region",
        "time_zone",
    )

    def __init__(self, account: KnownAccount) -> None:
        self.account_id = account.account_id
        self.customer_id = account.customer_id
        # Price packages may name the customer by its external reference, ``ext:<ref>``.
        self.customer_ref = EXTERNAL_PREFIX + account.customer_ref if account.customer_ref else ""
        self.group = account.group_code
        self.time_zone = account.time_zone or "UTC"
        self.tax_region = account.tax_region
        self.bill_cycle_day = account.bill_cycle_day or 1
        ordered = sorted(account.assignments, key=lambda a: a.effective_from)
        self._starts = [a.effective_from for a in ordered]
        self._plans = [a.plan_code for a in ordered]

    def plan_at(self, instant: datetime) -> str | None:
        index = bisect_right(self._starts, instant) - 1
        if index < 0:
            return None
        return self._plans[index] or None  # an empty code records a cancelled subscription

    def cycle_of(self, instant: datetime) -> str:
        """The bill cycle (its first day, ISO) that ``instant`` falls in."""
        try:
            return cycle_start(instant, self.time_zone, self.bill_cycle_day).isoformat()
        except (OverflowError, ValueError):
            # Year 9999 moved into the account's zone leaves the calendar.
            raise InvalidEvent(
                "event_time", f"{instant.isoformat()} has no bill cycle (outside 1900-2199)"
            ) from None


def subscriber(account: KnownAccount | None) -> Subscriber | None:
    return Subscriber(account) if account is not None else None


def find_accounts(uow: RatingUnitOfWork, names: Collection[str]) -> dict[str, KnownAccount]:
    """The accounts ``names`` (a CDR's account field) stand for: account ids first, then
    other names (issue 9 item 12): ``ext:<ref>``, an E.164 number with or without its
    ``+``, a SIP URI, a conference PIN, a bridge account code; the first that names an
    account wins. Every name not found stays out of the answer."""
    found = uow.accounts.get_many(names)
    missing = [name for name in names if name not in found]
    if not missing:
        return found
    candidates = {name: service_id_candidates(name) for name in missing}
    owners = uow.accounts.by_aliases({c for keys in candidates.values() for c in keys})
    if not owners:
        return found
    targets = uow.accounts.get_many(set(owners.values()))
    for name, keys in candidates.items():
        owner = next((owners[key] for key in keys if key in owners), None)
        if owner is not None and owner in targets:
            found[name] = targets[owner]
    return found


def plan_for(account: Subscriber | None, account_id: str, at: datetime) -> tuple[Subscriber, str]:
    if account is None:
        raise UnknownAccount(f"account {account_id[:64]!r} is not known to rating")
    plan = account.plan_at(at)
    if plan is None:
        raise NoPlan(f"account {account.account_id} has no plan subscribed at {at.isoformat()}")
    return account, plan


def engine_event(usage: Usage, account: Subscriber, plan_code: str) -> UsageEvent:
    return UsageEvent(
        record_id=usage.record_id,
        account_id=account.account_id,
        plan_code=plan_code,
        service=usage.service,
        start=usage.event_time,
        quantity=usage.quantity,
        destination=usage.destination,
        customer_id=account.customer_id,
        customer_ref=account.customer_ref,
        group=account.group,
        time_zone=account.time_zone,
        tax_region=account.tax_region,
        amount=usage.amount,
    )


def check_unit(tariff: Tariff, usage: Usage) -> str:
    """The product's unit; ``UnitMismatch`` when the usage names another."""
    name = tariff.unit_names.get(usage.service, "")
    if usage.unit and name and usage.unit != name:
        raise UnitMismatch(
            "quantity.unit", f"{usage.service} is counted in {name}, not {usage.unit}"
        )
    return name


def rate_usage(
    tariff: Tariff,
    account: Subscriber | None,
    usage: Usage,
    counters: CycleCounters | None = None,
) -> tuple[RatedCharge, Subscriber, str]:
    """Price ``usage`` for its account with the tariff; raises the reason when it cannot.

    With ``counters`` (loaded for the account's cycle, see ``counter_cycles``),
    included allowances are drawn, packages and tiers see the cycle's earlier usage
    and count-limited discounts the uses left; the counters are advanced by what
    this event drew, used and took a discount use of.
    """
    known, plan = plan_for(account, usage.account_id, usage.event_time)
    check_unit(tariff, usage)
    event = engine_event(usage, known, plan)
    if counters is None or not tariff.needs_counters:
        return tariff.engine.rate(event), known, plan
    position = place_in_cycle(tariff, known, plan, usage, event, counters)
    charge = tariff.engine.rate(event)
    position.advance(counters, charge)
    return charge, known, plan


@dataclass(slots=True)
class CyclePosition:
    """The counters one event was priced against, to advance by what it drew."""

    usage_key: CounterKey | None = None
    allowance_key: CounterKey | None = None
    discount_keys: dict[str, CounterKey] | None = None

    def advance(self, counters: CycleCounters, charge: RatedCharge) -> None:
        if self.allowance_key is not None:
            counters.add(self.allowance_key, charge.allowance_units)
        if self.usage_key is not None:
            counters.add(self.usage_key, charge.charged_units)
        if self.discount_keys:
            for line in charge.discounts:
                if line.counted:
                    counters.add(self.discount_keys[line.code], 1)


def discount_key(account_id: str, cycle: str, discount: Discount) -> CounterKey:
    """Where the uses of a count-limited discount are counted for an account."""
    counted_over = cycle if discount.uses_per is UsesPer.CYCLE else LIFETIME
    return (account_id, counted_over, discount_counter(discount.code))


def counter_cycles(tariff: Tariff, account: Subscriber, instant: datetime) -> set[tuple[str, str]]:
    """The (account, cycle) counter groups rating an event of ``account`` at ``instant`` reads.

    Empty for an instant no cycle can hold (far outside the years rating accepts): the
    event's own rating then rejects it with the reason, not the whole batch."""
    try:
        wanted = {(account.account_id, account.cycle_of(instant))}
    except InvalidEvent:
        return set()
    if tariff.counted_discounts:
        wanted.add((account.account_id, LIFETIME))
    return wanted


def place_in_cycle(
    tariff: Tariff,
    known: Subscriber,
    plan: str,
    usage: Usage,
    event: UsageEvent,
    counters: CycleCounters,
) -> CyclePosition:
    """Set the event's position in the bill cycle from the counters: allowance left,
    usage to date (tiers, packages), uses left of count-limited discounts."""
    position = CyclePosition()
    cycle = known.cycle_of(usage.event_time)
    if tariff.cumulative:
        position.usage_key = (known.account_id, cycle, usage_counter(usage.service))
        event.usage_to_date = counters.get(position.usage_key)
    candidates = tariff.allowances_at(plan, usage.event_time, usage.service)
    if candidates:
        chosen: Allowance | None = candidates[0]
        if any(a.destinations for a in candidates):
            # Which allowance applies depends on the destination the rate matched:
            # price nothing once to learn it (the engine picks the same way).
            probe = tariff.engine.rate(replace(event, quantity=0))
            chosen = next(
                (a for a in candidates if a.covers(usage.service, probe.destination)), None
            )
        if chosen is not None:
            position.allowance_key = (known.account_id, cycle, allowance_counter(chosen.code))
            event.allowance_remaining = max(chosen.units - counters.get(position.allowance_key), 0)
    if tariff.counted_discounts:
        keys: dict[str, CounterKey] = {}
        uses: dict[str, int] = {}
        for code, discount in tariff.counted_discounts.items():
            key = keys[code] = discount_key(known.account_id, cycle, discount)
            assert discount.max_uses is not None
            uses[code] = max(discount.max_uses - counters.get(key), 0)
        position.discount_keys = keys
        event.discount_uses = uses
    return position


_NO_DESTINATION: Final = ""
# One encoder for every stored breakdown: compact, no circularity check (plain data).
_encode: Final = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
_string: Final = encode_basestring_ascii
_NANOS_PER_UNIT: Final = Decimal(10) ** 9


def normalised(tariff: Tariff, destination: str) -> str:
    if not destination:
        return _NO_DESTINATION
    try:
        return normalise_number(destination, tariff.catalog.numbering)
    except InvalidNumber:
        return _NO_DESTINATION


def breakdown(charge: RatedCharge, account: Subscriber) -> dict[str, Any]:
    """How a charge came about, as stored with each rated record (JSON-ready).

    Only what the record's columns do not already say (plan, version, revision,
    quantity, amounts, currency are columns), and only steps that happened: a key
    is absent when its value is empty or zero, which keeps a million stored
    breakdowns small. ``explanation`` adds the context for an answer on the wire.
    """
    explained: dict[str, Any] = {
        "rate": charge.rate_id,
        "charged": charge.charged_units,
        "usage": str(charge.usage_amount),
        "time_zone": account.time_zone,
        "tax_region": account.tax_region,
    }
    if charge.package_code is not None:
        explained["package"] = charge.package_code
        explained["package_version"] = charge.package_version
    if charge.destination is not None:
        explained["destination"] = charge.destination
    if charge.matched_prefix is not None:
        explained["prefix"] = charge.matched_prefix
    if charge.allowance_units:
        explained["allowance"] = charge.allowance_units
    if charge.connection_fee:
        explained["connection_fee"] = str(charge.connection_fee)
    if charge.segments:
        explained["segments"] = [
            [
                s.band,
                s.offset,
                s.seconds,
                str(s.first_increment),
                s.increments,
                s.increment_seconds,
                str(s.increment_price),
                str(s.amount),
            ]
            for s in charge.segments
        ]
    if charge.unit_lines:
        explained["lines"] = [
            [line.description, line.units, str(line.price), str(line.amount)]
            for line in charge.unit_lines
        ]
    if charge.rounding_adjustment:
        explained["rounding_adjustment"] = str(charge.rounding_adjustment)
    if charge.cost_limit is not None:
        explained["cost_limit"] = charge.cost_limit.value
        explained["limit_adjustment"] = str(charge.limit_adjustment)
    if charge.discounts:
        explained["discounts"] = [
            [d.code, d.kind.value, str(d.value), str(d.amount)] for d in charge.discounts
        ]
    if charge.taxes:
        explained["taxes"] = [
            [t.code, t.name, str(t.percent), t.inclusive, str(t.amount)] for t in charge.taxes
        ]
    return explained


def _json(value: Any) -> str:
    """One JSON value exactly as ``_encode`` writes it (str and int on the fast path)."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is int:
        return int.__repr__(value)
    return _encode(value)


# Memos keyed by object identity, holding the object so its id is not reused while
# remembered. The engine shares tax lines and the Decimals of repeated amounts between
# charges (a tariff charges a few tens of thousands of distinct amounts), so on a
# file these turn per-record encoding into dict hits. Identity, not equality: equal
# Decimals can print differently (1.0 and 1.00).
_MEMO_LIMIT: Final = 8192
_TAX_JSON: Final[dict[int, tuple[TaxLine, str]]] = {}
_AMOUNTS: Final[dict[int, tuple[Decimal, str, int, dict[str, str]]]] = {}


def _tax_json(line: TaxLine) -> str:
    """One tax line of ``breakdown_json``."""
    found = _TAX_JSON.get(id(line))
    if found is not None and found[0] is line:
        return found[1]
    text = (
        f'[{_json(line.code)},{_json(line.name)},"{line.percent!s}",'
        f'{"true" if line.inclusive else "false"},"{line.amount!s}"]'
    )
    if len(_TAX_JSON) < _MEMO_LIMIT:
        _TAX_JSON[id(line)] = (line, text)
    return text


def _amount(amount: Decimal, currency: str) -> tuple[Decimal, str, int, dict[str, str]]:
    """(amount, currency, nanos, ``UsageRated`` money item) of an amount; the item dict is
    shared between events: read-only."""
    found = _AMOUNTS.get(id(amount))
    if found is not None and found[0] is amount and found[1] == currency:
        return found
    made = (
        amount,
        currency,
        int(amount * _NANOS_PER_UNIT),
        {"amount": str(amount), "currency": currency},
    )
    if len(_AMOUNTS) < _MEMO_LIMIT:
        _AMOUNTS[id(amount)] = made
    return made


def breakdown_json(charge: RatedCharge, account: Subscriber, base_amount: Decimal | None) -> str:
    """``breakdown`` (plus ``base_amount``) encoded: the same text ``_encode`` gives.

    The import stores one per record: written directly, without building the dict
    and walking it again, it costs a fraction of the generic encoder. Strings go
    through the encoder's own escaping; ``str()`` of a Decimal is digits, sign,
    point and exponent, nothing JSON escapes; ints print as JSON does (the fields
    written with plain ``{}`` are typed ``int``, never ``bool``).
    """
    s = _string
    j = _json
    text = (
        f'{{"rate":{s(charge.rate_id)},"charged":{charge.charged_units:d},'
        f'"usage":"{charge.usage_amount!s}","time_zone":{s(account.time_zone)},'
        f'"tax_region":{s(account.tax_region)}'
    )
    if charge.package_code is not None:
        text += f',"package":{j(charge.package_code)},"package_version":{j(charge.package_version)}'
    if charge.destination is not None:
        text += f',"destination":{s(charge.destination)}'
    if charge.matched_prefix is not None:
        text += f',"prefix":{s(charge.matched_prefix)}'
    if charge.allowance_units:
        text += f',"allowance":{j(charge.allowance_units)}'
    if charge.connection_fee:
        text += f',"connection_fee":"{charge.connection_fee!s}"'
    if charge.segments:
        text += ',"segments":[' + ",".join(
            [
                f'[{s(g.band)},{g.offset:d},{g.seconds:d},"{g.first_increment!s}",'
                f'{g.increments:d},{g.increment_seconds:d},"{g.increment_price!s}",'
                f'"{g.amount!s}"]'
                for g in charge.segments
            ]
        )
        text += "]"
    if charge.unit_lines:
        text += ',"lines":[' + ",".join(
            [
                f'[{j(u.description)},{j(u.units)},"{u.price!s}","{u.amount!s}"]'
                for u in charge.unit_lines
            ]
        )
        text += "]"
    if charge.rounding_adjustment:
        text += f',"rounding_adjustment":"{charge.rounding_adjustment!s}"'
    if charge.cost_limit is not None:
        text += (
            f',"cost_limit":{j(charge.cost_limit.value)},'
            f'"limit_adjustment":"{charge.limit_adjustment!s}"'
        )
    if charge.discounts:
        text += ',"discounts":[' + ",".join(
            [
                f'[{j(d.code)},{j(d.kind.value)},"{d.value!s}","{d.amount!s}"]'
                for d in charge.discounts
            ]
        )
        text += "]"
    if charge.taxes:
        text += ',"taxes":[' + ",".join([_tax_json(t) for t in charge.taxes]) + "]"
    if base_amount is not None:
        text += f',"base_amount":"{base_amount!s}"'
    return text + "}"


def explanation(
    charge: RatedCharge, tariff: Tariff, account: Subscriber, destination: str, unit: str
) -> dict[str, Any]:
    """The full explanation of an answer: the breakdown plus the record's context."""
    return {
        **breakdown(charge, account),
        "revision": tariff.revision,
        "plan": charge.plan_code,
        "plan_version": charge.plan_version,
        "service": charge.service,
        "currency": charge.currency,
        "number": normalised(tariff, destination),
        "unit": unit,
        "quantity": charge.quantity,
        "net": str(charge.net),
        "tax": str(charge.tax),
        "gross": str(charge.gross),
    }


def stored_rating(
    usage: Usage,
    charge: RatedCharge,
    tariff: Tariff,
    account: Subscriber,
    plan: str,
    *,
    file_id: str | None,
    line: int | None,
    rated_at: datetime,
    rerate_id: str | None = None,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The stored row (``RATED_COLUMNS`` order) and the ``UsageRated`` item of one rating."""
    unit = tariff.unit_names[usage.service]
    currency = charge.currency
    _, _, gross, gross_item = _amount(charge.gross, currency)
    _, _, net, net_item = _amount(charge.net, currency)
    destination = usage.destination[:64]
    # With base_amount, kept so a re-rating can price a percentage of the same amount.
    explained = breakdown_json(charge, account, usage.amount)
    row = (
        usage.record_id,
        account.account_id,  # the account's id, whatever name the CDR gave it
        usage.service,
        destination,
        usage.event_time,
        usage.quantity,
        unit,
        currency,
        charge.allowance_units,
        charge.charged_units,
        gross,
        net,
        gross - net,
        plan,
        charge.plan_version,
        tariff.revision,
        file_id,
        line,
        explained,
        rated_at,
        True,
        rerate_id,
    )
    item = {
        "record_id": usage.record_id,
        "account_id": account.account_id,
        "service": usage.service,
        "quantity": usage.quantity,
        "unit": unit,
        "amount": gross_item,
        "net": net_item,
        "tax": _amount(charge.tax, currency)[3],
        "event_time": usage.event_time.isoformat(),
        "plan_code": plan,
        "plan_version": charge.plan_version,
        "destination": destination,
    }
    return row, item
