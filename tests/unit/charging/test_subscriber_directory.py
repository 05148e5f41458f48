"""The subscriber directory's cache (ADR 0058), over an in-memory table that counts reads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from services.charging.service_layer.subscribers import SubscriberDirectory
from services.charging.service_layer.unit_of_work import ChargingUnitOfWork
from services.common.errors import NotFound

NUMBER = "msisdn:+31612345678"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


class Table:
    """The rows, how many look-ups read them, and a gate a look-up waits at once it
    has read (so a test can let an event land between a read and its answer)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, int]] = {}
        self.reads = 0
        self.gate = threading.Event()
        self.gate.set()

    def claim(self, alias: str, account_id: str, version: int, now: datetime) -> bool:
        held = self.rows.get(alias)
        if held is not None and held[1] > version:
            return False
        self.rows[alias] = (account_id, version)
        return True

    def owners(self, aliases: Collection[str]) -> dict[str, str]:
        return {a: self.rows[a][0] for a in aliases if a in self.rows}


class Aliases:
    """One unit of work's view of the table."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.claimed = False

    def claim(self, alias: str, account_id: str, version: int, now: datetime) -> bool:
        self.claimed = True
        return self.table.claim(alias, account_id, version, now)

    def owners(self, aliases: Collection[str]) -> dict[str, str]:
        found = self.table.owners(aliases)
        if not self.claimed:  # a look-up, not an event being learnt
            self.table.reads += 1
            self.table.gate.wait(5)
        return found


class Uow:
    def __init__(self, table: Table) -> None:
        self.aliases = Aliases(table)

    def __enter__(self) -> Uow:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def commit(self) -> None:
        return None


def directory(table: Table, clock: list[float]) -> SubscriberDirectory:
    return SubscriberDirectory(
        lambda: cast(ChargingUnitOfWork, Uow(table)),
        ttl_seconds=30,
        miss_seconds=2,
        monotonic=lambda: clock[0],
    )


async def test_a_cold_burst_for_one_number_reads_sql_once_then_the_cache_answers() -> None:
    table, clock = Table(), [0.0]
    table.claim(NUMBER, "acc_1", 1, NOW)
    names = directory(table, clock)
    table.gate.clear()
    burst = [asyncio.ensure_future(names.account_for((NUMBER,))) for _ in range(200)]
    await asyncio.sleep(0.05)
    table.gate.set()
    assert set(await asyncio.gather(*burst)) == {"acc_1"}
    assert table.reads == 1
    assert await names.account_for((NUMBER,)) == "acc_1"
    assert table.reads == 1
    clock[0] = 31.0  # older than the time to live: read again
    assert await names.account_for((NUMBER,)) == "acc_1"
    assert table.reads == 2


async def test_a_name_nobody_holds_is_asked_again_soon_and_learning_answers_at_once() -> None:
    table, clock = Table(), [0.0]
    names = directory(table, clock)
    for _ in range(3):
        with pytest.raises(NotFound) as unknown:
            await names.account_for((NUMBER, "pin:31612345678"))
    assert unknown.value.reason == "SUBSCRIBER_NOT_FOUND"
    assert table.reads == 1
    clock[0] = 2.5
    with pytest.raises(NotFound):
        await names.account_for((NUMBER,))
    assert table.reads == 2
    await names.learn([NUMBER], "acc_2", 10, NOW)
    reads = table.reads
    assert await names.account_for((NUMBER,)) == "acc_2"
    assert table.reads == reads  # the event's answer is cached, no read
    # An older event (a redelivery) does not move it back, in SQL or in the cache.
    await names.learn([NUMBER], "acc_1", 5, NOW)
    assert await names.account_for((NUMBER,)) == "acc_2"


async def test_a_read_overtaken_by_an_event_does_not_cache_its_stale_answer() -> None:
    table, clock = Table(), [0.0]
    names = directory(table, clock)
    table.gate.clear()
    stale = asyncio.ensure_future(names.account_for((NUMBER,)))
    await asyncio.sleep(0.05)  # the look-up read "nobody" and waits at the gate
    await names.learn([NUMBER], "acc_3", 1, NOW)  # the event lands meanwhile
    table.gate.set()
    # The overtaken look-up answers what it read, but what the event said stays cached.
    with pytest.raises(NotFound):
        await stale
    reads = table.reads
    assert await names.account_for((NUMBER,)) == "acc_3"
    assert table.reads == reads
