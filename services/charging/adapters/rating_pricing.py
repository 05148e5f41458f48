"""The ``Pricing`` port answered by the rating service (RAT-8), over gRPC.

``price`` asks rating's ``Quote`` for the gross price of N units of a service for
the account, destination and time; ``units_for`` asks ``UnitsForAmount`` how many
units an amount buys. The port is awaited on the credit-control hot path (event
loop), so the channel is the ``grpc.aio`` one (``open_channel``): the service
token travels with every call and the client span is a child of charging's.

Rating saying "no" (no catalog, no plan, no tariff for the service or destination,
unknown account, bad destination number) is ``NotPriced``: the rating group is
answered DIAMETER_RATING_FAILED (5031), nothing reserved. Rating not answering
(unreachable, deadline, overloaded) is ``PricingUnavailable`` (gRPC UNAVAILABLE to
the caller, nothing written): never a free grant.

Calls wait for a ready rating (``wait_for_ready``) within their deadline rather than
failing at once while no replica is connected: a rating restart (seconds) costs the
credit-control requests made meanwhile some latency, not an error (ADR 0052).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import grpc

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.charging.service_layer.ports import NotPriced
from services.common.errors import Unavailable
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from services.common.money import Money
from services.common.proto_convert import money_to_proto, timestamp_to_proto

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS: Final = 2.0
_NANOS: Final = Decimal(10) ** 9
# Status codes that mean "rating could not answer now" rather than "rating said no".
_TRANSIENT: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


class PricingUnavailable(Unavailable):
    default_reason = "RATING_UNAVAILABLE"


class RatingPricing:
    """``Pricing`` backed by rating's ``Quote`` and ``UnitsForAmount``."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        address: str,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._channel = channel
        self._stub: Any = rating_pb2_grpc.RatingServiceStub(channel)
        self._address = address
        self._timeout = timeout_seconds

    @classmethod
    def connect(
        cls, address: str, token: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    ) -> RatingPricing:
        return cls(open_channel(address, token), address=address, timeout_seconds=timeout_seconds)

    async def close(self) -> None:
        await self._channel.close()

    # -- the port -------------------------------------------------------------------------

    async def price(
        self, account_id: str, service: str, destination: str, units: int, at: datetime
    ) -> Money:
        request = rating_pb2.QuoteRequest(
            account_id=account_id,
            service=service,
            destination=destination,
            event_time=timestamp_to_proto(at),
            quantity=rating_pb2.Quantity(value=units),
        )
        try:
            reply = await self._stub.Quote(request, timeout=self._timeout, wait_for_ready=True)
        except grpc.RpcError as error:
            raise self._refusal("Quote", account_id, service, error) from None
        return _money(reply.charge.gross, service)

    async def prices(
        self,
        account_id: str,
        service: str,
        destination: str,
        quantities: Sequence[int],
        at: datetime,
    ) -> list[Money]:
        """One ``Quote`` per quantity, concurrently (cumulative pricing asks a few)."""
        if len(quantities) == 1:
            return [await self.price(account_id, service, destination, quantities[0], at)]
        return list(
            await asyncio.gather(
                *(self.price(account_id, service, destination, q, at) for q in quantities)
            )
        )

    async def units_for(
        self, account_id: str, service: str, destination: str, amount: Money, at: datetime
    ) -> int:
        request = rating_pb2.UnitsForAmountRequest(
            account_id=account_id,
            service=service,
            destination=destination,
            event_time=timestamp_to_proto(at),
            amount=money_to_proto(amount),
        )
        try:
            reply = await self._stub.UnitsForAmount(
                request, timeout=self._timeout, wait_for_ready=True
            )
        except grpc.RpcError as error:
            raise self._refusal("UnitsForAmount", account_id, service, error) from None
        return max(int(reply.quantity.value), 0)

    # -- rating's answers -----------------------------------------------------------------

    def _refusal(
        self, method: str, account_id: str, service: str, error: grpc.RpcError
    ) -> Exception:
        details = details_of(error)
        text = f"{details.code.name}: {details.message[:200]}"
        if details.code in _TRANSIENT:
            log.warning("rating at %s did not answer %s: %s", self._address, method, text)
            return PricingUnavailable(
                f"the rating service at {self._address} cannot price {service!r} for "
                f"account {account_id} now; try again ({text})"
            )
        reason = details.reason or details.code.name
        return NotPriced(
            f"rating has no price for {service!r} for account {account_id} ({reason}: "
            f"{details.message[:200]})"
        )


def _money(message: Any, service: str) -> Money:
    if not message.currency_code:
        raise NotPriced(f"rating answered no currency for {service!r}")
    amount = Decimal(message.units) + Decimal(message.nanos) / _NANOS
    return Money(amount.normalize() if amount else Decimal(0), message.currency_code)


__all__ = ["PricingUnavailable", "RatingPricing"]
