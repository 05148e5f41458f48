"""Request validation at the edge: every bad field named, with its path in the request."""

from __future__ import annotations

import pytest
from google.protobuf import field_mask_pb2
from google.type import money_pb2

from reckon.accounts.v1 import accounts_pb2 as pb
from services.accounts.domain.model import PaymentMode
from services.accounts.entrypoints import translate
from services.accounts.entrypoints.validation import fingerprint
from services.common.errors import InvalidArgument
from services.common.money import Money

CUSTOMER_ID = "cus_01jd0000000000000000000000"
ACCOUNT_ID = "acc_01jd0000000000000000000000"


def fields_of(error: pytest.ExceptionInfo[InvalidArgument]) -> set[str]:
    return {v.field for v in error.value.violations}


def good_account(**overrides: object) -> pb.Account:
    account = pb.Account(
        customer_id=CUSTOMER_ID,
        currency_code="EUR",
        time_zone="Europe/Amsterdam",
        bill_cycle_day=5,
        payment_mode=pb.PAYMENT_MODE_POSTPAID,
        credit_limit=money_pb2.Money(currency_code="EUR", units=100, nanos=500_000_000),
        tax_region="NL",
        payment_terms_days=30,
    )
    for name, value in overrides.items():
        if isinstance(value, money_pb2.Money):
            getattr(account, name).CopyFrom(value)
        else:
            setattr(account, name, value)
    return account


def test_a_good_account_request_becomes_a_command() -> None:
    command = translate.create_account_command(
        pb.CreateAccountRequest(account=good_account(), request_id="r-1")
    )
    assert command.payment_mode is PaymentMode.POSTPAID
    assert command.credit_limit == Money.of("100.5", "EUR")
    assert command.parent_account_id is None
    assert command.request_id == "r-1"
    assert len(command.fingerprint) == 64


def test_every_bad_account_field_is_reported_at_once() -> None:
    bad = pb.Account(
        customer_id="customer-1",
        currency_code="EURO",
        time_zone="Europe/Atlantis",
        bill_cycle_day=31,
        tax_region="Netherlands",
        payment_terms_days=400,
        payment_mode=pb.PAYMENT_MODE_UNSPECIFIED,
        parent_account_id="acc_short",
        display_name="x" * 201,
    )
    with pytest.raises(InvalidArgument) as refused:
        translate.create_account_command(pb.CreateAccountRequest(account=bad, request_id=" "))
    assert fields_of(refused) == {
        "account.customer_id",
        "account.currency_code",
        "account.time_zone",
        "account.bill_cycle_day",
        "account.tax_region",
        "account.payment_terms_days",
        "account.payment_mode",
        "account.parent_account_id",
        "account.display_name",
        "request_id",
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"credit_limit": money_pb2.Money(currency_code="USD", units=5)}, "account.credit_limit"),
        ({"credit_limit": money_pb2.Money(currency_code="EUR", units=-5)}, "account.credit_limit"),
        (
            {"credit_limit": money_pb2.Money(currency_code="EUR", units=1, nanos=-5)},
            "account.credit_limit.nanos",
        ),
        ({"credit_limit": money_pb2.Money(units=5)}, "account.credit_limit.currency_code"),
        ({"payment_mode": pb.PAYMENT_MODE_PREPAID}, "account.credit_limit"),
        ({"bill_cycle_day": 0}, "account.bill_cycle_day"),
    ],
)
def test_account_field_rules(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        translate.create_account_command(pb.CreateAccountRequest(account=good_account(**overrides)))
    assert fields_of(refused) == {field}


def test_missing_resource_is_named() -> None:
    with pytest.raises(InvalidArgument) as refused:
        translate.create_account_command(pb.CreateAccountRequest())
    assert fields_of(refused) == {"account"}


@pytest.mark.parametrize(
    ("customer", "fields"),
    [
        (pb.Customer(), {"customer.display_name", "customer.email"}),
        (
            pb.Customer(display_name=" Ada", email="ada@", phone_number="0612345678"),
            {"customer.display_name", "customer.email", "customer.phone_number"},
        ),
        (
            pb.Customer(display_name="Ada", email="a@b.co", language_code="english!"),
            {"customer.language_code"},
        ),
        (
            pb.Customer(display_name="Ada", email="a@b.co", reseller_id="a b", group_id="-x"),
            {"customer.reseller_id", "customer.group_id"},
        ),
        (
            pb.Customer(display_name="Ada\x07", email="a@b.co", referred_by="nope"),
            {"customer.display_name", "customer.referred_by"},
        ),
    ],
)
def test_customer_fields_are_checked(customer: pb.Customer, fields: set[str]) -> None:
    with pytest.raises(InvalidArgument) as refused:
        translate.create_customer_command(pb.CreateCustomerRequest(customer=customer))
    assert fields_of(refused) == fields


def test_referral_codes_are_read_in_any_case() -> None:
    command = translate.create_customer_command(
        pb.CreateCustomerRequest(
            customer=pb.Customer(
                display_name="Ada", email="ada@example.com", referred_by="abcd2345"
            )
        )
    )
    assert command.referred_by == "ABCD2345"


def test_currency_is_immutable_in_an_update_mask() -> None:
    request = pb.UpdateAccountRequest(
        account=pb.Account(account_id=ACCOUNT_ID, currency_code="USD"),
        update_mask=field_mask_pb2.FieldMask(paths=["currency_code", "colour", "bill_cycle_day"]),
    )
    with pytest.raises(InvalidArgument) as refused:
        translate.update_account_command(request)
    messages: dict[str, list[str]] = {v.field: [] for v in refused.value.violations}
    for v in refused.value.violations:
        messages[v.field].append(v.description)
    assert set(messages) == {"update_mask", "account.bill_cycle_day"}
    assert any("currency_code is immutable" in m for m in messages["update_mask"])
    assert any("'colour'" in m for m in messages["update_mask"])


def test_an_empty_mask_updates_the_fields_that_are_set() -> None:
    command = translate.update_account_command(
        pb.UpdateAccountRequest(
            account=pb.Account(account_id=ACCOUNT_ID, time_zone="UTC", bill_cycle_day=3)
        )
    )
    assert command.revision.fields == {"time_zone", "bill_cycle_day"}


def test_a_mask_may_clear_a_field() -> None:
    command = translate.update_account_command(
        pb.UpdateAccountRequest(
            account=pb.Account(account_id=ACCOUNT_ID),
            update_mask=field_mask_pb2.FieldMask(paths=["account.credit_limit"]),
        )
    )
    assert command.revision.fields == {"credit_limit"}
    assert command.revision.credit_limit is None


def test_an_update_naming_nothing_is_refused() -> None:
    with pytest.raises(InvalidArgument) as refused:
        translate.update_customer_command(
            pb.UpdateCustomerRequest(customer=pb.Customer(customer_id=CUSTOMER_ID))
        )
    assert fields_of(refused) == {"update_mask"}


def test_page_tokens_belong_to_their_query() -> None:
    query, key = translate.list_accounts_query(pb.ListAccountsRequest(customer_id=CUSTOMER_ID))
    token = translate.next_page_token(ACCOUNT_ID, key)
    again, _ = translate.list_accounts_query(
        pb.ListAccountsRequest(customer_id=CUSTOMER_ID, page_token=token)
    )
    assert again.after == ACCOUNT_ID

    with pytest.raises(InvalidArgument) as other_filters:
        translate.list_accounts_query(
            pb.ListAccountsRequest(state=pb.ACCOUNT_STATE_ACTIVE, page_token=token)
        )
    assert fields_of(other_filters) == {"page_token"}
    with pytest.raises(InvalidArgument) as garbage:
        translate.list_accounts_query(pb.ListAccountsRequest(page_token="%%%not-base64"))
    assert fields_of(garbage) == {"page_token"}
    with pytest.raises(InvalidArgument) as negative:
        translate.list_customers_query(pb.ListCustomersRequest(page_size=-1))
    assert fields_of(negative) == {"page_size"}
    assert query.limit == 50


def test_state_changes_need_a_reason() -> None:
    from services.accounts.service_layer import commands as cmd

    with pytest.raises(InvalidArgument) as refused:
        translate.state_change_command(
            pb.SuspendAccountRequest(account_id="acc_?"), cmd.SuspendAccount
        )
    assert fields_of(refused) == {"account_id", "reason"}


def test_subscription_requests_are_checked() -> None:
    with pytest.raises(InvalidArgument) as create:
        translate.create_subscription_command(
            pb.CreateSubscriptionRequest(subscription=pb.Subscription(plan_code="Gold Plan"))
        )
    assert fields_of(create) == {"subscription.account_id", "subscription.plan_code"}
    with pytest.raises(InvalidArgument) as change:
        translate.change_plan_command(pb.ChangePlanRequest(subscription_id="sub_1"))
    assert fields_of(change) == {"subscription_id", "plan_code", "timing"}
    with pytest.raises(InvalidArgument) as add:
        translate.add_add_on_command(
            pb.AddAddOnRequest(subscription_id="x", add_on_code="", quantity=-2)
        )
    assert fields_of(add) == {"subscription_id", "add_on_code", "quantity"}


def test_the_fingerprint_ignores_the_request_id_only() -> None:
    one = pb.SuspendAccountRequest(account_id=ACCOUNT_ID, reason="overdue", request_id="a")
    two = pb.SuspendAccountRequest(account_id=ACCOUNT_ID, reason="overdue", request_id="b")
    other = pb.SuspendAccountRequest(account_id=ACCOUNT_ID, reason="fraud", request_id="a")
    assert fingerprint(one) == fingerprint(two) != fingerprint(other)
    assert one.request_id == "a"  # the request itself is untouched
