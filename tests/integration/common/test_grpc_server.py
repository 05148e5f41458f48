"""The kit's server bootstrap: auth, rich errors, health, reflection, graceful stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from reckon.echo.v1 import echo_pb2, echo_pb2_grpc
from services.common.errors import FailedPrecondition, Violations
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from services.common.grpc_server import RunningServer, ServiceBinding, create_server
from tests.conftest import TEST_TOKEN


class ProbingEcho(echo_pb2_grpc.EchoServiceServicer):
    """Echo that fails on purpose for some payloads, to exercise the error mapping."""

    async def Echo(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
        if request.payload == b"bad":
            violations = Violations()
            violations.add("payload", "must not be 'bad'")
            violations.add("other.field", "is required")
            violations.raise_if_any()
        if request.payload == b"state":
            raise FailedPrecondition("account is closed", reason="ACCOUNT_CLOSED")
        if request.payload == b"boom":
            raise RuntimeError("unexpected")
        return echo_pb2.EchoResponse(payload=request.payload)

    async def EchoStream(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[echo_pb2.EchoStreamResponse]:
        async for request in request_iterator:
            if request.payload == b"bad":
                raise FailedPrecondition("stream refused", reason="STREAM_REFUSED")
            yield echo_pb2.EchoStreamResponse(payload=request.payload)


@pytest.fixture
async def echo_server() -> AsyncIterator[RunningServer]:
    running = await create_server(
        service_name="echo",
        listen="127.0.0.1:0",
        service_token=TEST_TOKEN,
        bindings=[
            ServiceBinding(
                "reckon.echo.v1.EchoService",
                echo_pb2_grpc.add_EchoServiceServicer_to_server,
                ProbingEcho(),
            )
        ],
    )
    yield running
    await running.server.stop(0)


async def test_authenticated_call_is_answered(echo_server: RunningServer) -> None:
    async with open_channel(f"127.0.0.1:{echo_server.port}", TEST_TOKEN) as channel:
        reply = await echo_pb2_grpc.EchoServiceStub(channel).Echo(
            echo_pb2.EchoRequest(payload=b"hi")
        )
    assert reply.payload == b"hi"


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token"])
async def test_call_without_valid_token_is_unauthenticated(
    echo_server: RunningServer, token: str | None
) -> None:
    async with open_channel(f"127.0.0.1:{echo_server.port}", token) as channel:
        stub = echo_pb2_grpc.EchoServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.Echo(echo_pb2.EchoRequest(payload=b"hi"))
        details = details_of(failure.value)
        assert details.code == grpc.StatusCode.UNAUTHENTICATED
        assert details.reason == "SERVICE_TOKEN_INVALID"
        with pytest.raises(grpc.aio.AioRpcError) as stream_failure:
            async for _ in stub.EchoStream(iter([echo_pb2.EchoStreamRequest(payload=b"x")])):
                pass
        assert stream_failure.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_field_violations_come_back_as_bad_request(echo_server: RunningServer) -> None:
    async with open_channel(f"127.0.0.1:{echo_server.port}", TEST_TOKEN) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await echo_pb2_grpc.EchoServiceStub(channel).Echo(echo_pb2.EchoRequest(payload=b"bad"))
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.reason == "INVALID_ARGUMENT"
    assert details.domain == "reckon.echo"
    assert details.fields == {"payload", "other.field"}


async def test_domain_error_maps_to_code_and_reason(echo_server: RunningServer) -> None:
    async with open_channel(f"127.0.0.1:{echo_server.port}", TEST_TOKEN) as channel:
        stub = echo_pb2_grpc.EchoServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.Echo(echo_pb2.EchoRequest(payload=b"state"))
        assert details_of(failure.value).reason == "ACCOUNT_CLOSED"
        assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as stream_failure:
            async for _ in stub.EchoStream(iter([echo_pb2.EchoStreamRequest(payload=b"bad")])):
                pass
        assert details_of(stream_failure.value).reason == "STREAM_REFUSED"


async def test_unexpected_exception_is_internal_with_trace_hint(echo_server: RunningServer) -> None:
    async with open_channel(f"127.0.0.1:{echo_server.port}", TEST_TOKEN) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await echo_pb2_grpc.EchoServiceStub(channel).Echo(echo_pb2.EchoRequest(payload=b"boom"))
    assert failure.value.code() == grpc.StatusCode.INTERNAL
    assert "unexpected" not in (failure.value.details() or "")  # no internals leak


async def test_health_and_reflection_need_no_token(echo_server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{echo_server.port}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="reckon.echo.v1.EchoService")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = [s.name async for r in responses for s in r.list_services_response.service]
    assert "reckon.echo.v1.EchoService" in names
    assert "grpc.health.v1.Health" in names


async def test_not_serving_after_drain(echo_server: RunningServer) -> None:
    await echo_server.set_serving(False)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{echo_server.port}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
