"""Bad input to every method: INVALID_ARGUMENT naming each bad field, nothing written,
and no input at all makes the service fail with INTERNAL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.type import money_pb2

from reckon.accounts.v1 import accounts_pb2 as pb
from services.common.grpc_errors import details_of
from tests.integration.accounts.conftest import Accounts


@dataclass
class World:
    """Existing resources, so that only the input is wrong."""

    customer_id: str
    account_id: str
    subscription_id: str


async def world_of(accounts: Accounts) -> World:
    account = await accounts.account(
        payment_mode=pb.PAYMENT_MODE_POSTPAID,
        credit_limit=money_pb2.Money(currency_code="EUR", units=100),
    )
    subscription = await accounts.subscription(account.account_id)
    return World(account.customer_id, account.account_id, subscription.subscription_id)


BadCase = tuple[str, Callable[[World], Message], set[str]]

BAD_INPUT: list[BadCase] = [
    (
        "CreateCustomer",
        lambda w: pb.CreateCustomerRequest(
            customer=pb.Customer(
                display_name="",
                email="not-an-email",
                phone_number="0201234567",
                language_code="english please",
                reseller_id="has spaces",
                group_id="-dash-first",
                referred_by="nope",
            ),
            request_id="x" * 129,
        ),
        {
            "customer.display_name",
            "customer.email",
            "customer.phone_number",
            "customer.language_code",
            "customer.reseller_id",
            "customer.group_id",
            "customer.referred_by",
            "request_id",
        },
    ),
    ("CreateCustomer", lambda w: pb.CreateCustomerRequest(), {"customer"}),
    (
        "CreateCustomer",  # well-formed but unknown referral code
        lambda w: pb.CreateCustomerRequest(
            customer=pb.Customer(display_name="X", email="x@example.com", referred_by="ABCDEFGH")
        ),
        {"customer.referred_by"},
    ),
    ("GetCustomer", lambda w: pb.GetCustomerRequest(customer_id="42"), {"customer_id"}),
    (
        "ListCustomers",
        lambda w: pb.ListCustomersRequest(page_size=-1, page_token="!!!", reseller_id="a b"),
        {"page_size", "page_token", "reseller_id"},
    ),
    (
        "UpdateCustomer",
        lambda w: pb.UpdateCustomerRequest(
            customer=pb.Customer(customer_id=w.customer_id, email="still not an e-mail"),
            update_mask=field_mask_pb2.FieldMask(paths=["email", "referral_code"]),
        ),
        {"customer.email", "update_mask"},
    ),
    (
        "CreateAccount",
        lambda w: pb.CreateAccountRequest(
            account=pb.Account(
                customer_id=w.customer_id,
                currency_code="XXY",
                time_zone="Europe/Nowhere",
                bill_cycle_day=29,
                tax_region="nl",
                payment_terms_days=-1,
                parent_account_id="parent",
            ),
        ),
        {
            "account.currency_code",
            "account.time_zone",
            "account.bill_cycle_day",
            "account.tax_region",
            "account.payment_terms_days",
            "account.payment_mode",
            "account.parent_account_id",
        },
    ),
    (
        "CreateAccount",
        lambda w: pb.CreateAccountRequest(
            account=pb.Account(
                customer_id=w.customer_id,
                currency_code="EUR",
                time_zone="UTC",
                bill_cycle_day=1,
                payment_mode=pb.PAYMENT_MODE_POSTPAID,
                credit_limit=money_pb2.Money(currency_code="USD", units=10),
            )
        ),
        {"account.credit_limit"},
    ),
    ("GetAccount", lambda w: pb.GetAccountRequest(), {"account_id"}),
    (
        "ListAccounts",
        lambda w: pb.ListAccountsRequest(customer_id="cus_x", state=99),  # type: ignore[arg-type]
        {"customer_id", "state"},
    ),
    (
        "UpdateAccount",
        lambda w: pb.UpdateAccountRequest(
            account=pb.Account(account_id=w.account_id, currency_code="USD", bill_cycle_day=29),
            update_mask=field_mask_pb2.FieldMask(paths=["currency_code", "bill_cycle_day"]),
        ),
        {"update_mask", "account.bill_cycle_day"},
    ),
    (
        "UpdateAccount",  # a postpaid account cannot lose its credit limit
        lambda w: pb.UpdateAccountRequest(
            account=pb.Account(account_id=w.account_id),
            update_mask=field_mask_pb2.FieldMask(paths=["credit_limit"]),
        ),
        {"account.credit_limit"},
    ),
    (
        "SuspendAccount",
        lambda w: pb.SuspendAccountRequest(account_id=w.account_id),
        {"reason"},
    ),
    (
        "BarAccount",
        lambda w: pb.BarAccountRequest(account_id=w.account_id, reason="r" * 501),
        {"reason"},
    ),
    (
        "RestoreAccount",
        lambda w: pb.RestoreAccountRequest(account_id="acc_bad", reason="ok"),
        {"account_id"},
    ),
    (
        "CloseAccount",
        lambda w: pb.CloseAccountRequest(account_id=w.account_id, reason="bye\x00"),
        {"reason"},
    ),
    (
        "ListAccountStateHistory",
        lambda w: pb.ListAccountStateHistoryRequest(account_id=w.account_id, page_size=-5),
        {"page_size"},
    ),
    (
        "CreateSubscription",
        lambda w: pb.CreateSubscriptionRequest(
            subscription=pb.Subscription(account_id=w.account_id, plan_code="Gold Plan!")
        ),
        {"subscription.plan_code"},
    ),
    (
        "GetSubscription",
        lambda w: pb.GetSubscriptionRequest(subscription_id="sub_"),
        {"subscription_id"},
    ),
    (
        "ListSubscriptions",
        lambda w: pb.ListSubscriptionsRequest(state=7, page_size=-2),  # type: ignore[arg-type]
        {"state", "page_size"},
    ),
    (
        "ChangePlan",
        lambda w: pb.ChangePlanRequest(subscription_id=w.subscription_id),
        {"plan_code", "timing"},
    ),
    (
        "AddAddOn",
        lambda w: pb.AddAddOnRequest(
            subscription_id=w.subscription_id, add_on_code="X Y", quantity=20_000
        ),
        {"add_on_code", "quantity"},
    ),
    (
        "RemoveAddOn",
        lambda w: pb.RemoveAddOnRequest(subscription_id=w.subscription_id),
        {"add_on_code"},
    ),
    (
        "CancelSubscription",
        lambda w: pb.CancelSubscriptionRequest(subscription_id=w.subscription_id),
        {"timing"},
    ),
]


async def test_every_method_is_covered() -> None:
    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["AccountsService"].methods}
    assert {case[0] for case in BAD_INPUT} == methods


@pytest.mark.parametrize(
    ("method", "build", "fields"), BAD_INPUT, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_INPUT)]
)
async def test_bad_input_is_invalid_argument_naming_the_fields_and_writes_nothing(
    accounts: Accounts, method: str, build: Callable[[World], Message], fields: set[str]
) -> None:
    world = await world_of(accounts)
    before = accounts.row_counts()

    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await getattr(accounts.stub, method)(build(world))

    details = details_of(failed.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT, details.message
    assert details.fields == fields
    assert details.domain == "reckon.accounts"
    assert accounts.row_counts() == before


def garbage(message: Message, text: str, number: int) -> Message:
    """Every field of the message (and its sub-messages) set to a hostile value."""
    for field in message.DESCRIPTOR.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                continue
            sub = getattr(message, field.name)
            kind = sub.DESCRIPTOR.full_name
            if kind == "google.protobuf.FieldMask":
                sub.paths.extend([text, "*", "customer_id"])
            elif kind == "google.protobuf.Timestamp":
                sub.seconds = 0
            else:
                garbage(sub, text, number)
        elif field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
            setattr(message, field.name, text)
        elif field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_ENUM):
            setattr(message, field.name, number)
        elif field.type == FieldDescriptor.TYPE_INT64:
            setattr(message, field.name, number * 2**32)
        elif field.type == FieldDescriptor.TYPE_BOOL:
            setattr(message, field.name, True)
    return message


HOSTILE = [
    ("\x00" * 3, -(2**31)),
    ("💥" * 5000, 2**31 - 1),
    ("'; DROP TABLE customers; --", 1),
    ("../../etc/passwd", 0),
    ("acc_" + "z" * 26, 28),
]


@pytest.mark.parametrize(("text", "number"), HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_input_never_crashes_the_service(
    accounts: Accounts, text: str, number: int
) -> None:
    service = pb.DESCRIPTOR.services_by_name["AccountsService"]
    acceptable = {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
    unexpected = []
    for method in service.methods:
        request: Any = getattr(pb, method.input_type.name)()
        try:
            await getattr(accounts.stub, method.name)(garbage(request, text, number))
        except grpc.aio.AioRpcError as error:
            if error.code() not in acceptable:
                unexpected.append((method.name, error.code(), error.details()))
    assert unexpected == []
    assert accounts.row_counts()["customers"] == 0
