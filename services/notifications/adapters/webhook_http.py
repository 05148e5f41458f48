"""Webhook deliveries over HTTP with httpx (one pooled client per process).

Redirects are not followed (a receiver that moved must be registered again, and
a redirect could otherwise lead to a target the URL check refused). A target
name that resolves to this machine at one of the suite's own ports is refused
at delivery time too, so DNS cannot be used to aim a webhook at Reckon itself.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from services.notifications.domain.addresses import resolved_target_problem
from services.notifications.service_layer.ports import TemporaryFailure, WebhookResponse


class HttpWebhookSender:
    def __init__(
        self, *, timeout: float = 15.0, own_ports: frozenset[int] = frozenset(), limit: int = 64
    ) -> None:
        self._own_ports = own_ports
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        )

    async def _check_target(self, url: str) -> None:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if port not in self._own_ports or not parts.hostname:
            return
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, port, type=socket.SOCK_STREAM
        )
        problem = resolved_target_problem([str(i[4][0]) for i in infos], port, self._own_ports)
        if problem:
            raise TemporaryFailure(f"refused: {problem}")

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> WebhookResponse:
        try:
            await self._check_target(url)
            response = await self._client.post(url, headers=dict(headers), content=body)
        except (httpx.HTTPError, OSError) as exc:
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc
        return WebhookResponse(response.status_code, response.text[:500])

    async def aclose(self) -> None:
        await self._client.aclose()
