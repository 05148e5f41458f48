"""The delivery-time target check resolves a host once per ``RESOLVE_TTL``, not per delivery."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from services.notifications.adapters import webhook_http
from services.notifications.adapters.webhook_http import HttpWebhookSender
from services.notifications.service_layer.ports import TemporaryFailure


async def test_a_host_is_resolved_once_per_ttl_and_refused_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    asked: list[str] = []
    clock = [1000.0]

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(webhook_http, "_monotonic", lambda: clock[0])
    sender = HttpWebhookSender(own_ports=frozenset({50051}))
    for _ in range(3):
        with pytest.raises(TemporaryFailure, match="refused"):
            await sender.post("http://crm.example.com:50051/hook", {}, b"{}")
    assert asked == ["crm.example.com"]
    clock[0] += webhook_http.RESOLVE_TTL + 1  # the answer is old: asked again
    with pytest.raises(TemporaryFailure, match="refused"):
        await sender.post("http://crm.example.com:50051/hook", {}, b"{}")
    assert asked == ["crm.example.com", "crm.example.com"]
    await sender.aclose()


class _Posted(Exception):
    pass


async def test_a_port_that_is_not_the_suites_is_not_resolved_at_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def getaddrinfo(*_: Any, **__: Any) -> list[Any]:
        raise AssertionError("resolved")

    def client() -> None:
        raise _Posted

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    sender = HttpWebhookSender(own_ports=frozenset({50051}))
    monkeypatch.setattr(sender, "_client", client)
    with pytest.raises(_Posted):  # went straight on to post
        await sender.post("http://crm.example.com:8443/hook", {}, b"{}")
