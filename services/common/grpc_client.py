"""Channels to peer services: service token attached, trace context propagated."""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from services.common.grpc_server import TOKEN_METADATA_KEY


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
class _UnaryUnaryToken(_TokenMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStreamToken(_TokenMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnaryToken(_TokenMetadata, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(details), request_iterator)


class _StreamStreamToken(_TokenMetadata, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(details), request_iterator)


def open_channel(address: str, token: str | None, *, traced: bool = True) -> grpc.aio.Channel:
    """An aio channel to ``address`` that authenticates with ``token`` and carries traces."""
    interceptors: list[Any] = []
    if token is not None:
        interceptors.extend(
            kind(token)
            for kind in (_UnaryUnaryToken, _UnaryStreamToken, _StreamUnaryToken, _StreamStreamToken)
        )
    if traced:
        interceptors.extend(aio_client_interceptors())  # type: ignore[no-untyped-call]
    return grpc.aio.insecure_channel(address, interceptors=interceptors)
