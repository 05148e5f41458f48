"""Translation between the wire (``reckon.accounts.v1``) and the service layer.

``*_command`` and ``*_query`` functions check a whole request, collect every
bad field into one INVALID_ARGUMENT (paths as in the request, e.g.
``account.bill_cycle_day``) and only then build the command, so a handler
never sees malformed input. ``*_to_proto`` functions turn domain objects into
messages. No business rule lives here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final, TypeVar

from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from reckon.accounts.v1 import accounts_pb2 as pb
from services.accounts.domain.model import (
    ACCOUNT_MUTABLE_FIELDS,
    CUSTOMER_MUTABLE_FIELDS,
    Account,
    AccountRevision,
    AccountState,
    AddOn,
    ChangeTiming,
    Customer,
    CustomerRevision,
    PaymentMode,
    StateChange,
    SubscriptionState,
    credit_limit_problem,
)
from services.accounts.entrypoints import identities as ids
from services.accounts.entrypoints import validation as check
from services.accounts.service_layer import commands as cmd
from services.common.errors import Violations
from services.common.money import Money
from services.common.proto_convert import (
    decode_page_token,
    encode_page_token,
    money_from_proto,
    money_to_proto,
    page_size_from_proto,
    timestamp_to_proto,
)

_PAYMENT_MODE_TO_PROTO: Final[Mapping[PaymentMode, pb.PaymentMode.ValueType]] = {
    PaymentMode.PREPAID: pb.PAYMENT_MODE_PREPAID,
    PaymentMode.POSTPAID: pb.PAYMENT_MODE_POSTPAID,
    PaymentMode.HYBRID: pb.PAYMENT_MODE_HYBRID,
}
_ACCOUNT_STATE_TO_PROTO: Final[Mapping[AccountState, pb.AccountState.ValueType]] = {
    AccountState.ACTIVE: pb.ACCOUNT_STATE_ACTIVE,
    AccountState.SUSPENDED: pb.ACCOUNT_STATE_SUSPENDED,
    AccountState.BARRED: pb.ACCOUNT_STATE_BARRED,
    AccountState.CLOSED: pb.ACCOUNT_STATE_CLOSED,
}
_SUBSCRIPTION_STATE_TO_PROTO: Final[Mapping[SubscriptionState, pb.SubscriptionState.ValueType]] = {
    SubscriptionState.ACTIVE: pb.SUBSCRIPTION_STATE_ACTIVE,
    SubscriptionState.CANCELLED: pb.SUBSCRIPTION_STATE_CANCELLED,
}
PAYMENT_MODES: Final[Mapping[int, PaymentMode]] = {
    int(v): k for k, v in _PAYMENT_MODE_TO_PROTO.items()
}
ACCOUNT_STATES: Final[Mapping[int, AccountState]] = {
    int(v): k for k, v in _ACCOUNT_STATE_TO_PROTO.items()
}
SUBSCRIPTION_STATES: Final[Mapping[int, SubscriptionState]] = {
    int(v): k for k, v in _SUBSCRIPTION_STATE_TO_PROTO.items()
}
TIMINGS: Final[Mapping[int, ChangeTiming]] = {
    pb.CHANGE_TIMING_IMMEDIATE: ChangeTiming.IMMEDIATE,
    pb.CHANGE_TIMING_END_OF_CYCLE: ChangeTiming.END_OF_CYCLE,
}

E = TypeVar("E", AccountState, SubscriptionState)

# Fields a mask may name but never change, with the reason the caller is told.
_IMMUTABLE_CUSTOMER_FIELDS: Final = {
    "customer_id": "identifies the customer",
    "referral_code": "is assigned by the service",
    "referred_by": "is set only when the customer is created",
    "referrals_count": "is counted by the service",
    "create_time": "is output only",
    "update_time": "is output only",
}
_IMMUTABLE_ACCOUNT_FIELDS: Final = {
    "account_id": "identifies the account",
    "customer_id": "cannot move to another customer",
    "currency_code": "is immutable after creation",
    "state": "changes only through Suspend/Bar/Restore/CloseAccount",
    "state_reason": "is output only",
    "state_change_time": "is output only",
    "create_time": "is output only",
    "update_time": "is output only",
}


# -- customers ------------------------------------------------------------------------------
def create_customer_command(request: pb.CreateCustomerRequest) -> cmd.CreateCustomer:
    v = Violations()
    if not v.check(request.HasField("customer"), "customer", "is required"):
        v.raise_if_any()
    c = request.customer
    with v.nested("customer") as cv:
        command = cmd.CreateCustomer(
            display_name=check.text(
                cv, c.display_name, "display_name", max_length=check.MAX_NAME, required=True
            ),
            email=check.email(cv, c.email, "email"),
            phone_number=check.phone_number(cv, c.phone_number, "phone_number"),
            language_code=check.language_code(cv, c.language_code, "language_code"),
            reseller_id=check.opaque_id(cv, c.reseller_id, "reseller_id"),
            group_id=check.opaque_id(cv, c.group_id, "group_id"),
            referred_by=check.referral_code(cv, c.referred_by, "referred_by"),
            external_ref=ids.external_ref(cv, c.external_ref, "external_ref"),
            vat_id=check.vat_id(cv, c.vat_id, "vat_id"),
            request_id=check.request_id(v, request.request_id),
            fingerprint=_fingerprint(request),
        )
    v.raise_if_any()
    return command


def update_customer_command(request: pb.UpdateCustomerRequest) -> cmd.UpdateCustomer:
    v = Violations()
    c = request.customer
    check.resource_id(v, c.customer_id, "customer.customer_id", "cus")
    fields = _mask_fields(
        v, request, "customer", CUSTOMER_MUTABLE_FIELDS, _IMMUTABLE_CUSTOMER_FIELDS
    )
    with v.nested("customer") as cv:
        # Only the fields being changed: values of the others are ignored anyway.
        if "display_name" in fields:
            check.text(cv, c.display_name, "display_name", max_length=check.MAX_NAME, required=True)
        if "email" in fields:
            check.email(cv, c.email, "email")
        if "phone_number" in fields:
            check.phone_number(cv, c.phone_number, "phone_number")
        if "language_code" in fields:
            check.language_code(cv, c.language_code, "language_code")
        if "reseller_id" in fields:
            check.opaque_id(cv, c.reseller_id, "reseller_id")
        if "group_id" in fields:
            check.opaque_id(cv, c.group_id, "group_id")
        if "vat_id" in fields:
            check.vat_id(cv, c.vat_id, "vat_id")
    check.request_id(v, request.request_id)
    v.raise_if_any()
    return cmd.UpdateCustomer(
        customer_id=c.customer_id,
        revision=CustomerRevision(
            fields=fields,
            display_name=c.display_name,
            email=c.email,
            phone_number=c.phone_number,
            language_code=c.language_code,
            reseller_id=c.reseller_id,
            group_id=c.group_id,
            vat_id=c.vat_id,
        ),
        request_id=request.request_id,
        fingerprint=_fingerprint(request),
    )


def get_customer_query(request: pb.GetCustomerRequest) -> cmd.GetCustomer:
    v = Violations()
    check.resource_id(v, request.customer_id, "customer_id", "cus")
    v.raise_if_any()
    return cmd.GetCustomer(request.customer_id)


def list_customers_query(request: pb.ListCustomersRequest) -> tuple[cmd.ListCustomers, str]:
    """The query and the key its page tokens are bound to."""
    v = Violations()
    check.opaque_id(v, request.reseller_id, "reseller_id")
    check.opaque_id(v, request.group_id, "group_id")
    limit = page_size_from_proto(request.page_size, v)
    key = _query_key("customers", request.reseller_id, request.group_id)
    after = _page_cursor(v, request.page_token, key)
    v.raise_if_any()
    query = cmd.ListCustomers(
        limit=limit, after=after, reseller_id=request.reseller_id, group_id=request.group_id
    )
    return query, key


# -- accounts -------------------------------------------------------------------------------
def create_account_command(request: pb.CreateAccountRequest) -> cmd.CreateAccount:
    v = Violations()
    if not v.check(request.HasField("account"), "account", "is required"):
        v.raise_if_any()
    a = request.account
    with v.nested("account") as av:
        check.resource_id(av, a.customer_id, "customer_id", "cus")
        check.text(av, a.display_name, "display_name", max_length=check.MAX_NAME)
        currency = check.currency_code(av, a.currency_code, "currency_code")
        check.time_zone(av, a.time_zone, "time_zone")
        check.bill_cycle_day(av, a.bill_cycle_day, "bill_cycle_day")
        check.tax_region(av, a.tax_region, "tax_region")
        check.payment_terms_days(av, a.payment_terms_days, "payment_terms_days")
        payment_mode = _payment_mode(av, a.payment_mode, "payment_mode")
        credit_limit = None
        if a.HasField("credit_limit"):
            credit_limit = money_from_proto(a.credit_limit, "credit_limit", av)
        check.resource_id(av, a.parent_account_id, "parent_account_id", "acc", required=False)
        external_ref = ids.external_ref(av, a.external_ref, "external_ref")
        if payment_mode is not None and not av.items:
            # Only when the parts are well-formed, so one mistake is reported once.
            problem = credit_limit_problem(payment_mode, credit_limit, currency)
            if problem:
                av.add("credit_limit", problem)
    check.request_id(v, request.request_id)
    v.raise_if_any()
    assert payment_mode is not None  # a violation was raised otherwise
    return cmd.CreateAccount(
        customer_id=a.customer_id,
        display_name=a.display_name,
        currency_code=a.currency_code,
        time_zone=a.time_zone,
        bill_cycle_day=a.bill_cycle_day,
        tax_region=a.tax_region,
        payment_terms_days=a.payment_terms_days,
        payment_mode=payment_mode,
        credit_limit=credit_limit,
        parent_account_id=a.parent_account_id or None,
        external_ref=external_ref,
        request_id=request.request_id,
        fingerprint=_fingerprint(request),
    )


def update_account_command(request: pb.UpdateAccountRequest) -> cmd.UpdateAccount:
    v = Violations()
    a = request.account
    check.resource_id(v, a.account_id, "account.account_id", "acc")
    fields = _mask_fields(v, request, "account", ACCOUNT_MUTABLE_FIELDS, _IMMUTABLE_ACCOUNT_FIELDS)
    payment_mode: PaymentMode | None = None
    credit_limit: Money | None = None
    with v.nested("account") as av:
        # Only the fields being changed: values of the others are ignored anyway.
        if "display_name" in fields:
            check.text(av, a.display_name, "display_name", max_length=check.MAX_NAME)
        if "time_zone" in fields:
            check.time_zone(av, a.time_zone, "time_zone")
        if "bill_cycle_day" in fields:
            check.bill_cycle_day(av, a.bill_cycle_day, "bill_cycle_day")
        if "tax_region" in fields:
            check.tax_region(av, a.tax_region, "tax_region")
        if "payment_terms_days" in fields:
            check.payment_terms_days(av, a.payment_terms_days, "payment_terms_days")
        if "payment_mode" in fields:
            payment_mode = _payment_mode(av, a.payment_mode, "payment_mode")
        if "credit_limit" in fields and a.HasField("credit_limit"):
            # Unset with credit_limit in the mask clears it (allowed for prepaid only).
            credit_limit = money_from_proto(a.credit_limit, "credit_limit", av)
        if "parent_account_id" in fields:
            check.resource_id(av, a.parent_account_id, "parent_account_id", "acc", required=False)
    check.request_id(v, request.request_id)
    v.raise_if_any()
    return cmd.UpdateAccount(
        account_id=a.account_id,
        revision=AccountRevision(
            fields=fields,
            display_name=a.display_name,
            time_zone=a.time_zone,
            bill_cycle_day=a.bill_cycle_day,
            tax_region=a.tax_region,
            payment_terms_days=a.payment_terms_days,
            payment_mode=payment_mode or PaymentMode.PREPAID,
            credit_limit=credit_limit,
            parent_account_id=a.parent_account_id or None,
        ),
        request_id=request.request_id,
        fingerprint=_fingerprint(request),
    )


def get_account_query(request: pb.GetAccountRequest) -> cmd.GetAccount:
    v = Violations()
    check.resource_id(v, request.account_id, "account_id", "acc")
    v.raise_if_any()
    return cmd.GetAccount(request.account_id)


def list_accounts_query(request: pb.ListAccountsRequest) -> tuple[cmd.ListAccounts, str]:
    v = Violations()
    check.resource_id(v, request.customer_id, "customer_id", "cus", required=False)
    state = _optional_enum(v, request.state, ACCOUNT_STATES, "state")
    check.opaque_id(v, request.reseller_id, "reseller_id")
    check.opaque_id(v, request.group_id, "group_id")
    limit = page_size_from_proto(request.page_size, v)
    key = _query_key(
        "accounts", request.customer_id, str(request.state), request.reseller_id, request.group_id
    )
    after = _page_cursor(v, request.page_token, key)
    v.raise_if_any()
    query = cmd.ListAccounts(
        limit=limit,
        after=after,
        customer_id=request.customer_id,
        state=state,
        reseller_id=request.reseller_id,
        group_id=request.group_id,
    )
    return query, key


S = TypeVar("S", bound=cmd.ChangeAccountState)


def state_change_command(
    request: pb.SuspendAccountRequest
    | pb.BarAccountRequest
    | pb.RestoreAccountRequest
    | pb.CloseAccountRequest,
    command: type[S],
) -> S:
    v = Violations()
    check.resource_id(v, request.account_id, "account_id", "acc")
    check.reason(v, request.reason)
    check.request_id(v, request.request_id)
    v.raise_if_any()
    return command(
        account_id=request.account_id,
        reason=request.reason,
        request_id=request.request_id,
        fingerprint=_fingerprint(request),
    )


def list_state_history_query(
    request: pb.ListAccountStateHistoryRequest,
) -> tuple[cmd.ListAccountStateHistory, str]:
    v = Violations()
    check.resource_id(v, request.account_id, "account_id", "acc")
    limit = page_size_from_proto(request.page_size, v)
    key = _query_key("history", request.account_id)
    after = _page_cursor(v, request.page_token, key)
    if after and not after.isdigit():
        v.add("page_token", "is not a token this service issued")
    v.raise_if_any()
    query = cmd.ListAccountStateHistory(
        account_id=request.account_id, limit=limit, after_sequence=int(after or 0)
    )
    return query, key


# -- subscriptions --------------------------------------------------------------------------
def create_subscription_command(request: pb.CreateSubscriptionRequest) -> cmd.CreateSubscription:
    v = Violations()
    if not v.check(request.HasField("subscription"), "subscription", "is required"):
        v.raise_if_any()
    s = request.subscription
    with v.nested("subscription") as sv:
        check.resource_id(sv, s.account_id, "account_id", "acc")
        check.plan_code(sv, s.plan_code, "plan_code")
        start = ids.start_time(sv, s, "start_time")
        keys = ids.service_ids(sv, s.service_ids, "service_ids")
    check.request_id(v, request.request_id)
    v.raise_if_any()
    return cmd.CreateSubscription(
        account_id=s.account_id,
        plan_code=s.plan_code,
        start_time=start,
        service_ids=keys,
        request_id=request.request_id,
        fingerprint=_fingerprint(request),
    )


def get_subscription_query(request: pb.GetSubscriptionRequest) -> cmd.GetSubscription:
    v = Violations()
    check.resource_id(v, request.subscription_id, "subscription_id", "sub")
    v.raise_if_any()
    return cmd.GetSubscription(request.subscription_id)


def list_subscriptions_query(
    request: pb.ListSubscriptionsRequest,
) -> tuple[cmd.ListSubscriptions, str]:
    v = Violations()
    check.resource_id(v, request.account_id, "account_id", "acc", required=False)
    state = _optional_enum(v, request.state, SUBSCRIPTION_STATES, "state")
    limit = page_size_from_proto(request.page_size, v)
    key = _query_key("subscriptions", request.account_id, str(request.state))
    after = _page_cursor(v, request.page_token, key)
    v.raise_if_any()
    query = cmd.ListSubscriptions(
        limit=limit, after=after, account_id=request.account_id, state=state
    )
    return query, key


def change_plan_command(request: pb.ChangePlanRequest) -> cmd.ChangePlan:
    v = Violations()
    check.resource_id(v, request.subscription_id, "subscription_id", "sub")
    check.plan_code(v, request.plan_code, "plan_code")
    timing = _timing(v, request.timing)
    check.request_id(v, request.request_id)
    v.raise_if_any()
    assert timing is not None
    return cmd.ChangePlan(
        subscription_id=request.subscription_id,
        plan_code=request.plan_code,
        timing=timing,
        request_id=request.request_id,
        fingerprint=_fingerprint(request),
    )


def add_add_on_command(request: pb.AddAddOnRequest) -> cmd.AddAddOn:
    v = Violations()
    check.resource_id(v, request.subscription_id, "subscription_id", "sub")
    check.plan_code(v, request.add_on_code, "add_on_code")
    quantity = request.quantity or 1
    v.check(
        1 <= quantity <= check.MAX_ADD_ON_QUANTITY,
        "quantity",
        f"must be between 1 and {check.MAX_ADD_ON_QUANTITY} (0 means 1)",
    )
    check.request_id(v, request.request_id)
    v.raise_if_any()
    return cmd.AddAddOn(
        subscription_id=request.subscription_id,
        add_on_code=request.add_on_code,
        quantity=quantity,
        request_id=request.request_id,
        fingerprint=_fingerprint(request),
    )


def remove_add_on_command(request: pb.RemoveAddOnRequest) -> cmd.RemoveAddOn:
    v = Violations()
    check.resource_id(v, request.subscription_id, "subscription_id", "sub")
    check.plan_code(v, request.add_on_code, "add_on_code")
    check.request_id(v, request.request_id)
    v.raise_if_any()
    return cmd.RemoveAddOn(
        subscription_id=request.subscription_id,
        add_on_code=request.add_on_code,
        request_id=request.request_id,
        fingerprint=_fingerprint(request),
    )


def cancel_subscription_command(request: pb.CancelSubscriptionRequest) -> cmd.CancelSubscription:
    v = Violations()
    check.resource_id(v, request.subscription_id, "subscription_id", "sub")
    timing = _timing(v, request.timing)
    check.request_id(v, request.request_id)
    v.raise_if_any()
    assert timing is not None
    return cmd.CancelSubscription(
        subscription_id=request.subscription_id,
        timing=timing,
        request_id=request.request_id,
        fingerprint=_fingerprint(request),
    )


# -- domain -> wire -------------------------------------------------------------------------
def customer_to_proto(customer: Customer) -> pb.Customer:
    return pb.Customer(
        customer_id=customer.customer_id,
        display_name=customer.display_name,
        email=customer.email,
        phone_number=customer.phone_number,
        language_code=customer.language_code,
        reseller_id=customer.reseller_id,
        group_id=customer.group_id,
        referral_code=customer.referral_code,
        referred_by=customer.referred_by,
        referrals_count=customer.referrals_count,
        create_time=timestamp_to_proto(customer.create_time),
        update_time=timestamp_to_proto(customer.update_time),
        external_ref=customer.external_ref or "",
        vat_id=customer.vat_id,
    )


def account_to_proto(account: Account) -> pb.Account:
    return pb.Account(
        account_id=account.account_id,
        customer_id=account.customer_id,
        display_name=account.display_name,
        currency_code=account.currency_code,
        time_zone=account.time_zone,
        bill_cycle_day=account.bill_cycle_day,
        tax_region=account.tax_region,
        payment_terms_days=account.payment_terms_days,
        payment_mode=_PAYMENT_MODE_TO_PROTO[account.payment_mode],
        credit_limit=money_to_proto(account.credit_limit) if account.credit_limit else None,
        parent_account_id=account.parent_account_id or "",
        state=_ACCOUNT_STATE_TO_PROTO[account.state],
        state_reason=account.state_reason,
        state_change_time=timestamp_to_proto(account.state_change_time),
        create_time=timestamp_to_proto(account.create_time),
        update_time=timestamp_to_proto(account.update_time),
        external_ref=account.external_ref or "",
    )


def state_change_to_proto(change: StateChange) -> pb.AccountStateChange:
    return pb.AccountStateChange(
        from_state=_ACCOUNT_STATE_TO_PROTO[change.from_state],
        to_state=_ACCOUNT_STATE_TO_PROTO[change.to_state],
        reason=change.reason,
        change_time=timestamp_to_proto(change.change_time),
    )


def subscription_to_proto(view: cmd.SubscriptionView) -> pb.Subscription:
    s = view.subscription
    pending = s.pending_plan_change
    return pb.Subscription(
        subscription_id=s.subscription_id,
        account_id=s.account_id,
        plan_code=s.plan_code,
        state=_SUBSCRIPTION_STATE_TO_PROTO[s.state],
        start_time=timestamp_to_proto(s.start_time),
        add_ons=[_add_on_to_proto(a) for a in s.add_ons],
        service_ids=ids.service_ids_to_proto(s.service_id_keys),
        pending_plan_change=(
            pb.PendingPlanChange(
                plan_code=pending.plan_code,
                effective_time=timestamp_to_proto(pending.effective_time),
            )
            if pending
            else None
        ),
        cancel_time=timestamp_to_proto(s.cancel_time),
        cancel_at_period_end=s.cancel_at_period_end,
        current_period_start_time=(
            timestamp_to_proto(view.current_period.start) if view.current_period else None
        ),
        current_period_end_time=(
            timestamp_to_proto(view.current_period.end) if view.current_period else None
        ),
        create_time=timestamp_to_proto(s.create_time),
        update_time=timestamp_to_proto(s.update_time),
    )


def next_page_token(next_after: str, key: str) -> str:
    return encode_page_token({"after": next_after, "query": key}) if next_after else ""


# -- helpers --------------------------------------------------------------------------------
def _add_on_to_proto(add_on: AddOn) -> pb.AddOn:
    return pb.AddOn(
        add_on_code=add_on.add_on_code,
        quantity=add_on.quantity,
        add_time=timestamp_to_proto(add_on.add_time),
    )


def _fingerprint(request: Message) -> str:
    return check.fingerprint(request)


def _payment_mode(v: Violations, value: int, path: str) -> PaymentMode | None:
    mode = PAYMENT_MODES.get(value)
    if mode is None:
        v.add(path, "is required: PREPAID, POSTPAID or HYBRID")
    return mode


def _timing(v: Violations, value: int) -> ChangeTiming | None:
    timing = TIMINGS.get(value)
    if timing is None:
        v.add("timing", "is required: IMMEDIATE or END_OF_CYCLE")
    return timing


def _optional_enum(v: Violations, value: int, known: Mapping[int, E], path: str) -> E | None:
    """A filter enum: 0 (UNSPECIFIED) means no filter."""
    if value == 0:
        return None
    found = known.get(value)
    if found is None:
        v.add(path, f"unknown value {value}")
    return found


def _mask_fields(
    v: Violations,
    request: pb.UpdateCustomerRequest | pb.UpdateAccountRequest,
    resource: str,
    mutable: frozenset[str],
    immutable: Mapping[str, str],
) -> frozenset[str]:
    """The fields an update changes, from ``update_mask`` (AIP-134).

    An empty mask means every mutable field set in the resource; ``*`` means all
    mutable fields (unset ones are cleared). Paths may carry the resource prefix.
    """
    if not request.HasField(resource):  # type: ignore[arg-type]
        v.add(resource, "is required")
        return frozenset()
    message: Message = getattr(request, resource)
    mask: field_mask_pb2.FieldMask = request.update_mask
    paths = [p.removeprefix(f"{resource}.") for p in mask.paths]
    if not paths:
        chosen = frozenset(f.name for f, _ in message.ListFields()) & mutable
    elif "*" in paths:
        chosen = mutable
    else:
        chosen = frozenset()
        for path in paths:
            if path in mutable:
                chosen |= {path}
            elif path in immutable:
                v.add("update_mask", f"{path} {immutable[path]}")
            else:
                v.add("update_mask", f"names unknown field {path!r}")
    if not chosen and not v:
        v.add("update_mask", "names no field to change")
    return chosen


def _query_key(*parts: str) -> str:
    # A page token is only valid for the query it came from; this binds the two.
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _page_cursor(v: Violations, token: str, key: str) -> str:
    cursor = decode_page_token(token, v)
    if cursor is None:
        return ""
    after = cursor.get("after", "")
    if cursor.get("query") != key or not after or len(after) > 64:
        v.add("page_token", "does not belong to this query (were the filters changed?)")
        return ""
    return after
