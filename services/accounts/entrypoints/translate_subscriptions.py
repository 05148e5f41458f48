"""Subscriptions on the wire: create, get, list, change plan, add-ons and cancellation
requests in; ``Subscription`` (with its current period and pending change) out."""

from __future__ import annotations

from reckon.accounts.v1 import accounts_pb2 as pb
from services.accounts.domain.model import AddOn
from services.accounts.entrypoints import identities as ids
from services.accounts.entrypoints import validation as check
from services.accounts.entrypoints.translate_common import (
    _SUBSCRIPTION_STATE_TO_PROTO,
    SUBSCRIPTION_STATES,
    _fingerprint,
    _optional_enum,
    _page_cursor,
    _query_key,
    _timing,
)
from services.accounts.service_layer import commands as cmd
from services.common.errors import Violations
from services.common.proto_convert import page_size_from_proto, timestamp_to_proto


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


def _add_on_to_proto(add_on: AddOn) -> pb.AddOn:
    return pb.AddOn(
        add_on_code=add_on.add_on_code,
        quantity=add_on.quantity,
        add_time=timestamp_to_proto(add_on.add_time),
    )
