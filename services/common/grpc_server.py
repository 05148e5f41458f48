"""gRPC server bootstrap shared by every service.

``create_server`` builds a ``grpc.aio`` server with, in order: OpenTelemetry's
server interceptor (so even rejected calls are traced), service-token
authentication, and the error mapping that turns ``ReckonError`` into a rich
``google.rpc.Status``. It registers the standard health service and server
reflection. ``serve`` runs it until SIGINT/SIGTERM and stops gracefully: health
turns NOT_SERVING first so load balancers drain, then in-flight calls get
``grace`` seconds.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

from services.common.errors import ReckonError, Unauthenticated
from services.common.grpc_errors import to_rpc_status
from services.common.rpc_metrics import RpcMetricsInterceptor
from services.common.tls import TlsFiles, server_credentials

log = logging.getLogger(__name__)

TOKEN_METADATA_KEY = "authorization"
# Probes and tooling (grpcurl, buf curl, Kubernetes) must work without the service token.
UNAUTHENTICATED_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to host: its generated ``add_*_to_server`` and the servicer."""

    full_name: str  # e.g. "reckon.accounts.v1.AccountsService"
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: list[str] = field(default_factory=list)

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)


Behavior = Callable[..., Any]


def _wrap_handler(
    handler: grpc.RpcMethodHandler,
    wrap_unary: Callable[[Behavior], Behavior],
    wrap_stream: Callable[[Behavior], Behavior],
) -> grpc.RpcMethodHandler:
    """Rebuild a method handler with its behaviour wrapped, whatever its streaming kind."""
    common = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap_unary(handler.unary_unary), **common)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap_unary(handler.stream_unary), **common)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap_stream(handler.unary_stream), **common)
    return grpc.stream_stream_rpc_method_handler(wrap_stream(handler.stream_stream), **common)


async def _abort(context: grpc.aio.ServicerContext, error: ReckonError, domain: str) -> None:
    await context.abort_with_status(to_rpc_status(error, domain=domain))


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Maps ``ReckonError`` to rich statuses; anything else becomes INTERNAL and is logged."""

    def __init__(self, domain: str) -> None:
        self._domain = domain

    async def _fail(self, context: grpc.aio.ServicerContext, exc: Exception) -> None:
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        if isinstance(exc, ReckonError):
            trace.get_current_span().set_attribute("reckon.error.reason", exc.reason)
            await _abort(context, exc, self._domain)
        span_context = trace.get_current_span().get_span_context()
        log.exception("unhandled error in servicer")
        await _abort(
            context,
            ReckonError(f"internal error (trace {span_context.trace_id:032x})"),
            self._domain,
        )

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None

        def wrap_unary(behavior: Behavior) -> Behavior:
            async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    return await behavior(request, context)
                except Exception as exc:  # noqa: BLE001 - mapped to a status, never swallowed
                    await self._fail(context, exc)

            return guarded

        def wrap_stream(behavior: Behavior) -> Behavior:
            async def guarded(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                try:
                    async for response in behavior(request, context):
                        yield response
                except Exception as exc:  # noqa: BLE001 - mapped to a status, never swallowed
                    await self._fail(context, exc)

            return guarded

        return _wrap_handler(handler, wrap_unary, wrap_stream)


class ServiceTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls whose ``authorization: Bearer <token>`` is missing or wrong."""

    def __init__(self, token: str, domain: str) -> None:
        self._expected = f"Bearer {token}".encode()
        self._domain = domain

    def _authorised(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method.startswith(UNAUTHENTICATED_SERVICES):
            return True
        for key, value in details.invocation_metadata or ():
            if key == TOKEN_METADATA_KEY:
                presented = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(presented, self._expected)
        return False

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or self._authorised(handler_call_details):
            return handler
        domain = self._domain
        error = Unauthenticated(
            "missing or invalid service token: send metadata 'authorization: Bearer <token>'",
            reason="SERVICE_TOKEN_INVALID",
        )

        def reject_unary(_: Behavior) -> Behavior:
            async def reject(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await _abort(context, error, domain)

            return reject

        def reject_stream(_: Behavior) -> Behavior:
            async def reject(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await _abort(context, error, domain)
                yield  # pragma: no cover - makes this an async generator

            return reject

        return _wrap_handler(handler, reject_unary, reject_stream)


async def create_server(
    *,
    service_name: str,
    listen: str,
    service_token: str,
    bindings: Sequence[ServiceBinding],
    options: Sequence[tuple[str, Any]] = (),
    tls: TlsFiles | None = None,
) -> RunningServer:
    """Build, bind and start a server; ``listen`` may use port 0 for a free port.

    TLS (mutual with a client CA) when ``tls``, else the ``RECKON_TLS_*`` variables, name
    a certificate; plaintext otherwise (services/common/tls.py).
    """
    tls = tls if tls is not None else TlsFiles.from_env()
    domain = f"reckon.{service_name}"
    server = grpc.aio.server(
        interceptors=[
            # Probes are not traced: a trace every few seconds per pod says nothing.
            aio_server_interceptor(  # type: ignore[no-untyped-call]
                filter_=filters.negate(filters.service_prefix("grpc.health.v1"))
            ),
            RpcMetricsInterceptor(_wrap_handler),
            ServiceTokenInterceptor(service_token, domain),
            ErrorMappingInterceptor(domain),
        ],
        # One value per option, the caller's over the default: gRPC would take the
        # first of a repeated one (SO_REUSEPORT off unless asked, e.g. by charging's
        # worker processes).
        options=list({"grpc.so_reuseport": 0, **dict(options)}.items()),
    )
    names = []
    for binding in bindings:
        binding.add_to_server(binding.servicer, server)
        names.append(binding.full_name)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    if tls.serves_tls:
        port = server.add_secure_port(listen, server_credentials(tls))
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"{service_name} could not bind {listen}")
    await server.start()
    running = RunningServer(server=server, port=port, health=health_servicer, service_names=names)
    await running.set_serving(True)
    return running


async def serve(
    running: RunningServer,
    *,
    grace: float = 5.0,
    on_stop: Sequence[Callable[[], Awaitable[None]]] = (),
) -> None:
    """Serve until SIGINT or SIGTERM, then drain and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: draining for up to %.1fs", grace)
    await running.set_serving(False)
    await running.server.stop(grace)
    for callback in on_stop:
        await callback()
