"""Customers: creation, referral codes and referrals, updates, idempotent requests."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.accounts.domain.events import CustomerCreated, CustomerUpdated
from services.accounts.domain.model import REFERRAL_CODE, CustomerRevision
from services.accounts.service_layer import commands as cmd
from services.accounts.service_layer import handlers
from services.common.clock import ManualClock
from services.common.errors import InvalidArgument, NotFound
from tests.unit.accounts import builders
from tests.unit.accounts.fakes import FakeDatabase, FakeUnitOfWork


def test_a_new_customer_gets_a_referral_code_and_an_event(
    uow: FakeUnitOfWork, db: FakeDatabase, clock: ManualClock
) -> None:
    customer = builders.customer(uow, reseller_id="acme", group_id="smb")

    assert customer.customer_id.startswith("cus_")
    assert REFERRAL_CODE.match(customer.referral_code)
    assert customer.language_code == "en"  # the default when none is given
    assert customer.create_time == clock.now()
    [event] = db.events
    assert isinstance(event, CustomerCreated)
    assert event.customer_id == customer.customer_id
    assert (event.reseller_id, event.group_id) == ("acme", "smb")
    assert event.referrer_customer_id == ""


def test_referral_codes_are_unique(uow: FakeUnitOfWork) -> None:
    codes = {builders.customer(uow).referral_code for _ in range(50)}
    assert len(codes) == 50


def test_a_referred_customer_names_the_referrer_but_counts_only_asynchronously(
    uow: FakeUnitOfWork, db: FakeDatabase
) -> None:
    referrer = builders.customer(uow)
    referred = builders.customer(uow, referred_by=referrer.referral_code)

    assert referred.referred_by == referrer.referral_code
    assert referred.referrer_customer_id == referrer.customer_id
    created = db.events_of(CustomerCreated)[-1]
    assert isinstance(created, CustomerCreated)
    assert created.referrer_customer_id == referrer.customer_id
    # One aggregate per transaction: the referrer is credited by the event consumer.
    assert handlers.get_customer(cmd.GetCustomer(referrer.customer_id), uow).referrals_count == 0


def test_the_referral_consumer_credits_once_per_event(uow: FakeUnitOfWork) -> None:
    referrer = builders.customer(uow)
    first = cmd.RecordReferral("evt_1", referrer.customer_id, "cus_a")
    second = cmd.RecordReferral("evt_2", referrer.customer_id, "cus_b")

    assert handlers.record_referral(first, uow) is True
    assert handlers.record_referral(first, uow) is False  # redelivered
    assert handlers.record_referral(second, uow) is True

    assert handlers.get_customer(cmd.GetCustomer(referrer.customer_id), uow).referrals_count == 2


def test_a_referral_by_an_unknown_customer_is_dropped_once(uow: FakeUnitOfWork) -> None:
    event = cmd.RecordReferral("evt_x", "cus_unknown", "cus_a")
    assert handlers.record_referral(event, uow) is False
    assert handlers.record_referral(event, uow) is False


def test_unknown_referral_code_is_invalid_and_writes_nothing(
    uow: FakeUnitOfWork, db: FakeDatabase
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        builders.customer(uow, referred_by="ZZZZZZZZ")

    assert [v.field for v in refused.value.violations] == ["customer.referred_by"]
    assert db.state.customers == {}
    assert db.events == []


def test_a_repeated_create_returns_the_first_customer(
    uow: FakeUnitOfWork, db: FakeDatabase
) -> None:
    answers = [
        builders.customer(uow, request_id="req-1", fingerprint="f1").customer_id for _ in range(3)
    ]

    assert len(set(answers)) == 1
    assert len(db.state.customers) == 1
    assert len(db.events) == 1


def test_a_request_id_reused_for_another_request_is_refused(
    uow: FakeUnitOfWork, db: FakeDatabase
) -> None:
    builders.customer(uow, request_id="req-1", fingerprint="f1")

    with pytest.raises(InvalidArgument) as refused:
        builders.customer(uow, display_name="Someone Else", request_id="req-1", fingerprint="f2")

    assert [v.field for v in refused.value.violations] == ["request_id"]
    assert len(db.state.customers) == 1


def test_request_ids_are_scoped_per_method(uow: FakeUnitOfWork) -> None:
    customer = builders.customer(uow, request_id="same", fingerprint="f1")
    account = builders.account(uow, customer.customer_id, request_id="same", fingerprint="f2")
    assert account.customer_id == customer.customer_id


def test_update_changes_the_masked_fields_only(
    uow: FakeUnitOfWork, db: FakeDatabase, clock: ManualClock
) -> None:
    customer = builders.customer(uow, phone_number="+31201234567")
    clock.advance(timedelta(minutes=5))
    revision = CustomerRevision(
        fields=frozenset({"email", "group_id"}),
        email="ada@analytical.example",
        group_id="vip",
        display_name="ignored because not in the mask",
    )

    updated = handlers.update_customer(
        cmd.UpdateCustomer(customer_id=customer.customer_id, revision=revision), uow
    )

    assert (updated.email, updated.group_id) == ("ada@analytical.example", "vip")
    assert updated.display_name == "Ada Lovelace"
    assert updated.phone_number == "+31201234567"
    assert updated.update_time == clock.now()
    event = db.events[-1]
    assert isinstance(event, CustomerUpdated)
    assert event.changed_fields == ("email", "group_id")


def test_an_update_that_changes_nothing_publishes_nothing(
    uow: FakeUnitOfWork, db: FakeDatabase
) -> None:
    customer = builders.customer(uow)
    revision = CustomerRevision(fields=frozenset({"email"}), email=customer.email)
    handlers.update_customer(
        cmd.UpdateCustomer(customer_id=customer.customer_id, revision=revision), uow
    )
    assert len(db.events) == 1  # only the creation


def test_unknown_customer_is_not_found(uow: FakeUnitOfWork) -> None:
    with pytest.raises(NotFound) as missing:
        handlers.get_customer(cmd.GetCustomer("cus_nobody"), uow)
    assert missing.value.reason == "CUSTOMER_NOT_FOUND"


def test_customers_page_through_filters(uow: FakeUnitOfWork) -> None:
    acme = {builders.customer(uow, reseller_id="acme").customer_id for _ in range(5)}
    for _ in range(3):
        builders.customer(uow, reseller_id="other")

    seen: list[str] = []
    after = ""
    while True:
        page = handlers.list_customers(
            cmd.ListCustomers(limit=2, after=after, reseller_id="acme"), uow
        )
        seen += [c.customer_id for c in page.items]
        if not page.next_after:
            break
        after = page.next_after

    assert len(seen) == 5
    assert set(seen) == acme
