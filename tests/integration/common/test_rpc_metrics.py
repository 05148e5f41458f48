"""``rpc.server.duration``: one point per call with its method and status; probes left out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from reckon.echo.v1 import echo_pb2, echo_pb2_grpc
from services.common.errors import FailedPrecondition
from services.common.grpc_server import ErrorMappingInterceptor, _wrap_handler
from services.common.rpc_metrics import RpcMetricsInterceptor


class Echo(echo_pb2_grpc.EchoServiceServicer):
    async def Echo(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
        if request.payload == b"state":
            raise FailedPrecondition("account is closed", reason="ACCOUNT_CLOSED")
        return echo_pb2.EchoResponse(payload=request.payload)

    async def EchoStream(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[echo_pb2.EchoStreamResponse]:
        async for request in request_iterator:
            yield echo_pb2.EchoStreamResponse(payload=request.payload)


@pytest.fixture
async def measured() -> AsyncIterator[tuple[grpc.aio.Channel, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    server = grpc.aio.server(
        interceptors=[
            RpcMetricsInterceptor(_wrap_handler, provider.get_meter("test")),
            ErrorMappingInterceptor("reckon.echo"),
        ]
    )
    echo_pb2_grpc.add_EchoServiceServicer_to_server(Echo(), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield channel, reader
    await channel.close()
    await server.stop(0)
    provider.shutdown()


def _points(reader: InMemoryMetricReader) -> dict[tuple[str, int], int]:
    counts: dict[tuple[str, int], int] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                assert metric.name == "rpc.server.duration"
                assert metric.unit == "ms"
                for point in metric.data.data_points:  # type: ignore[union-attr]
                    attributes = point.attributes or {}
                    assert attributes["rpc.system"] == "grpc"
                    key = (
                        f"{attributes['rpc.service']!s}/{attributes['rpc.method']!s}",
                        int(attributes["rpc.grpc.status_code"]),  # type: ignore[arg-type]
                    )
                    counts[key] = point.count  # type: ignore[union-attr]
    return counts


async def test_calls_are_counted_by_method_and_status(
    measured: tuple[grpc.aio.Channel, InMemoryMetricReader],
) -> None:
    channel, reader = measured
    stub = echo_pb2_grpc.EchoServiceStub(channel)
    for _ in range(3):
        await stub.Echo(echo_pb2.EchoRequest(payload=b"ok"))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Echo(echo_pb2.EchoRequest(payload=b"state"))
    replies = [r async for r in stub.EchoStream(iter([echo_pb2.EchoStreamRequest(payload=b"a")]))]
    assert len(replies) == 1
    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())

    counts = _points(reader)
    ok = grpc.StatusCode.OK.value[0]
    refused = grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert counts == {
        ("reckon.echo.v1.EchoService/Echo", ok): 3,
        ("reckon.echo.v1.EchoService/Echo", refused): 1,
        ("reckon.echo.v1.EchoService/EchoStream", ok): 1,
    }
