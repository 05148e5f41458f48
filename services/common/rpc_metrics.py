"""Per-method gRPC server metrics, named by the OpenTelemetry RPC semantic conventions.

OpenTelemetry's gRPC instrumentation traces calls but records no metrics, so this
interceptor records ``rpc.server.duration`` (milliseconds, a histogram: its count is the
request rate, and the count by ``rpc.grpc.status_code`` the error rate) with the
attributes ``rpc.system``, ``rpc.service``, ``rpc.method`` and ``rpc.grpc.status_code``.
Health probes are left out: Kubernetes asks every few seconds and would drown the rates.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from opentelemetry import metrics

from services.common.telemetry import meter

Behavior = Callable[..., Any]
WrapHandler = Callable[[grpc.RpcMethodHandler, Any, Any], grpc.RpcMethodHandler]
UNMEASURED_PREFIXES = ("/grpc.health.v1.Health/",)


def _status_of(context: grpc.aio.ServicerContext, failed: bool) -> int:
    code = context.code()
    if code is None:
        return int((grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK).value[0])
    if isinstance(code, grpc.StatusCode):
        return int(code.value[0])
    return int(code)


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Records one ``rpc.server.duration`` point per call, whatever its outcome."""

    def __init__(self, wrap_handler: WrapHandler, instruments: metrics.Meter | None = None) -> None:
        self._wrap_handler = wrap_handler
        self._duration = (instruments or meter()).create_histogram(
            "rpc.server.duration",
            unit="ms",
            description="Duration of inbound gRPC calls, by method and status code",
        )

    def _record(self, method: str, started: float, status: int) -> None:
        service, _, name = method.lstrip("/").partition("/")
        self._duration.record(
            (time.perf_counter() - started) * 1000.0,
            {
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": name,
                "rpc.grpc.status_code": status,
            },
        )

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(UNMEASURED_PREFIXES):
            return handler
        record = self._record

        def wrap_unary(behavior: Behavior) -> Behavior:
            async def measured(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                failed = True
                try:
                    response = await behavior(request, context)
                    failed = False
                    return response
                finally:
                    record(method, started, _status_of(context, failed))

            return measured

        def wrap_stream(behavior: Behavior) -> Behavior:
            async def measured(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                started = time.perf_counter()
                failed = True
                try:
                    async for response in behavior(request, context):
                        yield response
                    failed = False
                finally:
                    record(method, started, _status_of(context, failed))

            return measured

        return self._wrap_handler(handler, wrap_unary, wrap_stream)
