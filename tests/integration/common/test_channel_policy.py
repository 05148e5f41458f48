"""The kit's channels: retried on UNAVAILABLE and spread over every replica of a peer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from reckon.echo.v1 import echo_pb2, echo_pb2_grpc
from services.common.grpc_client import open_channel, open_sync_channel
from services.common.grpc_server import RunningServer, ServiceBinding, create_server
from tests.conftest import TEST_TOKEN


class CountingEcho(echo_pb2_grpc.EchoServiceServicer):
    """Echo that answers UNAVAILABLE to its first ``refusals`` calls, as a peer restarting."""

    def __init__(self, refusals: int = 0) -> None:
        self.refusals = refusals
        self.calls = 0

    async def Echo(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
        self.calls += 1
        if self.calls <= self.refusals:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        return echo_pb2.EchoResponse(payload=request.payload)

    async def EchoStream(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[echo_pb2.EchoStreamResponse]:
        async for request in request_iterator:
            yield echo_pb2.EchoStreamResponse(payload=request.payload)


async def _serve(servicer: CountingEcho) -> RunningServer:
    return await create_server(
        service_name="echo",
        listen="127.0.0.1:0",
        service_token=TEST_TOKEN,
        bindings=[
            ServiceBinding(
                "reckon.echo.v1.EchoService",
                echo_pb2_grpc.add_EchoServiceServicer_to_server,
                servicer,
            )
        ],
    )


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[list[CountingEcho], list[RunningServer]]]:
    servicers = [CountingEcho(), CountingEcho()]
    servers = [await _serve(s) for s in servicers]
    yield servicers, servers
    for server in servers:
        await server.server.stop(0)


async def test_unavailable_is_retried_until_the_peer_answers() -> None:
    servicer = CountingEcho(refusals=2)
    server = await _serve(servicer)
    try:
        channel = open_channel(f"127.0.0.1:{server.port}", TEST_TOKEN)
        stub = echo_pb2_grpc.EchoServiceStub(channel)
        reply = await stub.Echo(echo_pb2.EchoRequest(payload=b"x"), timeout=5)
        assert reply.payload == b"x"
        assert servicer.calls == 3
        await channel.close()
    finally:
        await server.server.stop(0)


async def test_retries_are_bounded() -> None:
    servicer = CountingEcho(refusals=100)
    server = await _serve(servicer)
    try:
        channel = open_channel(f"127.0.0.1:{server.port}", TEST_TOKEN)
        stub = echo_pb2_grpc.EchoServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Echo(echo_pb2.EchoRequest(payload=b"x"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert servicer.calls == 4
        await channel.close()
    finally:
        await server.server.stop(0)


async def test_calls_are_spread_over_replicas_and_survive_one_stopping(
    replicas: tuple[list[CountingEcho], list[RunningServer]],
) -> None:
    servicers, servers = replicas
    target = "ipv4:" + ",".join(f"127.0.0.1:{s.port}" for s in servers)
    channel = open_channel(target, TEST_TOKEN)
    stub = echo_pb2_grpc.EchoServiceStub(channel)
    for _ in range(20):
        await stub.Echo(echo_pb2.EchoRequest(payload=b"x"), timeout=5)
    assert servicers[0].calls >= 5
    assert servicers[1].calls >= 5
    await servers[0].server.stop(0)
    before = servicers[1].calls
    for _ in range(20):
        reply = await stub.Echo(echo_pb2.EchoRequest(payload=b"y"), timeout=5)
        assert reply.payload == b"y"
    assert servicers[1].calls == before + 20
    await channel.close()


async def test_blocking_channel_has_the_same_policy() -> None:
    servicer = CountingEcho(refusals=1)
    server = await _serve(servicer)
    try:
        channel = open_sync_channel(f"127.0.0.1:{server.port}", TEST_TOKEN)
        stub = echo_pb2_grpc.EchoServiceStub(channel)
        reply = await asyncio.to_thread(stub.Echo, echo_pb2.EchoRequest(payload=b"z"), timeout=5)
        assert reply.payload == b"z"
        assert servicer.calls == 2
        channel.close()
    finally:
        await server.server.stop(0)
