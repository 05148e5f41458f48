"""``PricePlanFees``: proto in, ``service_layer.plan_fees`` in a thread, proto out."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from reckon.rating.v1 import rating_pb2
from services.common.errors import Violations
from services.common.proto_convert import money_to_proto, timestamp_from_proto
from services.rating.service_layer.plan_fees import price_plan_fees

if TYPE_CHECKING:
    from services.rating.bootstrap import RatingApp

MAX_PLANS = 100
MAX_SERVICES = 1000


async def plan_fees_rpc(
    app: RatingApp, request: rating_pb2.PricePlanFeesRequest
) -> rating_pb2.PricePlanFeesResponse:
    violations = Violations()
    if len(request.plan_codes) > MAX_PLANS:
        violations.add("plan_codes", f"at most {MAX_PLANS}")
    if len(request.services) > MAX_SERVICES:
        violations.add("services", f"at most {MAX_SERVICES}")
    if not request.tax_region:
        violations.add("tax_region", "is required")
    violations.raise_if_any()
    at = timestamp_from_proto(request.at) if request.HasField("at") else app.clock.now()
    answer = await asyncio.to_thread(
        price_plan_fees,
        app.tariffs,
        account_id=request.account_id,
        customer_id=request.customer_id,
        group=request.group,
        tax_region=request.tax_region,
        plan_codes=list(dict.fromkeys(request.plan_codes)),
        services=list(dict.fromkeys(request.services)),
        at=at,
    )
    return rating_pb2.PricePlanFeesResponse(
        fees=[
            rating_pb2.PlanFee(
                plan_code=fee.plan_code,
                fee_code=fee.fee_code,
                name=fee.name,
                service=fee.service,
                timing=fee.timing,
                net=money_to_proto(fee.net),
                tax_category=fee.tax_category,
                tax_rate=format(fee.tax_rate.normalize(), "f"),
            )
            for fee in answer.fees
        ],
        tax_rates=[
            rating_pb2.ServiceTaxRate(
                service=service, tax_category=category, tax_rate=format(rate.normalize(), "f")
            )
            for service, (category, rate) in answer.tax_rates.items()
        ],
        unknown_plan_codes=answer.unknown_plan_codes,
    )
