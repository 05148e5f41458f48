"""Rate limits per API client, per login and per address (ADR 0045, ADR 0072).

A token bucket per key: ``per_minute`` requests, refilled continuously. The buckets
live in Redis (``gateway/lua/token_bucket.lua``, one atomic script per request on
Redis's clock), so a limit holds across every gateway process of a suite, not per
process. ``GATEWAY_RATE_LIMIT_STORE=memory`` keeps them in the process instead (a
single gateway, or tests). When Redis cannot be reached the gateway keeps answering
and counts in its own memory until Redis is back: a limit per process is better than
refusing every request or counting nothing.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.common.redis_kit import LuaScripts

log = logging.getLogger(__name__)
KEY_PREFIX = "reckon:gateway:rate"
# Keys carry login names and addresses anyone can invent: long ones are hashed.
MAX_KEY_CHARS = 200


class RateLimiter(Protocol):
    async def take(self, key: str) -> float:
        """0 when allowed, else the seconds until the next request would be."""
        ...


class MemoryRateLimiter:
    """Buckets in this process only."""

    # Past this many keys, buckets that have refilled completely (so hold no
    # information) are dropped.
    MAX_KEYS = 50_000

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str) -> float:
        return self.take_now(key)

    def take_now(self, key: str) -> float:
        now = time.monotonic()
        if len(self._buckets) > self.MAX_KEYS:
            self._forget_full(now)
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        refill = self.capacity / self.rate
        self._buckets = {
            key: (tokens, last)
            for key, (tokens, last) in self._buckets.items()
            if now - last < refill
        }


class RedisRateLimiter:
    """Buckets in Redis, shared by every gateway using the same Redis and ``name``."""

    def __init__(self, client: aioredis.Redis, name: str, per_minute: int) -> None:
        self._script = LuaScripts(client, "gateway.lua")["token_bucket"]
        self._prefix = f"{KEY_PREFIX}:{name}:"
        self._args = (per_minute, per_minute / 60.0)
        self._fallback = MemoryRateLimiter(per_minute)
        self._warned = False

    def key_of(self, key: str) -> str:
        if len(key) > MAX_KEY_CHARS:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return self._prefix + key

    async def take(self, key: str) -> float:
        try:
            wait_ms = await self._script(keys=[self.key_of(key)], args=self._args)
        except (RedisError, OSError) as exc:
            if not self._warned:
                log.warning("rate limits counted per process: Redis unavailable (%s)", exc)
                self._warned = True
            return self._fallback.take_now(key)
        if self._warned:
            log.info("rate limits shared through Redis again")
            self._warned = False
        return int(wait_ms) / 1000.0
