"""The gRPC face of the rating service: proto in, service layer, proto out.

Each method validates its whole request first (``Violations`` naming every bad
field), then runs the synchronous use case in a thread (ADR 0002). Uploads
(usage files, destination tables) are spooled to a temporary file while they
arrive, hashing as they go, so a file of any size is imported in constant
memory and identified by its checksum before a single record is rated.

The RPCs are grouped by use case: ``catalog_rpc`` (catalog and destinations),
``rating_rpc`` (rating and quotes), ``usage_rpc`` (usage import, rejects,
re-rating, rated usage), ``plan_fees_rpc``; ``rpc_common`` holds the limits,
request checks and upload spooling they share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.rating.entrypoints.catalog_rpc import CatalogRpcs
from services.rating.entrypoints.plan_fees_rpc import plan_fees_rpc
from services.rating.entrypoints.rating_rpc import RatingRpcs
from services.rating.entrypoints.rpc_common import (
    DOMAIN,
    MAX_CODE,
    MAX_DESTINATION_UPLOAD,
    MAX_FILE_ID,
    MAX_FILE_NAME,
    MAX_QUOTE_UNITS,
    MAX_REQUEST_ID,
)
from services.rating.entrypoints.usage_rpc import UsageRpcs

if TYPE_CHECKING:  # the composition root imports this module
    from services.rating.bootstrap import RatingApp


class RatingServicer(CatalogRpcs, RatingRpcs, UsageRpcs, rating_pb2_grpc.RatingServiceServicer):
    """The rating service's RPCs, one mixin per use case (the generated base answers the
    rest UNIMPLEMENTED, so the mixins come first)."""

    def __init__(self, app: RatingApp) -> None:
        self._app = app

    async def PricePlanFees(
        self, request: rating_pb2.PricePlanFeesRequest, context: Any
    ) -> rating_pb2.PricePlanFeesResponse:
        return await plan_fees_rpc(self._app, request)


# The servicer, and the limits this module held before the RPCs moved to their modules.
__all__ = [
    "DOMAIN",
    "MAX_CODE",
    "MAX_DESTINATION_UPLOAD",
    "MAX_FILE_ID",
    "MAX_FILE_NAME",
    "MAX_QUOTE_UNITS",
    "MAX_REQUEST_ID",
    "RatingServicer",
]
