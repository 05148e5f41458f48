"""Customer use cases: create, read, list and update customers; credit referrals."""

from __future__ import annotations

import logging
from typing import Final

from services.accounts.domain.model import Customer, new_referral_code
from services.accounts.service_layer.commands import (
    CreateCustomer,
    GetCustomer,
    ListCustomers,
    Page,
    RecordReferral,
    UpdateCustomer,
)
from services.accounts.service_layer.handler_support import (
    _check_ref_free,
    _customer,
    _page,
    _remember,
    _replayed,
)
from services.accounts.service_layer.unit_of_work import AccountsUnitOfWork
from services.common.errors import Aborted, InvalidArgument
from services.common.ids import new_id

log = logging.getLogger(__name__)

# The consumer group that credits referrers; also its inbox name (processed_events).
REFERRALS_CONSUMER: Final = "accounts-referrals"
# Random codes rarely collide; a few retries make a collision-caused failure negligible.
_REFERRAL_CODE_ATTEMPTS: Final = 5


def create_customer(cmd: CreateCustomer, uow: AccountsUnitOfWork) -> Customer:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _customer(uow, replayed)
        referrer = None
        if cmd.referred_by:
            referrer = uow.customers.get_by_referral_code(cmd.referred_by)
            if referrer is None:
                raise InvalidArgument.field(
                    "customer.referred_by", "is not the referral code of any customer"
                )
        _check_ref_free(uow.customers.get, cmd.external_ref, "customer.external_ref")
        customer, created = Customer.register(
            customer_id=new_id("cus"),
            display_name=cmd.display_name,
            email=cmd.email,
            phone_number=cmd.phone_number,
            language_code=cmd.language_code,
            reseller_id=cmd.reseller_id,
            group_id=cmd.group_id,
            referral_code=_unused_referral_code(uow),
            referrer=referrer,
            now=uow.clock.now(),
            external_ref=cmd.external_ref,
            vat_id=cmd.vat_id,
        )
        uow.customers.add(customer)
        uow.publish(created)
        _remember(uow, cmd, customer.customer_id)
        uow.commit()
    return customer


def get_customer(query: GetCustomer, uow: AccountsUnitOfWork) -> Customer:
    with uow:
        return _customer(uow, query.customer_id)


def list_customers(query: ListCustomers, uow: AccountsUnitOfWork) -> Page[Customer]:
    with uow:
        found = uow.customers.list(
            reseller_id=query.reseller_id,
            group_id=query.group_id,
            after=query.after,
            limit=query.limit + 1,
        )
        return _page(found, query.limit, lambda c: c.customer_id)


def update_customer(cmd: UpdateCustomer, uow: AccountsUnitOfWork) -> Customer:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _customer(uow, replayed)
        customer = _customer(uow, cmd.customer_id)
        updated = customer.revise(cmd.revision, uow.clock.now())
        if updated is not None:
            uow.publish(updated)
        _remember(uow, cmd, customer.customer_id)
        uow.commit()
    return customer


def record_referral(cmd: RecordReferral, uow: AccountsUnitOfWork) -> bool:
    """Credit the referrer once per event, however often the event is delivered."""
    with uow:
        if not uow.mark_processed(REFERRALS_CONSUMER, cmd.event_id):
            return False
        referrer = uow.customers.get(cmd.referrer_customer_id)
        if referrer is None:
            # Customers are never deleted, so the event is wrong; retrying cannot help.
            log.warning(
                "referral by unknown customer %s (event %s) ignored",
                cmd.referrer_customer_id,
                cmd.event_id,
            )
            uow.commit()
            return False
        referrer.credit_referral(uow.clock.now())
        uow.commit()
    return True


def _unused_referral_code(uow: AccountsUnitOfWork) -> str:
    for _ in range(_REFERRAL_CODE_ATTEMPTS):
        code = new_referral_code()
        if uow.customers.get_by_referral_code(code) is None:
            return code
    raise Aborted("could not find an unused referral code; retry", reason="REFERRAL_CODE_TAKEN")
