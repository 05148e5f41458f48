"""The gRPC stubs the gateway calls, on the kit's channels (service token, traces)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from gateway.auth import Principal
from reckon.accounts.v1 import accounts_pb2_grpc
from reckon.charging.v1 import charging_pb2_grpc
from reckon.invoicing.v1 import invoicing_pb2_grpc
from reckon.payments.v1 import payments_pb2_grpc
from reckon.rating.v1 import rating_pb2_grpc
from services.common.customer_scope import CUSTOMER_SCOPE_KEY
from services.common.grpc_client import open_channel


@dataclass
class ServiceClients:
    accounts: Any
    rating: Any
    charging: Any
    invoicing: Any
    payments: Any
    channels: list[grpc.aio.Channel]
    timeout: float

    @classmethod
    def open(
        cls,
        *,
        accounts: str,
        rating: str,
        charging: str,
        invoicing: str,
        payments: str,
        token: str,
        timeout: float,
    ) -> ServiceClients:
        addresses = (accounts, rating, charging, invoicing, payments)
        channels = [open_channel(address, token) for address in addresses]
        return cls(
            accounts=accounts_pb2_grpc.AccountsServiceStub(channels[0]),
            rating=rating_pb2_grpc.RatingServiceStub(channels[1]),
            charging=charging_pb2_grpc.ChargingServiceStub(channels[2]),
            invoicing=invoicing_pb2_grpc.InvoicingServiceStub(channels[3]),
            payments=payments_pb2_grpc.PaymentsServiceStub(channels[4]),
            channels=channels,
            timeout=timeout,
        )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


def scope_metadata(principal: Principal | None) -> tuple[tuple[str, str], ...]:
    """The call metadata that restricts a service call to a customer's own data."""
    if principal is not None and principal.customer_id is not None:
        return ((CUSTOMER_SCOPE_KEY, principal.customer_id),)
    return ()
