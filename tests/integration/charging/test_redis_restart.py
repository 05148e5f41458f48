"""Redis killed and started again under a running charging app: UNAVAILABLE, then service.

While Redis is down or loading its data, a credit-control request must get the
retryable UNAVAILABLE (not INTERNAL from a raw Redis error); once Redis is back on
the same port the same client reconnects, the scripts are registered again, the
account is rebuilt from the ledger and the retried request is answered.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import redis.asyncio as aioredis

from services.charging.domain.credit_control import RequestType, ResultCode
from services.common.clock import ManualClock
from services.common.errors import Unavailable
from suite.redis_server import EmbeddedRedis
from tests.conftest import TestDatabase
from tests.integration.charging.support import (
    START,
    VOICE,
    ccr,
    charging_app,
    ledger_totals,
    live_totals,
    new_account,
    rg,
    seconds,
    send,
)


async def test_killed_redis_gives_unavailable_then_the_retry_is_answered(
    database: TestDatabase, tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = aioredis.Redis.from_url(server.url)
    try:
        async with charging_app(
            database, client, server.url, clock=ManualClock(START), rebuild_fence_ms=200
        ) as app:
            await new_account(app, "acct-restart", balance="5.00")
            opened = await send(
                app,
                ccr("s-restart", RequestType.INITIAL, 0, "acct-restart", rg(VOICE, seconds(60))),
            )
            assert opened.result is ResultCode.SUCCESS

            assert server.process is not None
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
            update = ccr(
                "s-restart",
                RequestType.UPDATE,
                1,
                "acct-restart",
                rg(VOICE, seconds(60), used=seconds(60)),
            )
            try:
                await send(app, update)
            except Unavailable:
                pass
            else:
                raise AssertionError("a request while Redis is down must be UNAVAILABLE")

            # A fresh, empty Redis on the same port: the client reconnects by itself.
            server = EmbeddedRedis(tmp_path / "redis-new", port=server.port).start()
            async with asyncio.timeout(10):
                while True:
                    try:
                        answer = await send(app, update)
                        break
                    except Unavailable:  # the rebuild fence; the caller retries
                        await asyncio.sleep(0.1)
            assert answer.request_number == 1
            live = await live_totals(app, "acct-restart")
            assert {b: a + r for b, (a, r) in live.items()} == ledger_totals(app, "acct-restart")
    finally:
        await client.aclose()
        server.stop()
