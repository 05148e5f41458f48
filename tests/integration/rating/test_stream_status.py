"""Rating's streamed answers report errors as google.rpc.Status, as charging's do (item 14).

Each failed event carries the status a unary call would have failed with: its code,
the ErrorInfo reason, BadRequest field violations for bad input, and a ResourceInfo
for what was not found. ``RatingError`` stays for clients that read it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.grpc_errors import details_of_status
from services.rating.entrypoints.main import RunningRating
from tests.integration.rating.conftest import add_account, apply_sample_catalog
from tests.integration.rating.test_rating_api import event


async def test_failed_events_carry_a_google_rpc_status(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> None:
    await apply_sample_catalog(stub)
    add_account(rating, "acc_1")
    monday = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    bad = event("b4", "+12125550199", monday, 60)
    bad.service = ""
    events = [
        event("b1", "+12125550199", monday, 60),
        event("b2", "+12125550199", monday, 60, account="acc_unknown"),
        event("b3", "+81312345678", monday, 60),  # no tariff for Japan
        bad,
    ]
    answers = [
        r.result
        async for r in stub.StreamRateEvents(
            iter([rating_pb2.StreamRateEventsRequest(event=e) for e in events])
        )
    ]
    assert not answers[0].HasField("status")
    unknown = details_of_status(answers[1].status)
    assert (unknown.code, unknown.reason, unknown.domain) == (
        grpc.StatusCode.NOT_FOUND,
        "UNKNOWN_ACCOUNT",
        "reckon.rating",
    )
    assert unknown.resource_type == "account"
    no_tariff = details_of_status(answers[2].status)
    assert (no_tariff.code, no_tariff.reason) == (grpc.StatusCode.NOT_FOUND, "NO_TARIFF")
    invalid = details_of_status(answers[3].status)
    assert invalid.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "event.service" in invalid.fields
    # The batch call answers the same way.
    reply = await stub.RateEvents(rating_pb2.RateEventsRequest(events=events[:3]))
    assert [details_of_status(r.status).reason for r in reply.results[1:]] == [
        "UNKNOWN_ACCOUNT",
        "NO_TARIFF",
    ]
