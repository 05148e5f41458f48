"""gRPC over TLS and mutual TLS with a throwaway CA (trustme), certificates reloaded."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme

from reckon.echo.v1 import echo_pb2, echo_pb2_grpc
from services.common.config import ConfigError
from services.common.grpc_client import open_channel
from services.common.grpc_server import RunningServer, ServiceBinding, create_server
from services.common.tls import TlsFiles
from tests.conftest import TEST_TOKEN


class Echo(echo_pb2_grpc.EchoServiceServicer):
    async def Echo(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
        return echo_pb2.EchoResponse(payload=request.payload)

    async def EchoStream(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[echo_pb2.EchoStreamResponse]:
        async for request in request_iterator:
            yield echo_pb2.EchoStreamResponse(payload=request.payload)


def _write(directory: Path, name: str, blob: trustme.Blob) -> Path:
    path = directory / name
    blob.write_to_path(str(path))
    return path


class Pki:
    """A CA, a server pair for 127.0.0.1/localhost and a client pair, as PEM files."""

    def __init__(self, directory: Path, tag: str) -> None:
        self.ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        client = self.ca.issue_cert("charging.reckon.internal")
        self.ca_file = _write(directory, f"{tag}-ca.pem", self.ca.cert_pem)
        self.cert = _write(directory, f"{tag}-server.pem", server.cert_chain_pems[0])
        self.key = _write(directory, f"{tag}-server.key", server.private_key_pem)
        self.client_cert = _write(directory, f"{tag}-client.pem", client.cert_chain_pems[0])
        self.client_key = _write(directory, f"{tag}-client.key", client.private_key_pem)


async def _serve(tls: TlsFiles) -> RunningServer:
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
        tls=tls,
    )


async def _echo(port: int, tls: TlsFiles) -> bytes:
    channel = open_channel(f"127.0.0.1:{port}", TEST_TOKEN, tls=tls)
    try:
        reply = await echo_pb2_grpc.EchoServiceStub(channel).Echo(
            echo_pb2.EchoRequest(payload=b"secret"), timeout=5, wait_for_ready=False
        )
        return bytes(reply.payload)
    finally:
        await channel.close()


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[Pki, RunningServer]]:
    pki = Pki(tmp_path, "a")
    server = await _serve(TlsFiles(cert=pki.cert, key=pki.key))
    yield pki, server
    await server.server.stop(0)


async def test_client_verifying_the_server_gets_its_answer(
    tls_server: tuple[Pki, RunningServer],
) -> None:
    pki, server = tls_server
    assert await _echo(server.port, TlsFiles(ca=pki.ca_file)) == b"secret"


async def test_plaintext_and_untrusted_clients_are_refused(
    tls_server: tuple[Pki, RunningServer], tmp_path: Path
) -> None:
    _, server = tls_server
    with pytest.raises(grpc.aio.AioRpcError) as plaintext:
        await _echo(server.port, TlsFiles())
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
    stranger = Pki(tmp_path, "stranger")
    with pytest.raises(grpc.aio.AioRpcError) as untrusted:
        await _echo(server.port, TlsFiles(ca=stranger.ca_file))
    assert untrusted.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(tmp_path: Path) -> None:
    pki = Pki(tmp_path, "m")
    server = await _serve(TlsFiles(cert=pki.cert, key=pki.key, client_ca=pki.ca_file))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await _echo(server.port, TlsFiles(ca=pki.ca_file))
        assert anonymous.value.code() == grpc.StatusCode.UNAVAILABLE
        stranger = Pki(tmp_path, "s")
        with pytest.raises(grpc.aio.AioRpcError):
            await _echo(
                server.port,
                TlsFiles(
                    ca=pki.ca_file, client_cert=stranger.client_cert, client_key=stranger.client_key
                ),
            )
        client = TlsFiles(ca=pki.ca_file, client_cert=pki.client_cert, client_key=pki.client_key)
        assert await _echo(server.port, client) == b"secret"
    finally:
        await server.server.stop(0)


async def test_renewed_certificate_files_are_used_by_new_connections(
    tls_server: tuple[Pki, RunningServer], tmp_path: Path
) -> None:
    old, server = tls_server
    renewed = Pki(tmp_path, "b")
    # Renew in place, as cert-manager does: same paths, new content from another CA.
    old.cert.write_bytes(renewed.cert.read_bytes())
    old.key.write_bytes(renewed.key.read_bytes())
    stamp = old.cert.stat().st_mtime_ns + 1_000_000
    os.utime(old.cert, ns=(stamp, stamp))
    os.utime(old.key, ns=(stamp, stamp))
    assert await _echo(server.port, TlsFiles(ca=renewed.ca_file)) == b"secret"
    with pytest.raises(grpc.aio.AioRpcError):
        await _echo(server.port, TlsFiles(ca=old.ca_file))


def test_half_configured_tls_names_the_variables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RECKON_TLS_CERT_FILE and RECKON_TLS_KEY_FILE"):
        TlsFiles.from_env({"RECKON_TLS_CERT_FILE": str(tmp_path / "x.pem")})
    with pytest.raises(ConfigError, match="RECKON_TLS_CA_FILE: no file"):
        TlsFiles.from_env({"RECKON_TLS_CA_FILE": str(tmp_path / "missing.pem")})
