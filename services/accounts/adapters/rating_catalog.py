"""The plan catalog as the rating service keeps it (RAT-1), asked over gRPC.

``RatingPlanCatalog`` implements the ``PlanCatalog`` port with rating's
``GetPlan``: a plan may be sold when the catalog in force has it and at least one
of its versions has not ended. Rating's catalog has no add-ons (its contract
knows plans and price packages only), so add-on codes are checked for shape
alone, as before; they become a question for rating once its catalog has them.

The port is called by synchronous handlers in worker threads, so the channel is
a blocking one (``open_sync_channel``): the call runs in the handler's thread,
and the copied context makes its client span a child of the accounts call.

Positive answers are cached for ``cache_seconds`` (catalogs change rarely, and a
plan withdrawn a few seconds ago may still be sold for that long); negative
answers are not, so a plan applied a moment ago can be subscribed to at once.
When rating cannot answer, the port raises ``Unavailable`` instead of guessing:
accepting an unchecked code would let a subscription to a plan that rating
cannot price slip through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import grpc

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.accounts.domain.model import PLAN_CODE
from services.common.clock import Clock, SystemClock
from services.common.errors import ReckonError, Unavailable
from services.common.grpc_client import open_sync_channel
from services.common.grpc_errors import details_of
from services.common.proto_convert import timestamp_from_proto

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS: Final = 2.0
DEFAULT_CACHE_SECONDS: Final = 30.0
# Codes rating answers with when it has no catalog at all: then no plan exists.
_NO_CATALOG: Final = "NO_CATALOG"
# Status codes that mean "rating could not answer now" rather than "rating said no".
_TRANSIENT: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class PlanCatalogUnavailable(Unavailable):
    default_reason = "PLAN_CATALOG_UNAVAILABLE"


class RatingPlanCatalog:
    """``PlanCatalog`` backed by the rating service's catalog in force."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        address: str,
        clock: Clock | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._channel = channel
        self._stub: Any = rating_pb2_grpc.RatingServiceStub(channel)
        self._address = address
        self._clock = clock or SystemClock()
        self._timeout = timeout_seconds
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._sellable_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._warned_no_catalog = False

    @classmethod
    def connect(
        cls,
        address: str,
        token: str,
        *,
        clock: Clock | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
    ) -> RatingPlanCatalog:
        return cls(
            open_sync_channel(address, token),
            address=address,
            clock=clock,
            timeout_seconds=timeout_seconds,
            cache_seconds=cache_seconds,
        )

    def close(self) -> None:
        self._channel.close()

    # -- the port -------------------------------------------------------------------------

    def has_plan(self, plan_code: str) -> bool:
        if PLAN_CODE.match(plan_code) is None:
            return False
        if self._cached(plan_code):
            return True
        plan = self._get_plan(plan_code)
        if plan is None or not _on_sale(plan, self._clock.now()):
            return False
        with self._lock:
            self._sellable_until[plan_code] = self._monotonic() + self._cache_seconds
        return True

    def has_add_on(self, add_on_code: str) -> bool:
        # Rating's catalog has no add-ons yet: nothing to ask, so the shape decides.
        return PLAN_CODE.match(add_on_code) is not None

    # -- rating ---------------------------------------------------------------------------

    def _cached(self, plan_code: str) -> bool:
        with self._lock:
            until = self._sellable_until.get(plan_code)
            if until is None:
                return False
            if until > self._monotonic():
                return True
            del self._sellable_until[plan_code]
            return False

    def _get_plan(self, plan_code: str) -> Any:
        """Rating's ``PlanSummary`` of ``plan_code``, or None when it has no such plan."""
        try:
            reply = self._stub.GetPlan(
                rating_pb2.GetPlanRequest(plan_code=plan_code), timeout=self._timeout
            )
        except grpc.RpcError as error:
            return self._refusal(plan_code, error)
        return reply.plan

    def _refusal(self, plan_code: str, error: grpc.RpcError) -> None:
        details = details_of(error)
        if details.code == grpc.StatusCode.NOT_FOUND:
            return None
        if details.code == grpc.StatusCode.FAILED_PRECONDITION and details.reason == _NO_CATALOG:
            if not self._warned_no_catalog:
                self._warned_no_catalog = True
                log.warning(
                    "rating at %s has no catalog yet: every plan code is refused until one "
                    "is applied (reckon catalog apply FILE)",
                    self._address,
                )
            return None
        if details.code in _TRANSIENT:
            raise PlanCatalogUnavailable(
                f"the plan catalog (rating service at {self._address}) cannot be reached, "
                f"so plan {plan_code!r} cannot be checked now; try again "
                f"({details.code.name}: {details.message[:200]})"
            ) from None
        raise ReckonError(
            f"the plan catalog (rating service at {self._address}) refused to answer about "
            f"plan {plan_code!r}: {details.code.name}: {details.message[:200]}",
            reason="PLAN_CATALOG_ERROR",
        ) from None


def _on_sale(plan: Any, now: datetime) -> bool:
    """A plan is sold while one of its versions is open-ended or ends after ``now``."""
    for version in plan.versions:
        if not version.HasField("valid_to") or timestamp_from_proto(version.valid_to) > now:
            return True
    return False
