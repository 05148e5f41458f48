"""Webhook deliveries over HTTP with aiohttp (one pooled keep-alive session per process).

aiohttp rather than httpx: on this suite's loopback benchmark a delivery costs about
a tenth of the CPU (bench/RESULTS.md, ADR 0068), and a dispatcher delivers every
business event to every subscribed endpoint. Connections are kept alive and reused
per receiver, ``limit`` at once.

Redirects are not followed (a receiver that moved must be registered again, and
a redirect could otherwise lead to a target the URL check refused). A target
name that resolves to this machine at one of the suite's own ports is refused
at delivery time too, so DNS cannot be used to aim a webhook at Reckon itself.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp

from services.notifications.domain.addresses import resolved_target_problem
from services.notifications.service_layer.ports import TemporaryFailure, WebhookResponse

# How long a target check's resolution holds: the TCP connector's own DNS cache time
# (aiohttp's ``ttl_dns_cache`` default), so the check sees what the connector connects to.
RESOLVE_TTL = 10.0
_CHECKED_MAX = 4096  # hosts; the table starts over past it


def _monotonic() -> float:
    return time.monotonic()  # a function of this module, so tests can move its clock


class HttpWebhookSender:
    def __init__(
        self, *, timeout: float = 15.0, own_ports: frozenset[int] = frozenset(), limit: int = 64
    ) -> None:
        self._own_ports = own_ports
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        # (host, port) -> (monotonic expiry, problem or ""): the target check's answers.
        self._checked: dict[tuple[str, int], tuple[float, str]] = {}

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the loop that delivers (aiohttp binds a session to it).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit),
                timeout=self._timeout,
                # Receivers answer with a status; nobody's cookies are kept between them.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        return self._session

    async def _check_target(self, url: str) -> None:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if port not in self._own_ports or not parts.hostname:
            return
        key = (parts.hostname, port)
        now = _monotonic()
        cached = self._checked.get(key)
        if cached is not None and cached[0] > now:
            problem = cached[1]
        else:
            # Resolved once per host and port for as long as the connector keeps its own
            # DNS answers (aiohttp's default, 10 s), not once per delivery.
            infos = await asyncio.get_running_loop().getaddrinfo(
                parts.hostname, port, type=socket.SOCK_STREAM
            )
            found = resolved_target_problem([str(i[4][0]) for i in infos], port, self._own_ports)
            problem = found or ""
            if len(self._checked) >= _CHECKED_MAX:
                self._checked.clear()
            self._checked[key] = (now + RESOLVE_TTL, problem)
        if problem:
            raise TemporaryFailure(f"refused: {problem}")

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> WebhookResponse:
        try:
            await self._check_target(url)
            async with self._client().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                answer = await response.content.read(500)
                return WebhookResponse(response.status, answer.decode("utf-8", "replace"))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
