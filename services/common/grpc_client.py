"""Channels to peer services: service token attached, trace context propagated.

``open_channel`` is the ``grpc.aio`` channel for code on an event loop;
``open_sync_channel`` the blocking one for code in worker threads (handlers run
through ``asyncio.to_thread``, which copies the call's context, so the client span
of a call made there is a child of the server span that led to it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors, client_interceptor
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel as traced_channel

from services.common.grpc_server import TOKEN_METADATA_KEY
from services.common.tls import TlsFiles, channel_credentials

# Every call between services: spread over all addresses a target resolves to (replicas
# behind a headless Service or an ``ipv4:a,b`` list) and retried on UNAVAILABLE, the code
# a restarting or draining peer answers with. Retrying is safe because every mutating RPC
# of the suite carries a request_id (AIP-155): a repeat replays the first answer.
# Bounded: at most 4 attempts within the caller's deadline.
SERVICE_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.05s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    # A restarted peer is found again within about a second (gRPC's default backoff
    # grows to 120 s): calls waiting for it (wait_for_ready) are bounded by their
    # deadline, seconds (ADR 0052).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class _TokenMetadata:
    """Adds the service token to a call's metadata."""

    def __init__(self, token: str) -> None:
        self._pair = (TOKEN_METADATA_KEY, f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or [])
        metadata.append(self._pair)
        return details._replace(metadata=grpc.aio.Metadata(*metadata))


# grpc.aio files an interceptor under the first call kind it implements only, so each
# kind needs a class of its own.
class _UnaryUnaryToken(_TokenMetadata, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStreamToken(_TokenMetadata, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnaryToken(_TokenMetadata, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(details), request_iterator)


class _StreamStreamToken(_TokenMetadata, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(details), request_iterator)


def open_channel(
    address: str, token: str | None, *, traced: bool = True, tls: TlsFiles | None = None
) -> grpc.aio.Channel:
    """An aio channel to ``address`` that authenticates with ``token`` and carries traces.

    TLS, verifying the peer, when ``tls`` or the ``RECKON_TLS_*`` variables name a CA.
    """
    interceptors: list[Any] = []
    if token is not None:
        interceptors.extend(
            kind(token)
            for kind in (_UnaryUnaryToken, _UnaryStreamToken, _StreamUnaryToken, _StreamStreamToken)
        )
    if traced:
        interceptors.extend(aio_client_interceptors())  # type: ignore[no-untyped-call]
    tls = tls if tls is not None else TlsFiles.from_env()
    if tls.dials_tls:
        return grpc.aio.secure_channel(
            address, channel_credentials(tls), options=CHANNEL_OPTIONS, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)


class _SyncCallDetails(NamedTuple):
    """``grpc.ClientCallDetails`` with new metadata (the library's own type is private)."""

    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, str | bytes]] | None
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _SyncToken(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds the service token to every call of a blocking channel (one class: the sync
    API, unlike grpc.aio, files an interceptor under every kind it implements)."""

    def __init__(self, token: str) -> None:
        self._pair = (TOKEN_METADATA_KEY, f"Bearer {token}")

    def _details(self, details: Any) -> _SyncCallDetails:
        return _SyncCallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=[*(details.metadata or ()), self._pair],
            credentials=details.credentials,
            wait_for_ready=getattr(details, "wait_for_ready", None),
            compression=getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return continuation(self._details(details), request_iterator)


def open_sync_channel(
    address: str, token: str | None, *, traced: bool = True, tls: TlsFiles | None = None
) -> grpc.Channel:
    """A blocking channel to ``address`` that authenticates with ``token`` and carries
    the caller's trace context (for code running in worker threads)."""
    tls = tls if tls is not None else TlsFiles.from_env()
    if tls.dials_tls:
        channel = grpc.secure_channel(address, channel_credentials(tls), options=CHANNEL_OPTIONS)
    else:
        channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    if token is not None:
        channel = grpc.intercept_channel(channel, _SyncToken(token))
    if traced:
        # OpenTelemetry's sync interceptor has its own channel wrapper (grpcext), not
        # grpc's; outermost, so its client span covers the whole call.
        channel = traced_channel(channel, client_interceptor())  # type: ignore[no-untyped-call]
    return channel
