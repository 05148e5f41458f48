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
import contextlib
import hmac
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import _async as reflection_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from services.common.config import TokenSettings, load_settings
from services.common.errors import ReckonError, Unauthenticated, Unavailable
from services.common.grpc_errors import to_rpc_status

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
    in_flight: InFlightCalls | None = None

    async def drain(self, grace: float) -> None:
        """Stop gracefully: NOT_SERVING, let calls finish for ``grace`` seconds, then
        answer what is still running UNAVAILABLE (clients retry that; a cancelled
        call they would not) before the server goes (ADR 0039)."""
        await self.set_serving(False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        if self.in_flight is not None:
            # Keep a little of the grace to deliver the UNAVAILABLE answers.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.in_flight.wait_idle(), max(0.0, grace - min(0.5, grace / 4))
                )
            await self.in_flight.abort_all()
        await self.server.stop(max(0.1, deadline - loop.time()))

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)


Behavior = Callable[..., Any]

STOPPING = Unavailable(
    "the service is stopping; retry the call (another replica, or this one once restarted)",
    reason="SERVICE_STOPPING",
)


class InFlightCalls:
    """Knows every call being served, so a stopping server can answer them UNAVAILABLE.

    Filled by ``ErrorMappingInterceptor``, which wraps every authorised call anyway:
    no second wrapper (and generator hop per streamed message) on the hot path.
    """

    def __init__(self, domain: str) -> None:
        self._domain = domain
        self._contexts: set[grpc.aio.ServicerContext] = set()
        self._idle = asyncio.Event()

    @property
    def count(self) -> int:
        return len(self._contexts)

    def add(self, context: grpc.aio.ServicerContext) -> None:
        self._contexts.add(context)

    async def wait_idle(self) -> None:
        """Return once no call is being served."""
        while self._contexts:
            self._idle.clear()
            await self._idle.wait()

    def done(self, context: grpc.aio.ServicerContext) -> None:
        self._contexts.discard(context)
        if not self._contexts:
            self._idle.set()

    async def abort_all(self) -> None:
        for context in list(self._contexts):
            self.done(context)
            # The call's own task goes on until the server stops; its answer is this.
            with contextlib.suppress(Exception):
                await _abort(context, STOPPING, self._domain)


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

    def __init__(self, domain: str, in_flight: InFlightCalls | None = None) -> None:
        self._domain = domain
        self._in_flight = in_flight or InFlightCalls(domain)

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

        in_flight = self._in_flight

        def wrap_unary(behavior: Behavior) -> Behavior:
            async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
                in_flight.add(context)
                try:
                    return await behavior(request, context)
                except Exception as exc:  # noqa: BLE001 - mapped to a status, never swallowed
                    await self._fail(context, exc)
                finally:
                    in_flight.done(context)

            return guarded

        def wrap_stream(behavior: Behavior) -> Behavior:
            async def guarded(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                in_flight.add(context)
                try:
                    async for response in behavior(request, context):
                        yield response
                except Exception as exc:  # noqa: BLE001 - mapped to a status, never swallowed
                    await self._fail(context, exc)
                finally:
                    in_flight.done(context)

            return guarded

        return _wrap_handler(handler, wrap_unary, wrap_stream)


def presented_token(value: str | bytes) -> bytes | None:
    """The token of ``authorization: Bearer <token>``; the scheme in any case (RFC 7235)."""
    text = value.encode() if isinstance(value, str) else value
    scheme, _, token = text.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.strip() or None


class ServiceTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls whose ``authorization: Bearer <token>`` is missing or wrong.

    Every token in ``token`` and ``extra_tokens`` is accepted, so a new token can be
    rolled out (``RECKON_SERVICE_TOKENS``) before the clients switch to it (ADR 0038).
    """

    def __init__(self, token: str, domain: str, extra_tokens: Sequence[str] = ()) -> None:
        self._accepted = [t.encode() for t in (token, *extra_tokens) if t]
        self._domain = domain

    def _authorised(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method.startswith(UNAUTHENTICATED_SERVICES):
            return True
        for key, value in details.invocation_metadata or ():
            if key == TOKEN_METADATA_KEY:
                token = presented_token(value)
                if token is None:
                    return False
                # Compare with every accepted token (no early exit): timing tells nothing.
                matches = [hmac.compare_digest(token, accepted) for accepted in self._accepted]
                return any(matches)
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


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1_FILE = "grpc/reflection/v1/reflection.proto"


def enable_reflection(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Server reflection as ``grpc.reflection.v1`` and ``v1alpha`` (ADR 0038).

    grpcio-reflection serves only v1alpha, but ``buf curl`` and newer grpcurl ask v1
    first. The two protocols are the same messages under another package name, so
    the v1 method is the v1alpha servicer behind v1's method path: same bytes.
    """
    _register_reflection_v1_descriptor()
    names = [*service_names, reflection.SERVICE_NAME, REFLECTION_V1]
    servicer = reflection_aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        REFLECTION_V1,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))


def _register_reflection_v1_descriptor() -> None:
    """Put ``grpc/reflection/v1/reflection.proto`` in the default pool, so reflection can
    describe its own v1 service (``buf curl --list-methods`` asks for every service):
    v1alpha's file under v1's package and name."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(REFLECTION_V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = proto.package, "grpc.reflection.v1"
    proto.name, proto.package = REFLECTION_V1_FILE, new
    proto.options.Clear()
    for message in proto.message_type:
        for message_field in message.field:
            if message_field.type_name.startswith(f".{old}."):
                message_field.type_name = f".{new}." + message_field.type_name[len(old) + 2 :]
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(f".{old}.", f".{new}.", 1)
            method.output_type = method.output_type.replace(f".{old}.", f".{new}.", 1)
    pool.Add(proto)


async def create_server(
    *,
    service_name: str,
    listen: str,
    service_token: str,
    bindings: Sequence[ServiceBinding],
    options: Sequence[tuple[str, Any]] = (),
    extra_tokens: Sequence[str] | None = None,
) -> RunningServer:
    """Build, bind and start a server; ``listen`` may use port 0 for a free port.

    ``extra_tokens``: more service tokens to accept during a rotation; by default
    those of ``RECKON_SERVICE_TOKENS`` (read through the config loader).
    """
    if extra_tokens is None:
        extra_tokens = load_settings(TokenSettings).extra_tokens
    domain = f"reckon.{service_name}"
    in_flight = InFlightCalls(domain)
    server = grpc.aio.server(
        interceptors=[
            aio_server_interceptor(),  # type: ignore[no-untyped-call]
            ServiceTokenInterceptor(service_token, domain, extra_tokens),
            ErrorMappingInterceptor(domain, in_flight),
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
    enable_reflection([*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"{service_name} could not bind {listen}")
    await server.start()
    running = RunningServer(
        server=server,
        port=port,
        health=health_servicer,
        service_names=names,
        in_flight=in_flight,
    )
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
    await running.drain(grace)
    for callback in on_stop:
        await callback()
