"""Customers on the wire: Create/Update/Get/ListCustomers requests in, ``Customer`` out."""

from __future__ import annotations

from typing import Final

from reckon.accounts.v1 import accounts_pb2 as pb
from services.accounts.domain.model import CUSTOMER_MUTABLE_FIELDS, Customer, CustomerRevision
from services.accounts.entrypoints import identities as ids
from services.accounts.entrypoints import validation as check
from services.accounts.entrypoints.translate_common import (
    _fingerprint,
    _mask_fields,
    _page_cursor,
    _query_key,
)
from services.accounts.service_layer import commands as cmd
from services.common.errors import Violations
from services.common.proto_convert import page_size_from_proto, timestamp_to_proto

# Fields a mask may name but never change, with the reason the caller is told.
_IMMUTABLE_CUSTOMER_FIELDS: Final = {
    "customer_id": "identifies the customer",
    "referral_code": "is assigned by the service",
    "referred_by": "is set only when the customer is created",
    "referrals_count": "is counted by the service",
    "create_time": "is output only",
    "update_time": "is output only",
}


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
