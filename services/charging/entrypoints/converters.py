"""Proto <-> domain for ``reckon.charging.v1``, validating every field at the edge.

Each ``*_from_proto`` collects problems in a ``Violations`` so a bad request is
refused with INVALID_ARGUMENT naming every bad field at once, before anything is
written. Amounts are bounded here (``domain.units.MAX_QUANTITY``) so every value
the Lua scripts see stays exact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Final, TypeVar

from reckon.charging.v1 import charging_pb2 as pb
from services.charging.domain.accounts import (
    AccountPolicy,
    AccountState,
    BillingMode,
    FinalUnitAction,
)
from services.charging.domain.buckets import Bucket
from services.charging.domain.credit_control import (
    CreditControlAnswer,
    CreditControlRequest,
    RatingGroupRequest,
    RequestedAction,
    RequestType,
    ResultCode,
    SessionState,
)
from services.charging.domain.ledger import Direction, EntryKind, LedgerEntry
from services.charging.domain.services import MAX_RATING_GROUP, Charging, ServiceDefinition
from services.charging.domain.units import (
    MAX_QUANTITY,
    TIME,
    VOLUME,
    Quantity,
    UnitKind,
    money_unit,
    scaled_money,
    service_units,
)
from services.charging.entrypoints.subscribers import subscriber_keys
from services.charging.service_layer.commands import (
    BalanceLine,
    Credited,
    PolicyView,
    SessionView,
)
from services.common.errors import Violations
from services.common.money import Money, MoneyError
from services.common.proto_convert import (
    money_from_proto,
    money_to_proto,
    timestamp_from_proto,
    timestamp_to_proto,
)

ACCOUNT_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")
SESSION_ID: Final = re.compile(r"^[\x21-\x7e]{1,256}$")
REQUEST_ID: Final = re.compile(r"^[\x21-\x7e]{1,64}$")
BUCKET_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$")
UNIT_NAME: Final = re.compile(r"^[a-z0-9_]{1,32}$")
SERVICE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_RATING_GROUPS: Final = 64
MAX_BATCH_REQUESTS: Final = 1000  # per StreamCreditControlBatches message, and answers per reply
MAX_TEXT: Final = 512

UNIT_KINDS: Final = {
    pb.UNIT_KIND_MONEY: UnitKind.MONEY,
    pb.UNIT_KIND_TIME: UnitKind.TIME,
    pb.UNIT_KIND_VOLUME: UnitKind.VOLUME,
    pb.UNIT_KIND_SERVICE_UNITS: UnitKind.SERVICE_UNITS,
}
UNIT_KINDS_OUT: Final = {v: k for k, v in UNIT_KINDS.items()}
MODES: Final = {
    pb.BILLING_MODE_PREPAID: BillingMode.PREPAID,
    pb.BILLING_MODE_POSTPAID: BillingMode.POSTPAID,
    pb.BILLING_MODE_HYBRID: BillingMode.HYBRID,
}
MODES_OUT: Final = {v: k for k, v in MODES.items()}
STATES_OUT: Final = {
    AccountState.ACTIVE: pb.ACCOUNT_STATE_ACTIVE,
    AccountState.SUSPENDED: pb.ACCOUNT_STATE_SUSPENDED,
    AccountState.BARRED: pb.ACCOUNT_STATE_BARRED,
    AccountState.CLOSED: pb.ACCOUNT_STATE_CLOSED,
}
ACTIONS: Final = {
    pb.FINAL_UNIT_ACTION_UNSPECIFIED: FinalUnitAction.TERMINATE,
    pb.FINAL_UNIT_ACTION_TERMINATE: FinalUnitAction.TERMINATE,
    pb.FINAL_UNIT_ACTION_REDIRECT: FinalUnitAction.REDIRECT,
    pb.FINAL_UNIT_ACTION_RESTRICT_ACCESS: FinalUnitAction.RESTRICT_ACCESS,
}
ACTIONS_OUT: Final = {
    FinalUnitAction.TERMINATE: pb.FINAL_UNIT_ACTION_TERMINATE,
    FinalUnitAction.REDIRECT: pb.FINAL_UNIT_ACTION_REDIRECT,
    FinalUnitAction.RESTRICT_ACCESS: pb.FINAL_UNIT_ACTION_RESTRICT_ACCESS,
}
CHARGINGS: Final = {
    pb.SERVICE_CHARGING_RATED: Charging.RATED,
    pb.SERVICE_CHARGING_UNITS_ONLY: Charging.UNITS_ONLY,
    pb.SERVICE_CHARGING_FREE: Charging.FREE,
}
CHARGINGS_OUT: Final = {v: k for k, v in CHARGINGS.items()}
REQUEST_TYPES: Final = {
    pb.REQUEST_TYPE_INITIAL: RequestType.INITIAL,
    pb.REQUEST_TYPE_UPDATE: RequestType.UPDATE,
    pb.REQUEST_TYPE_TERMINATE: RequestType.TERMINATE,
    pb.REQUEST_TYPE_EVENT: RequestType.EVENT,
}
REQUEST_TYPES_OUT: Final = {v: k for k, v in REQUEST_TYPES.items()}
REQUESTED_ACTIONS: Final = {
    pb.REQUESTED_ACTION_DIRECT_DEBITING: RequestedAction.DIRECT_DEBITING,
    pb.REQUESTED_ACTION_REFUND_ACCOUNT: RequestedAction.REFUND_ACCOUNT,
    pb.REQUESTED_ACTION_CHECK_BALANCE: RequestedAction.CHECK_BALANCE,
    pb.REQUESTED_ACTION_PRICE_ENQUIRY: RequestedAction.PRICE_ENQUIRY,
}
RESULTS_OUT: Final = {
    ResultCode.SUCCESS: pb.RESULT_CODE_SUCCESS,
    ResultCode.END_USER_SERVICE_DENIED: pb.RESULT_CODE_END_USER_SERVICE_DENIED,
    ResultCode.CREDIT_LIMIT_REACHED: pb.RESULT_CODE_CREDIT_LIMIT_REACHED,
    ResultCode.UNKNOWN_SESSION_ID: pb.RESULT_CODE_UNKNOWN_SESSION_ID,
    ResultCode.OUT_OF_ORDER: pb.RESULT_CODE_OUT_OF_ORDER,
    ResultCode.RATING_FAILED: pb.RESULT_CODE_RATING_FAILED,
}
ENTRY_KINDS_OUT: Final = {
    EntryKind.BUCKET_GRANT: pb.ENTRY_KIND_BUCKET_GRANT,
    EntryKind.TOP_UP: pb.ENTRY_KIND_TOP_UP,
    EntryKind.ADJUSTMENT: pb.ENTRY_KIND_ADJUSTMENT,
    EntryKind.VOUCHER: pb.ENTRY_KIND_VOUCHER,
    EntryKind.USAGE: pb.ENTRY_KIND_USAGE,
    EntryKind.DIRECT_DEBIT: pb.ENTRY_KIND_DIRECT_DEBIT,
    EntryKind.REFUND: pb.ENTRY_KIND_REFUND,
    EntryKind.OFFLINE_USAGE: pb.ENTRY_KIND_OFFLINE_USAGE,
    EntryKind.EXPIRY: pb.ENTRY_KIND_EXPIRY,
}


# -- scalars -----------------------------------------------------------------------------
def account_id(value: str, field: str, v: Violations) -> str:
    if not value:
        v.add(field, "is required")
    elif not ACCOUNT_ID.match(value):
        v.add(field, "must be 1-64 letters, digits or _.:@- starting with a letter or digit")
    return value


def session_id(value: str, field: str, v: Violations) -> str:
    if not value:
        v.add(field, "is required")
    elif not SESSION_ID.match(value):
        v.add(field, "must be 1-256 printable characters without spaces")
    return value


def request_id(value: str, v: Violations, field: str = "request_id") -> str:
    if value and not REQUEST_ID.match(value):
        v.add(field, "must be 1-64 printable characters without spaces")
    return value


def bucket_id(value: str, field: str, v: Violations, *, required: bool) -> str:
    if not value:
        if required:
            v.add(field, "is required")
    elif not BUCKET_ID.match(value):
        v.add(field, "is not a bucket id")
    return value


def text(
    value: str, field: str, v: Violations, *, required: bool = False, limit: int = MAX_TEXT
) -> str:
    if required and not value.strip():
        v.add(field, "is required")
    elif len(value) > limit:
        v.add(field, f"must be at most {limit} characters")
    return value


def bounded(value: int, field: str, v: Violations, *, signed: bool) -> bool:
    if value < 0 and not signed:
        v.add(field, "must not be negative")
        return False
    if abs(value) > MAX_QUANTITY:
        v.add(field, f"is out of range: at most {MAX_QUANTITY} (10^15)")
        return False
    return True


def money_amount(
    message: object, field: str, v: Violations, *, signed: bool = False
) -> Money | None:
    money = money_from_proto(message, field, v, allow_negative=signed)  # type: ignore[arg-type]
    if money is None:
        return None
    try:
        scaled = scaled_money(money)
    except MoneyError as exc:
        v.add(field, str(exc))
        return None
    if not bounded(scaled, field, v, signed=signed):
        return None
    return money


def quantity_from_proto(
    message: pb.Quantity, field: str, v: Violations, *, signed: bool = False
) -> Quantity | None:
    which = message.WhichOneof("value")
    if which is None:
        v.add(field, "is required: set one of money, time_seconds, volume_bytes, service_units")
        return None
    if which == "money":
        money = money_amount(message.money, f"{field}.money", v, signed=signed)
        return Quantity.of_money(money) if money is not None else None
    amount = int(getattr(message, which))
    if not bounded(amount, f"{field}.{which}", v, signed=signed):
        return None
    if which == "time_seconds":
        return Quantity(TIME, amount)
    if which == "volume_bytes":
        return Quantity(VOLUME, amount)
    name = message.unit_name or "unit"
    if not UNIT_NAME.match(name):
        v.add(f"{field}.unit_name", "must be 1-32 lower-case letters, digits or _")
        return None
    return Quantity(service_units(name), amount)


def quantity_to_proto(quantity: Quantity) -> pb.Quantity:
    unit = quantity.unit
    if unit.kind is UnitKind.MONEY:
        return pb.Quantity(money=money_to_proto(quantity.to_money()))
    if unit.kind is UnitKind.TIME:
        return pb.Quantity(time_seconds=quantity.amount)
    if unit.kind is UnitKind.VOLUME:
        return pb.Quantity(volume_bytes=quantity.amount)
    return pb.Quantity(service_units=quantity.amount, unit_name=unit.code)


def instant_or_none(message: object, name: str, prefix: str = "bucket.") -> datetime | None:
    """The instant in field ``name``; a bad one is INVALID_ARGUMENT naming ``prefix + name``."""
    if not message.HasField(name):  # type: ignore[attr-defined]
        return None
    return timestamp_from_proto(getattr(message, name), prefix + name)


# -- policy --------------------------------------------------------------------------------
def policy_from_proto(message: pb.AccountPolicy, v: Violations) -> AccountPolicy | None:
    with v.nested("policy") as p:
        account = account_id(message.account_id, "account_id", p)
        mode = MODES.get(message.billing_mode)
        if mode is None:
            p.add("billing_mode", "is required: PREPAID, POSTPAID or HYBRID")
        currency = message.currency_code
        try:
            money_unit(currency)
        except MoneyError:
            p.add("currency_code", "must be an ISO 4217 (or supported crypto) currency code")
            currency = ""
        limit = 0
        if message.HasField("credit_limit"):
            amount = money_amount(message.credit_limit, "credit_limit", p)
            if amount is not None:
                if currency and amount.currency != currency:
                    p.add("credit_limit.currency_code", "must be the account's currency")
                limit = scaled_money(amount)
        if mode is BillingMode.PREPAID and limit:
            p.add("credit_limit", "a prepaid account has no credit limit")
        low = None
        if message.HasField("low_balance_threshold"):
            amount = money_amount(message.low_balance_threshold, "low_balance_threshold", p)
            if amount is not None:
                if currency and amount.currency != currency:
                    p.add("low_balance_threshold.currency_code", "must be the account's currency")
                low = scaled_money(amount)
        action = ACTIONS.get(message.final_unit_action)
        if action is None:
            p.add("final_unit_action", "is not a known action")
        if action is FinalUnitAction.REDIRECT and not message.redirect_address:
            p.add("redirect_address", "is required for REDIRECT")
        text(message.redirect_address, "redirect_address", p)
        text(message.restriction_filter_id, "restriction_filter_id", p, limit=128)
    if v or mode is None or action is None:
        return None
    return AccountPolicy(
        account_id=account,
        mode=mode,
        currency=currency,
        credit_limit=limit,
        low_balance=low,
        final_unit_action=action,
        redirect_address=message.redirect_address,
        restriction_filter_id=message.restriction_filter_id,
    )


def policy_to_proto(view: PolicyView) -> pb.AccountPolicy:
    policy = view.policy
    message = pb.AccountPolicy(
        account_id=policy.account_id,
        billing_mode=MODES_OUT[policy.mode],
        currency_code=policy.currency,
        final_unit_action=ACTIONS_OUT[policy.final_unit_action],
        redirect_address=policy.redirect_address,
        restriction_filter_id=policy.restriction_filter_id,
        state=STATES_OUT[view.state],
        update_time=timestamp_to_proto(view.updated_at),
    )
    if policy.credit_limit:
        message.credit_limit.CopyFrom(money_to_proto(policy.money(policy.credit_limit)))
    if policy.low_balance is not None:
        message.low_balance_threshold.CopyFrom(money_to_proto(policy.money(policy.low_balance)))
    return message


# -- services -----------------------------------------------------------------------------
def service_from_proto(message: pb.ServiceDefinition, v: Violations) -> ServiceDefinition | None:
    with v.nested("service") as s:
        if not 1 <= message.rating_group <= MAX_RATING_GROUP:
            s.add("rating_group", "must be 1 or more")
        if not SERVICE_NAME.match(message.service):
            s.add("service", "is required: letters, digits or _.- (at most 128)")
        kind = UNIT_KINDS.get(message.unit_kind)
        if kind is None:
            s.add("unit_kind", "is required")
        if (
            kind is UnitKind.SERVICE_UNITS
            and message.unit_name
            and not UNIT_NAME.match(message.unit_name)
        ):
            s.add("unit_name", "must be 1-32 lower-case letters, digits or _")
        charging = CHARGINGS.get(message.charging)
        if charging is None:
            s.add("charging", "is required: RATED, UNITS_ONLY or FREE")
        bounded(message.default_quota, "default_quota", s, signed=False)
        if message.validity_seconds > 86_400 * 30:
            s.add("validity_seconds", "must be at most 30 days")
    if v or kind is None or charging is None:
        return None
    return ServiceDefinition(
        rating_group=message.rating_group,
        service=message.service,
        unit_kind=kind,
        unit_name=message.unit_name if kind is UnitKind.SERVICE_UNITS else "",
        charging=charging,
        default_quota=message.default_quota,
        validity_seconds=message.validity_seconds,
    )


def service_to_proto(definition: ServiceDefinition) -> pb.ServiceDefinition:
    return pb.ServiceDefinition(
        rating_group=definition.rating_group,
        service=definition.service,
        unit_kind=UNIT_KINDS_OUT[definition.unit_kind],
        unit_name=definition.unit_name,
        charging=CHARGINGS_OUT[definition.charging],
        default_quota=definition.default_quota,
        validity_seconds=definition.validity_seconds,
    )


# -- buckets and the ledger ---------------------------------------------------------------
def bucket_to_proto(bucket: Bucket) -> pb.Bucket:
    unit = bucket.unit
    message = pb.Bucket(
        bucket_id=bucket.bucket_id,
        account_id=bucket.account_id,
        unit_kind=UNIT_KINDS_OUT[unit.kind],
        currency_code=unit.code if unit.is_money else "",
        unit_name=unit.code if unit.kind is UnitKind.SERVICE_UNITS else "",
        priority=bucket.priority,
        services=sorted(bucket.services),
        rating_groups=sorted(bucket.rating_groups),
        label=bucket.label,
        main=bucket.main,
    )
    for name, value in (
        ("valid_from", bucket.valid_from),
        ("valid_until", bucket.valid_until),
        ("create_time", bucket.created_at),
    ):
        stamp = timestamp_to_proto(value)
        if stamp is not None:
            getattr(message, name).CopyFrom(stamp)
    return message


def balance_to_proto(line: BalanceLine) -> pb.BucketBalance:
    return pb.BucketBalance(
        bucket=bucket_to_proto(line.bucket),
        available=quantity_to_proto(Quantity(line.bucket.unit, line.available)),
        reserved=quantity_to_proto(Quantity(line.bucket.unit, line.reserved)),
        usable=line.usable,
    )


def entry_to_proto(entry: LedgerEntry) -> pb.LedgerEntry:
    return pb.LedgerEntry(
        entry_id=entry.entry_id,
        account_id=entry.account_id,
        bucket_id=entry.bucket_id,
        direction=pb.ENTRY_DIRECTION_CREDIT
        if entry.direction is Direction.CREDIT
        else pb.ENTRY_DIRECTION_DEBIT,
        amount=quantity_to_proto(entry.amount),
        kind=ENTRY_KINDS_OUT[entry.kind],
        session_id=entry.session_id,
        request_number=entry.request_number,
        rating_group=entry.rating_group,
        reference=entry.reference,
        reason=entry.reason,
        create_time=timestamp_to_proto(entry.created_at),
    )


# The answers of the RPCs that change one bucket: the bucket after it, and the entry.
CreditedResponse = TypeVar(
    "CreditedResponse",
    pb.TopUpResponse,
    pb.AdjustResponse,
    pb.CloseBucketResponse,
    pb.RedeemVoucherResponse,
)


def credited_to_proto(response: CreditedResponse, credited: Credited) -> CreditedResponse:
    response.balance.CopyFrom(balance_to_proto(credited.balance))
    if credited.entry is not None:
        response.entry.CopyFrom(entry_to_proto(credited.entry))
    return response


# -- credit control --------------------------------------------------------------------------
def cc_request_from_proto(
    message: pb.CreditControlRequest, v: Violations
) -> CreditControlRequest | None:
    if not message.session_id:
        v.add("session_id", "is required")
    elif not SESSION_ID.match(message.session_id):
        v.add("session_id", "must be 1-256 printable characters without spaces")
    subscriber: tuple[str, ...] = ()
    if message.HasField("subscription_id"):
        # Issue 9 item 12: the subscriber named as the network names it (ADR 0058).
        if message.account_id:
            v.add("subscription_id", "give either account_id or subscription_id, not both")
        else:
            subscriber = subscriber_keys(message.subscription_id, v)
    elif not message.account_id:
        v.add("account_id", "is required (or subscription_id)")
    else:
        account_id(message.account_id, "account_id", v)
    kind = REQUEST_TYPES.get(message.request_type)
    if kind is None:
        v.add("request_type", "is required: INITIAL, UPDATE, TERMINATE or EVENT")
    elif kind is RequestType.INITIAL and message.request_number != 0:
        # RFC 4006 8.2: CC-Request-Number is 0 in the INITIAL request of a session.
        v.add("request_number", "must be 0 in an INITIAL request")
    action = None
    if kind is RequestType.EVENT:
        action = REQUESTED_ACTIONS.get(message.requested_action)
        if action is None:
            v.add("requested_action", "is required for EVENT requests")
    elif message.requested_action:
        v.add("requested_action", "is only for EVENT requests")
    services = message.multiple_services
    if not services and kind is not RequestType.TERMINATE:
        v.add("multiple_services", "needs at least one rating group")
    if len(services) > MAX_RATING_GROUPS:
        v.add("multiple_services", f"at most {MAX_RATING_GROUPS} rating groups")
    groups = []
    seen: set[int] = set()
    for index, item in enumerate(services):
        field = f"multiple_services[{index}]"
        if item.rating_group < 1:
            v.add(f"{field}.rating_group", "must be 1 or more")
        elif item.rating_group in seen:
            v.add(f"{field}.rating_group", "appears twice in the request")
        seen.add(item.rating_group)
        requested = (
            quantity_from_proto(item.requested_units, f"{field}.requested_units", v)
            if item.HasField("requested_units")
            else None
        )
        used = (
            quantity_from_proto(item.used_units, f"{field}.used_units", v)
            if item.HasField("used_units")
            else None
        )
        if kind is RequestType.EVENT and requested is None:
            v.add(f"{field}.requested_units", "is required for EVENT requests")
        text(item.destination, f"{field}.destination", v, limit=64)
        groups.append(RatingGroupRequest(item.rating_group, requested, used, item.destination))
    if v or kind is None:
        return None
    return CreditControlRequest(
        session_id=message.session_id,
        request_type=kind,
        request_number=message.request_number,
        account_id=message.account_id,
        rating_groups=tuple(groups),
        action=action,
        subscriber=subscriber,
    )


def cc_batch_from_proto(
    message: pb.StreamCreditControlBatchesRequest, v: Violations
) -> Sequence[pb.CreditControlRequest]:
    """The requests of a batch, each translated on its own later (its answer carries its
    own errors); none when the batch holds no or too many requests."""
    count = len(message.requests)
    if not 1 <= count <= MAX_BATCH_REQUESTS:
        v.add("requests", f"must hold 1 to {MAX_BATCH_REQUESTS} requests, not {count}")
        return ()
    return message.requests


def cc_answer_to_proto(answer: CreditControlAnswer) -> pb.CreditControlResponse:
    response = pb.CreditControlResponse(
        session_id=answer.session_id,
        request_number=answer.request_number,
        request_type=REQUEST_TYPES_OUT[answer.request_type],
        result_code=RESULTS_OUT[answer.result],
        diameter_result_code=answer.result.diameter,
    )
    for group in answer.rating_groups:
        item = response.multiple_services.add(
            rating_group=group.rating_group,
            result_code=RESULTS_OUT[group.result],
            diameter_result_code=group.result.diameter,
            validity_time_seconds=group.validity_seconds,
        )
        if group.granted is not None:
            item.granted_units.CopyFrom(quantity_to_proto(group.granted))
        if group.final_unit is not None:
            item.final_unit_indication.CopyFrom(
                pb.FinalUnitIndication(
                    action=ACTIONS_OUT[group.final_unit.action],
                    redirect_address=group.final_unit.redirect_address,
                    restriction_filter_id=group.final_unit.restriction_filter_id,
                )
            )
        if group.cost is not None:
            item.cost.CopyFrom(money_to_proto(group.cost))
        if group.charged_units is not None:
            item.charged_units.CopyFrom(quantity_to_proto(group.charged_units))
    return response


SESSION_STATES_OUT: Final = {
    SessionState.OPEN: pb.CREDIT_CONTROL_SESSION_STATE_OPEN,
    SessionState.CLOSED: pb.CREDIT_CONTROL_SESSION_STATE_CLOSED,
    SessionState.SWEPT: pb.CREDIT_CONTROL_SESSION_STATE_RELEASED,
}


def session_to_proto(view: SessionView) -> pb.CreditControlSession:
    session = pb.CreditControlSession(
        account_id=view.account_id,
        session_id=view.session_id,
        state=SESSION_STATES_OUT[view.state],
        last_request_number=view.last_request_number,
    )
    if view.last_request_type is not None:
        session.last_request_type = REQUEST_TYPES_OUT[view.last_request_type]
    if view.updated_at is not None:
        session.update_time.FromDatetime(view.updated_at)
    if view.release_at is not None:
        session.release_time.FromDatetime(view.release_at)
    for group in view.rating_groups:
        item = session.rating_groups.add(rating_group=group.rating_group)
        if group.granted is not None:
            item.granted_units.CopyFrom(quantity_to_proto(group.granted))
        if group.used is not None:
            item.used_units.CopyFrom(quantity_to_proto(group.used))
        if group.valid_until is not None:
            item.valid_until.FromDatetime(group.valid_until)
    return session
