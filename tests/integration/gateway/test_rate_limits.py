"""Rate limits hold across gateway processes: two app instances, one real Redis.

Neither route used here calls a service (a failed login, the audit log), so no
services are started: the gRPC channels are opened lazily and never dialled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.ratelimit import KEY_PREFIX
from suite.redis_server import EmbeddedRedis
from tests.conftest import TEST_TOKEN

pytestmark = pytest.mark.timeout(120)
UNUSED = "127.0.0.1:9"  # discard port: nothing here calls a service


def settings(redis_url: str, data_dir: Path, **overrides: Any) -> GatewaySettings:
    return GatewaySettings(
        service_token=SecretStr(TEST_TOKEN),
        redis_url=redis_url,
        data_dir=data_dir,
        # One credential table for both, as replicas behind a load balancer share one.
        database_url=f"sqlite:///{data_dir / 'gateway.db'}",
        accounts_addr=UNUSED,
        rating_addr=UNUSED,
        charging_addr=UNUSED,
        invoicing_addr=UNUSED,
        payments_addr=UNUSED,
        **overrides,
    )


@pytest.fixture
def fresh_redis(redis_server: EmbeddedRedis) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield redis_server.url
    client.close()


def two_gateways(stack: ExitStack, config: GatewaySettings) -> tuple[TestClient, TestClient]:
    first = stack.enter_context(TestClient(create_app(config)))
    second = stack.enter_context(TestClient(create_app(config)))
    return first, second


def test_login_attempts_are_counted_across_two_gateways(fresh_redis: str, tmp_path: Path) -> None:
    config = settings(fresh_redis, tmp_path, login_attempts_per_minute=3)
    with ExitStack() as stack:
        first, second = two_gateways(stack, config)
        form = {"login": "nobody@example.com", "password": "wrong-password"}
        codes = [
            (first if turn % 2 == 0 else second).post("/selfcare/login", data=form).status_code
            for turn in range(5)
        ]
    # Per process each would still allow a third attempt; together they had three.
    assert codes == [401, 401, 401, 429, 429]


def test_an_api_client_is_limited_across_two_gateways(fresh_redis: str, tmp_path: Path) -> None:
    config = settings(fresh_redis, tmp_path, rate_limit_per_minute=4)
    with ExitStack() as stack:
        first, second = two_gateways(stack, config)
        _, key = first.app.state.store.add_api_client("ops", frozenset({"admin"}))  # type: ignore[attr-defined]
        headers = {"Authorization": f"Bearer {key}"}
        answers = [
            (first if turn % 2 == 0 else second).get("/v1/audit-log", headers=headers)
            for turn in range(6)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 429]
        # 4 a minute: one more token every 15 s.
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 15
        # The bucket is in Redis, under the gateway's prefix, and expires by itself once
        # it would be full again (a minute, and a second).
        client = redis.Redis.from_url(fresh_redis)
        keys = client.keys(f"{KEY_PREFIX}:requests:*")
        assert len(keys) == 1
        assert 0 < client.pttl(keys[0]) <= 61_000
        client.close()


def test_in_memory_limits_are_per_process(fresh_redis: str, tmp_path: Path) -> None:
    config = settings(fresh_redis, tmp_path, login_attempts_per_minute=2, rate_limit_store="memory")
    with ExitStack() as stack:
        first, second = two_gateways(stack, config)
        form = {"login": "nobody@example.com", "password": "wrong-password"}
        codes = [
            client.post("/selfcare/login", data=form).status_code
            for client in (first, first, first, second, second, second)
        ]
    assert codes == [401, 401, 429, 401, 401, 429]
    assert redis.Redis.from_url(fresh_redis).keys(f"{KEY_PREFIX}:*") == []


def test_without_redis_the_limits_fall_back_to_the_process(tmp_path: Path) -> None:
    down = "redis://127.0.0.1:1/0"  # nothing listens there
    config = settings(down, tmp_path, login_attempts_per_minute=2)
    with TestClient(create_app(config)) as http:
        form = {"login": "nobody@example.com", "password": "wrong-password"}
        codes = [http.post("/selfcare/login", data=form).status_code for _ in range(3)]
    assert codes == [401, 401, 429]


async def test_busy_keys_lease_tokens_and_never_pass_the_limit_together(
    fresh_redis: str,
) -> None:
    """Two processes' limiters on one bucket, hammered: a busy key leases tokens (far
    fewer Redis calls than requests), and together they admit no more than the bucket
    holds plus what refilled meanwhile."""
    import time

    from gateway.ratelimit import RedisRateLimiter
    from services.common.redis_kit import connect

    first_client, second_client = connect(fresh_redis), connect(fresh_redis)
    per_minute = 6000  # 100 a second; leases of at most 60
    first = RedisRateLimiter(first_client, "requests", per_minute)
    second = RedisRateLimiter(second_client, "requests", per_minute)
    calls = 0
    for limiter in (first, second):
        script = limiter._script

        async def counted(*args: Any, script: Any = script, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return await script(*args, **kwargs)

        limiter._script = counted  # type: ignore[assignment]
    started = time.monotonic()
    admitted = 0
    for turn in range(9000):
        limiter = first if turn % 2 == 0 else second
        admitted += await limiter.take("client:busy") == 0
    elapsed = time.monotonic() - started
    await first_client.aclose()
    await second_client.aclose()
    refilled = elapsed * per_minute / 60
    assert per_minute <= admitted <= per_minute + refilled + 1, (admitted, elapsed)
    assert calls < 9000 / 5, calls  # leased: a round trip per many requests
