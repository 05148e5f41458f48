"""A stopping server answers what it cannot finish UNAVAILABLE, not CANCELLED (ADR 0039).

Clients retry UNAVAILABLE (the service is away for a moment) but not CANCELLED
(someone gave up). A call that ends within the grace period gets its real answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from reckon.echo.v1 import echo_pb2, echo_pb2_grpc
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from services.common.grpc_server import RunningServer, ServiceBinding, create_server
from tests.conftest import TEST_TOKEN

pytestmark = pytest.mark.timeout(30)


class SlowEcho(echo_pb2_grpc.EchoServiceServicer):
    async def Echo(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
        await asyncio.sleep(float(request.payload.decode() or 0))
        return echo_pb2.EchoResponse(payload=request.payload)

    async def EchoStream(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[echo_pb2.EchoStreamResponse]:
        async for request in request_iterator:
            yield echo_pb2.EchoStreamResponse(payload=request.payload)


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await create_server(
        service_name="echo",
        listen="127.0.0.1:0",
        service_token=TEST_TOKEN,
        bindings=[
            ServiceBinding(
                "reckon.echo.v1.EchoService",
                echo_pb2_grpc.add_EchoServiceServicer_to_server,
                SlowEcho(),
            )
        ],
    )
    yield running
    await running.server.stop(0)


async def test_calls_still_running_at_the_end_of_the_grace_get_unavailable(
    server: RunningServer,
) -> None:
    async with open_channel(f"127.0.0.1:{server.port}", TEST_TOKEN) as channel:
        stub = echo_pb2_grpc.EchoServiceStub(channel)
        quick = asyncio.ensure_future(stub.Echo(echo_pb2.EchoRequest(payload=b"0.1"), timeout=10))
        slow = asyncio.ensure_future(stub.Echo(echo_pb2.EchoRequest(payload=b"30"), timeout=10))
        stream = stub.EchoStream(timeout=10)
        await stream.write(echo_pb2.EchoStreamRequest(payload=b"open"))
        assert (await stream.read()).payload == b"open"
        await asyncio.sleep(0.1)
        await server.drain(2.0)

        assert (await quick).payload == b"0.1"  # finished within the grace: its answer
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await slow
        assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
        assert details_of(failure.value).reason == "SERVICE_STOPPING"
        with pytest.raises(grpc.aio.AioRpcError) as stream_failure:
            await stream.read()
        assert stream_failure.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_call_after_the_server_stopped_is_unavailable(server: RunningServer) -> None:
    await server.drain(0.2)
    async with open_channel(f"127.0.0.1:{server.port}", TEST_TOKEN) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await echo_pb2_grpc.EchoServiceStub(channel).Echo(
                echo_pb2.EchoRequest(payload=b"0"), timeout=2
            )
    assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
