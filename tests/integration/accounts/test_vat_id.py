"""A customer's VAT identifier: kept, changed through the update mask, validated, and
announced on CustomerCreated/CustomerUpdated for invoicing (reverse charge, intra-community
supply need it on the e-invoice, BT-48)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from reckon.accounts.v1 import accounts_pb2 as pb
from services.common.grpc_errors import details_of
from tests.integration.accounts.conftest import Accounts


async def test_the_vat_id_is_kept_changed_and_announced(accounts: Accounts) -> None:
    customer = await accounts.customer(vat_id="BE0477472701")
    assert customer.vat_id == "BE0477472701"
    fetched = await accounts.stub.GetCustomer(
        pb.GetCustomerRequest(customer_id=customer.customer_id)
    )
    assert fetched.customer.vat_id == "BE0477472701"
    updated = await accounts.stub.UpdateCustomer(
        pb.UpdateCustomerRequest(
            customer=pb.Customer(customer_id=customer.customer_id, vat_id="DE136695976"),
            update_mask=field_mask_pb2.FieldMask(paths=["vat_id"]),
        )
    )
    assert updated.customer.vat_id == "DE136695976"
    created, changed = await accounts.wait_for_events(2)
    assert created.payload["vat_id"] == "BE0477472701"
    assert (changed.payload["changed_fields"], changed.payload["vat_id"]) == (
        ["vat_id"],
        "DE136695976",
    )


@pytest.mark.parametrize("bad", ["BE 0477 472 701", "be0477472701", "B1", "NL" + "1" * 14])
async def test_a_malformed_vat_id_is_refused_naming_the_field(accounts: Accounts, bad: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts.customer(vat_id=bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "customer.vat_id" in details_of(caught.value).fields
