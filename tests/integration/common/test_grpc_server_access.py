"""Who a server lets in, and how tools discover it: bearer in any case, rotated tokens,
server reflection under both ``grpc.reflection.v1`` and ``v1alpha`` (ADR 0038)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from reckon.echo.v1 import echo_pb2, echo_pb2_grpc
from services.common.config import ConfigError, TokenSettings, load_settings
from services.common.grpc_server import RunningServer, ServiceBinding, create_server
from tests.conftest import TEST_TOKEN

NEXT_TOKEN = "the-next-token-after-rotation"
OTHER_TOKEN = "yet-another-valid-looking-token"


class Echo(echo_pb2_grpc.EchoServiceServicer):
    async def Echo(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
        return echo_pb2.EchoResponse(payload=request.payload)

    async def EchoStream(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[echo_pb2.EchoStreamResponse]:
        async for request in request_iterator:
            yield echo_pb2.EchoStreamResponse(payload=request.payload)


async def _server() -> RunningServer:
    return await create_server(
        service_name="echo",
        listen="127.0.0.1:0",
        service_token=TEST_TOKEN,
        bindings=[
            ServiceBinding(
                "reckon.echo.v1.EchoService",
                echo_pb2_grpc.add_EchoServiceServicer_to_server,
                Echo(),
            )
        ],
    )


@pytest.fixture
async def rotating_server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningServer]:
    # The new token is rolled out to the servers first, beside the current one.
    monkeypatch.setenv("RECKON_SERVICE_TOKENS", f" {NEXT_TOKEN} ,")
    running = await _server()
    yield running
    await running.server.stop(0)


async def _echo(port: int, authorization: str | None) -> grpc.StatusCode:
    metadata = (("authorization", authorization),) if authorization is not None else None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            await echo_pb2_grpc.EchoServiceStub(channel).Echo(
                echo_pb2.EchoRequest(payload=b"x"), metadata=metadata, timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
async def test_the_bearer_scheme_is_case_insensitive(
    rotating_server: RunningServer, scheme: str
) -> None:
    assert await _echo(rotating_server.port, f"{scheme} {TEST_TOKEN}") is grpc.StatusCode.OK


async def test_the_current_and_the_next_token_are_both_accepted(
    rotating_server: RunningServer,
) -> None:
    assert await _echo(rotating_server.port, f"Bearer {TEST_TOKEN}") is grpc.StatusCode.OK
    assert await _echo(rotating_server.port, f"Bearer {NEXT_TOKEN}") is grpc.StatusCode.OK


@pytest.mark.parametrize(
    "authorization",
    [None, "", f"Basic {TEST_TOKEN}", TEST_TOKEN, f"Bearer {OTHER_TOKEN}", "Bearer ", "Bearer"],
)
async def test_anything_else_is_unauthenticated(
    rotating_server: RunningServer, authorization: str | None
) -> None:
    code = await _echo(rotating_server.port, authorization)
    assert code is grpc.StatusCode.UNAUTHENTICATED


async def test_without_rotation_only_the_service_token_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RECKON_SERVICE_TOKENS", raising=False)
    running = await _server()
    try:
        assert await _echo(running.port, f"Bearer {NEXT_TOKEN}") is grpc.StatusCode.UNAUTHENTICATED
        assert await _echo(running.port, f"bearer {TEST_TOKEN}") is grpc.StatusCode.OK
    finally:
        await running.server.stop(0)


def test_a_short_rotation_token_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECKON_SERVICE_TOKENS", f"{NEXT_TOKEN},short")
    with pytest.raises(ConfigError, match="RECKON_SERVICE_TOKENS"):
        load_settings(TokenSettings)


@pytest.mark.parametrize("package", ["grpc.reflection.v1", "grpc.reflection.v1alpha"])
async def test_reflection_answers_under_v1_and_v1alpha(
    rotating_server: RunningServer, package: str
) -> None:
    # A v1 client sends the same bytes as a v1alpha one, to v1's method path.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{rotating_server.port}") as channel:
        call = channel.stream_stream(
            f"/{package}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="reckon.echo.v1.EchoService"
            ),
        ]
        answers = [answer async for answer in call(iter(requests), timeout=5)]
    listed = {service.name for service in answers[0].list_services_response.service}
    assert {"reckon.echo.v1.EchoService", "grpc.reflection.v1.ServerReflection"} <= listed
    assert answers[1].file_descriptor_response.file_descriptor_proto
