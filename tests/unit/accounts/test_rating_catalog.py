"""The rating-backed plan catalog: what rating's answers mean for a subscription."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from reckon.rating.v1 import rating_pb2
from services.accounts.adapters.rating_catalog import PlanCatalogUnavailable, RatingPlanCatalog
from services.common.clock import ManualClock
from services.common.errors import FailedPrecondition, NotFound, ReckonError
from services.common.grpc_errors import to_rpc_status
from services.common.proto_convert import timestamp_to_proto

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Refused(grpc.RpcError):  # type: ignore[misc]
    """A failed call as the sync stub raises it: code, details, rich-status trailers."""

    def __init__(self, code: grpc.StatusCode, error: ReckonError | None = None) -> None:
        self._code = code
        status = to_rpc_status(error, domain="rating") if error is not None else None
        self._details = error.message if error is not None else "no route"
        self._trailers = tuple(status.trailing_metadata) if status is not None else ()

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailers


class FakeRating:
    """Stands in for the channel: answers GetPlan from ``plans`` or raises ``failure``."""

    def __init__(self) -> None:
        self.plans: dict[str, rating_pb2.PlanSummary] = {}
        self.failure: grpc.RpcError | None = None
        self.calls = 0

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        def call(request: Any, timeout: float | None = None) -> Any:
            assert method.endswith("/GetPlan"), method
            self.calls += 1
            if self.failure is not None:
                raise self.failure
            plan = self.plans.get(request.plan_code)
            if plan is None:
                raise Refused(grpc.StatusCode.NOT_FOUND, NotFound("no plan", reason="UNKNOWN_PLAN"))
            return rating_pb2.GetPlanResponse(plan=plan)

        return call

    unary_stream = stream_unary = stream_stream = unary_unary

    def close(self) -> None:
        pass


def plan(code: str, *, ends: datetime | None = None) -> rating_pb2.PlanSummary:
    version = rating_pb2.PlanVersionSummary(
        version=1,
        valid_from=timestamp_to_proto(NOW - timedelta(days=100)),
        valid_to=timestamp_to_proto(ends),
    )
    return rating_pb2.PlanSummary(code=code, currency="EUR", versions=[version])


@pytest.fixture
def rating() -> FakeRating:
    return FakeRating()


@pytest.fixture
def seconds() -> list[float]:
    return [0.0]


@pytest.fixture
def catalog(rating: FakeRating, seconds: list[float]) -> RatingPlanCatalog:
    return RatingPlanCatalog(
        rating,
        address="rating:50052",
        clock=ManualClock(NOW),
        cache_seconds=30,
        monotonic=lambda: seconds[0],
    )


def test_a_plan_rating_has_is_sold_and_believed_for_the_cache_period(
    catalog: RatingPlanCatalog, rating: FakeRating, seconds: list[float]
) -> None:
    rating.plans["conference-pro"] = plan("conference-pro")
    assert catalog.has_plan("conference-pro")
    seconds[0] = 29
    assert catalog.has_plan("conference-pro")
    assert rating.calls == 1
    seconds[0] = 31
    del rating.plans["conference-pro"]  # withdrawn: noticed once the answer expired
    assert not catalog.has_plan("conference-pro")
    assert rating.calls == 2


def test_an_unknown_plan_is_refused_and_asked_again_next_time(
    catalog: RatingPlanCatalog, rating: FakeRating
) -> None:
    assert not catalog.has_plan("gold")
    rating.plans["gold"] = plan("gold")
    assert catalog.has_plan("gold")
    assert rating.calls == 2


def test_a_plan_whose_every_version_ended_is_not_sold(
    catalog: RatingPlanCatalog, rating: FakeRating
) -> None:
    rating.plans["legacy"] = plan("legacy", ends=NOW - timedelta(seconds=1))
    rating.plans["ending"] = plan("ending", ends=NOW + timedelta(days=1))
    assert not catalog.has_plan("legacy")
    assert catalog.has_plan("ending")


def test_a_malformed_code_is_refused_without_asking(
    catalog: RatingPlanCatalog, rating: FakeRating
) -> None:
    assert not catalog.has_plan("Not A Code!")
    assert rating.calls == 0


def test_without_a_catalog_in_rating_no_plan_exists(
    catalog: RatingPlanCatalog, rating: FakeRating
) -> None:
    rating.failure = Refused(
        grpc.StatusCode.FAILED_PRECONDITION, FailedPrecondition("none", reason="NO_CATALOG")
    )
    assert not catalog.has_plan("conference-pro")


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_rating_that_cannot_answer_makes_the_question_unavailable(
    catalog: RatingPlanCatalog, rating: FakeRating, code: grpc.StatusCode
) -> None:
    rating.failure = Refused(code)
    with pytest.raises(PlanCatalogUnavailable) as failure:
        catalog.has_plan("conference-pro")
    assert failure.value.reason == "PLAN_CATALOG_UNAVAILABLE"
    assert "rating service at rating:50052" in failure.value.message


def test_any_other_refusal_is_an_error_not_a_yes(
    catalog: RatingPlanCatalog, rating: FakeRating
) -> None:
    rating.failure = Refused(grpc.StatusCode.UNAUTHENTICATED)
    with pytest.raises(ReckonError) as failure:
        catalog.has_plan("conference-pro")
    assert failure.value.reason == "PLAN_CATALOG_ERROR"


def test_add_on_codes_are_checked_for_shape_only(catalog: RatingPlanCatalog) -> None:
    assert catalog.has_add_on("recording")
    assert not catalog.has_add_on("Bad Code")
