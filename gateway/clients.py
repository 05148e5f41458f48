"""The gRPC stubs the gateway calls, on the kit's channels.

The service token and the trace context travel as plain call metadata added by a
thin wrapper rather than by ``grpc.aio`` client interceptors: any aio interceptor
sends every call through grpc's intercepted-call path (a task per call), which was a
fifth of the gateway's CPU per request (bench/RESULTS.md, "Gateway"). The wrapper
opens the same client span the OpenTelemetry interceptor would (``/pkg.Service/
Method``, kind CLIENT) and injects its context, so services' spans stay children of
the gateway's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from gateway.auth import Principal
from reckon.accounts.v1 import accounts_pb2_grpc
from reckon.charging.v1 import charging_pb2_grpc
from reckon.invoicing.v1 import invoicing_pb2_grpc
from reckon.notifications.v1 import notifications_pb2_grpc
from reckon.payments.v1 import payments_pb2_grpc
from reckon.rating.v1 import rating_pb2_grpc
from services.common.config import DEFAULT_PORTS
from services.common.customer_scope import CUSTOMER_SCOPE_KEY
from services.common.grpc_client import open_channel
from services.common.grpc_server import TOKEN_METADATA_KEY


class TracedStub:
    """A generated stub whose unary calls carry the token and the trace context."""

    def __init__(
        self,
        stub: Any,
        service: str,
        token: str,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._stub = stub
        self._tracer_provider = tracer_provider  # None: the global one
        self._service = service
        self._token = (TOKEN_METADATA_KEY, f"Bearer {token}")

    def __getattr__(self, name: str) -> Any:
        # Called once per method: the wrapper is then an attribute of this instance, so
        # later calls find it directly (no closure, span name or dicts built per call).
        method = getattr(self._stub, name)
        token, span_name = self._token, f"/{self._service}/{name}"
        # The tracer of the provider in place when the method is first used (after the
        # process set up telemetry), not one bound at import time to whatever provider
        # was global then.
        tracer = trace.get_tracer("reckon.gateway", tracer_provider=self._tracer_provider)
        attributes = {"rpc.system": "grpc", "rpc.service": self._service, "rpc.method": name}

        # ``timeout`` is the gRPC deadline, passed on as the stub takes it.
        async def invoke(request: Any, *, metadata: Any = (), timeout: float | None = None) -> Any:  # noqa: ASYNC109
            span = tracer.start_span(span_name, kind=SpanKind.CLIENT, attributes=attributes)
            with trace.use_span(span, end_on_exit=True):
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                return await method(
                    request, metadata=(*metadata, token, *carrier.items()), timeout=timeout
                )

        setattr(self, name, invoke)
        return invoke


@dataclass
class ServiceClients:
    accounts: Any
    rating: Any
    charging: Any
    invoicing: Any
    payments: Any
    notifications: Any
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
        notifications: str = f"127.0.0.1:{DEFAULT_PORTS['notifications']}",
    ) -> ServiceClients:
        stubs = (
            (accounts, accounts_pb2_grpc.AccountsServiceStub, "reckon.accounts.v1.AccountsService"),
            (rating, rating_pb2_grpc.RatingServiceStub, "reckon.rating.v1.RatingService"),
            (charging, charging_pb2_grpc.ChargingServiceStub, "reckon.charging.v1.ChargingService"),
            (
                invoicing,
                invoicing_pb2_grpc.InvoicingServiceStub,
                "reckon.invoicing.v1.InvoicingService",
            ),
            (payments, payments_pb2_grpc.PaymentsServiceStub, "reckon.payments.v1.PaymentsService"),
            (
                notifications,
                notifications_pb2_grpc.NotificationsServiceStub,
                "reckon.notifications.v1.NotificationsService",
            ),
        )
        # The kit's channel, without its interceptors (see the module's docstring).
        channels = [open_channel(address, None, traced=False) for address, _, _ in stubs]
        wrapped = [
            TracedStub(make(channel), service, token)
            for channel, (_, make, service) in zip(channels, stubs, strict=True)
        ]
        (
            accounts_stub,
            rating_stub,
            charging_stub,
            invoicing_stub,
            payments_stub,
            notifications_stub,
        ) = wrapped
        return cls(
            accounts=accounts_stub,
            rating=rating_stub,
            charging=charging_stub,
            invoicing=invoicing_stub,
            payments=payments_stub,
            notifications=notifications_stub,
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
