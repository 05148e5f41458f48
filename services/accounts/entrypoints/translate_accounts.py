"""Billing accounts on the wire: Create/Update/Get/ListAccounts, state changes and their
history in; ``Account`` and ``AccountStateChange`` out."""

from __future__ import annotations

from typing import Final, TypeVar

from reckon.accounts.v1 import accounts_pb2 as pb
from services.accounts.domain.model import (
    ACCOUNT_MUTABLE_FIELDS,
    Account,
    AccountRevision,
    PaymentMode,
    StateChange,
    credit_limit_problem,
)
from services.accounts.entrypoints import identities as ids
from services.accounts.entrypoints import validation as check
from services.accounts.entrypoints.translate_common import (
    _ACCOUNT_STATE_TO_PROTO,
    _PAYMENT_MODE_TO_PROTO,
    ACCOUNT_STATES,
    _fingerprint,
    _mask_fields,
    _optional_enum,
    _page_cursor,
    _payment_mode,
    _query_key,
)
from services.accounts.service_layer import commands as cmd
from services.common.errors import Violations
from services.common.money import Money
from services.common.proto_convert import (
    money_from_proto,
    money_to_proto,
    page_size_from_proto,
    timestamp_to_proto,
)

# Fields a mask may name but never change, with the reason the caller is told.
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
