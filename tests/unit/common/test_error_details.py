"""NOT_FOUND always says what was not found: a ResourceInfo next to the ErrorInfo."""

from __future__ import annotations

import grpc

from services.common.errors import FailedPrecondition, NotFound
from services.common.grpc_errors import details_of_status, status_proto


def test_not_found_carries_a_resource_info_read_from_reason_and_metadata() -> None:
    error = NotFound(
        "account acc_1 not found", reason="ACCOUNT_NOT_FOUND", metadata={"account_id": "acc_1"}
    )
    details = details_of_status(status_proto(error, domain="reckon.accounts"))
    assert details.code is grpc.StatusCode.NOT_FOUND
    assert (details.resource_type, details.resource_name) == ("account", "acc_1")
    assert details.reason == "ACCOUNT_NOT_FOUND"


def test_given_resource_type_and_name_win() -> None:
    error = NotFound(
        "no plan", reason="UNKNOWN_PLAN", resource_type="price_plan", resource_name="pro"
    )
    details = details_of_status(status_proto(error, domain="reckon.rating"))
    assert (details.resource_type, details.resource_name) == ("price_plan", "pro")
    parent = NotFound(
        "parent account p not found",
        reason="PARENT_ACCOUNT_NOT_FOUND",
        metadata={"parent_account_id": "p"},
    )
    assert details_of_status(status_proto(parent, domain="d")).resource_name == "p"
    bare = details_of_status(status_proto(NotFound("no plan", reason="UNKNOWN_PLAN"), domain="d"))
    assert (bare.resource_type, bare.resource_name) == ("plan", "")


def test_other_errors_carry_no_resource_info() -> None:
    status = status_proto(FailedPrecondition("closed", reason="ACCOUNT_CLOSED"), domain="d")
    assert details_of_status(status).resource_type == ""
    assert len(status.details) == 1
