"""Running the rating service: gRPC server plus its background work.

Background tasks: the outbox relay (events to ``reckon:events:rating``), the
consumer of accounts' events (the account view) and, when configured, the drop
folder. ``start`` returns a handle tests use to run the service in-process on a
free port; ``run`` serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from reckon.rating.v1 import rating_pb2_grpc
from services.common.clock import Clock
from services.common.grpc_server import RunningServer, ServiceBinding, create_server, serve
from services.rating.bootstrap import RatingApp, bootstrap
from services.rating.config import RatingSettings
from services.rating.entrypoints.servicer import RatingServicer

log = logging.getLogger(__name__)

SERVICE_FULL_NAME = "reckon.rating.v1.RatingService"
# Upload chunks and batch requests are bigger than gRPC's 4 MiB default allows.
_MESSAGE_LIMIT = 32 * 1024 * 1024


@dataclass
class RunningRating:
    app: RatingApp
    server: RunningServer
    stop_event: asyncio.Event
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def address(self) -> str:
        host = self.app.settings.listen.rsplit(":", 1)[0].strip("[]")
        return f"{host}:{self.server.port}"

    async def stop(self, grace: float = 1.0) -> None:
        await self.server.drain(grace)
        await self.stop_background()

    async def stop_background(self) -> None:
        self.stop_event.set()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with suppress(asyncio.CancelledError):
                await task
        await self.app.redis.aclose()
        self.app.close()


async def start(
    settings: RatingSettings,
    *,
    clock: Clock | None = None,
    redis_client: aioredis.Redis | None = None,
    background: bool = True,
) -> RunningRating:
    app = await asyncio.to_thread(bootstrap, settings, clock=clock, redis_client=redis_client)
    server = await create_server(
        service_name="rating",
        listen=settings.listen,
        service_token=settings.service_token.get_secret_value(),
        bindings=[
            ServiceBinding(
                SERVICE_FULL_NAME,
                rating_pb2_grpc.add_RatingServiceServicer_to_server,
                RatingServicer(app),
            )
        ],
        options=[
            ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
            ("grpc.max_send_message_length", _MESSAGE_LIMIT),
        ],
    )
    running = RunningRating(app, server, asyncio.Event())
    if background:
        running.tasks.append(asyncio.create_task(app.relay.run(running.stop_event)))
        running.tasks.append(asyncio.create_task(app.accounts_consumer.run(running.stop_event)))
        if app.drop_folder is not None:
            running.tasks.append(asyncio.create_task(app.drop_folder.run(running.stop_event)))
    log.info("rating listening on %s", running.address)
    return running


async def run(settings: RatingSettings) -> None:
    running = await start(settings)
    await serve(running.server, on_stop=[running.stop_background])
