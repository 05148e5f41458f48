"""Plan fees and VAT rates from the rating service (``PricePlanFees``), over gRPC.

Called by synchronous handlers and bill-run workers in threads, so the channel
is a blocking one. Answers are cached for a short while per (plan set, services,
account's customer/group/region, day): a bill run prices the same plans for many
accounts of a group. When rating cannot answer, the work item fails with the
reason (and is retried by running the account again), never guessing a price.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from datetime import datetime
from decimal import Decimal

import grpc

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.errors import FailedPrecondition, ReckonError, Unavailable, Violations
from services.common.grpc_client import open_sync_channel
from services.common.grpc_errors import details_of
from services.common.proto_convert import money_from_proto, timestamp_to_proto
from services.invoicing.domain.builder import FeeQuote, FeeTiming, Pricing, TaxRate
from services.invoicing.domain.parties import AccountFacts

log = logging.getLogger(__name__)

_Key = tuple[str, str, str, tuple[str, ...], tuple[str, ...], str]


class PricingFailed(FailedPrecondition):
    default_reason = "PRICING_FAILED"


class RatingFeePricer:
    def __init__(
        self, channel: grpc.Channel, *, timeout_seconds: float = 5.0, cache_seconds: float = 60.0
    ) -> None:
        self._channel = channel
        self._stub = rating_pb2_grpc.RatingServiceStub(channel)
        self._timeout = timeout_seconds
        self._cache_seconds = cache_seconds
        self._cache: dict[_Key, tuple[float, Pricing]] = {}
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, address: str, token: str, **kwargs: float) -> RatingFeePricer:
        return cls(open_sync_channel(address, token), **kwargs)

    def close(self) -> None:
        self._channel.close()

    def quote(
        self,
        account: AccountFacts,
        plan_codes: Collection[str],
        services: Collection[str],
        at: datetime,
    ) -> Pricing:
        # Price packages are per customer or group: the customer is part of the key.
        key: _Key = (
            account.customer_id,
            account.group_id,
            account.tax_region,
            tuple(sorted(plan_codes)),
            tuple(sorted(services)),
            at.date().isoformat(),
        )
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self._cache_seconds:
                return hit[1]
        pricing = self._ask(account, key[3], key[4], at)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now, pricing)
        return pricing

    def _ask(
        self, account: AccountFacts, plans: tuple[str, ...], services: tuple[str, ...], at: datetime
    ) -> Pricing:
        request = rating_pb2.PricePlanFeesRequest(
            account_id=account.account_id,
            customer_id=account.customer_id,
            group=account.group_id,
            tax_region=account.tax_region,
            plan_codes=list(plans),
            services=list(services),
        )
        stamp = timestamp_to_proto(at)
        if stamp is not None:
            request.at.CopyFrom(stamp)
        try:
            answer = self._stub.PricePlanFees(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            details = details_of(exc)
            code = exc.code()  # type: ignore[attr-defined]
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(
                    f"rating cannot price fees now: {details.message}", reason="PRICING_UNAVAILABLE"
                ) from exc
            raise PricingFailed(
                f"rating refused to price fees: {details.message}",
                reason=details.reason or "PRICING_FAILED",
            ) from exc
        if answer.unknown_plan_codes:
            # Add-on codes are asked as plans; one rating does not know bills nothing.
            log.warning(
                "rating knows no plan %s (account %s): no fee billed for it",
                ", ".join(answer.unknown_plan_codes),
                account.account_id,
            )
        return _pricing(answer, account)


def _pricing(answer: rating_pb2.PricePlanFeesResponse, account: AccountFacts) -> Pricing:
    fees: dict[str, list[FeeQuote]] = {}
    for fee in answer.fees:
        v = Violations()
        net = money_from_proto(fee.net, "net", v, allow_negative=True)
        if net is None:
            raise ReckonError(
                f"rating answered a bad fee amount for {fee.plan_code}/{fee.fee_code}"
            )
        if net.currency != account.currency:
            raise PricingFailed(
                f"plan {fee.plan_code} is priced in {net.currency}, "
                f"the account bills in {account.currency}",
                reason="CURRENCY_MISMATCH",
            )
        fees.setdefault(fee.plan_code, []).append(
            FeeQuote(
                fee.fee_code,
                fee.name,
                fee.service,
                net,
                FeeTiming(fee.timing),
                fee.tax_category,
                Decimal(fee.tax_rate),
            )
        )
    rates = {r.service: TaxRate(r.tax_category, Decimal(r.tax_rate)) for r in answer.tax_rates}
    return Pricing(fees, rates, TaxRate("Z", Decimal(0)))


class NoFeesPricer:
    """Without rating (``RATING_ADDR`` unset): no plan fees, every service at VAT rate 0."""

    def quote(
        self,
        account: AccountFacts,
        plan_codes: Collection[str],
        services: Collection[str],
        at: datetime,
    ) -> Pricing:
        return Pricing({}, {}, TaxRate("Z", Decimal(0)))
