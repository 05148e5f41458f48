"""The rating groups this process knows, cached from SQL.

Credit control looks definitions up on every request, so they are held in memory;
an unknown rating group triggers a reload (at most once a second) before the
request is refused, and a periodic refresh picks up definitions other processes
changed. A definition changed in one process is seen by the others within the
refresh interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from services.charging.domain.services import ServiceDefinition
from services.charging.service_layer.unit_of_work import ChargingUnitOfWork
from services.common.errors import InvalidArgument


class ServiceCatalog:
    def __init__(
        self,
        uow_factory: Callable[[], ChargingUnitOfWork],
        *,
        min_reload_interval: float = 1.0,
    ) -> None:
        self._uow_factory = uow_factory
        self._definitions: dict[int, ServiceDefinition] = {}
        self._min_interval = min_reload_interval
        self._last_reload = 0.0
        self._lock = asyncio.Lock()

    def get(self, rating_group: int) -> ServiceDefinition | None:
        return self._definitions.get(rating_group)

    def all(self) -> list[ServiceDefinition]:
        return [self._definitions[g] for g in sorted(self._definitions)]

    def put(self, definition: ServiceDefinition) -> None:
        self._definitions[definition.rating_group] = definition

    async def reload(self) -> None:
        def load() -> list[ServiceDefinition]:
            with self._uow_factory() as uow:
                return uow.services.all()

        definitions = await asyncio.to_thread(load)
        self._definitions = {d.rating_group: d for d in definitions}
        self._last_reload = time.monotonic()

    async def require(self, rating_group: int, field: str) -> ServiceDefinition:
        found = self._definitions.get(rating_group)
        if found is not None:
            return found
        async with self._lock:
            if time.monotonic() - self._last_reload >= self._min_interval:
                await self.reload()
        found = self._definitions.get(rating_group)
        if found is None:
            raise InvalidArgument.field(
                field, f"unknown rating group {rating_group} (define it with DefineService)"
            )
        return found
