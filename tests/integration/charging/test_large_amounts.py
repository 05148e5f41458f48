"""Amounts of 10^14 units and more stay exact through every script (CHG-3, CHG-9).

Redis's cjson writes numbers with 14 significant digits, so 123456789012345 comes
back as 123456789012340. Amounts this large are ordinary: 100 TB of pooled data in
bytes, or 100,000,000 IDR (about 6,000 EUR) in the micro-units money is kept in.
Every reservation, debit and release below must keep the last unit.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.charging.adapters.redis_store import LUA_PACKAGE
from services.charging.bootstrap import ChargingApp
from services.charging.domain.credit_control import RequestType, ResultCode
from services.charging.domain.units import VOLUME, Quantity
from tests.integration.charging.support import (
    CONTENT,
    DATA,
    add_bucket,
    ccr,
    ledger_totals,
    live_totals,
    money,
    new_account,
    rg,
    send,
)

INITIAL, UPDATE, TERMINATE = RequestType.INITIAL, RequestType.UPDATE, RequestType.TERMINATE

POOL = 900_000_000_000_001  # bytes: 900 TB and one byte
FIRST = 123_456_789_012_345
SECOND = 111_111_111_111_111


def data(n: int) -> Quantity:
    return Quantity(VOLUME, n)


async def test_a_session_on_a_huge_data_pool_keeps_every_byte(app: ChargingApp) -> None:
    await new_account(app, "big-data", balance="1.00")
    pool = await add_bucket(app, "big-data", VOLUME, POOL, priority=10)

    first = await send(app, ccr("d1", INITIAL, 0, "big-data", rg(DATA, data(FIRST))))
    assert first.result is ResultCode.SUCCESS
    assert first.rating_groups[0].granted == data(FIRST)
    assert (await live_totals(app, "big-data"))[pool] == (POOL - FIRST, FIRST)

    update = await send(
        app, ccr("d1", UPDATE, 1, "big-data", rg(DATA, data(SECOND), data(FIRST - 7)))
    )
    assert update.rating_groups[0].granted == data(SECOND)
    assert (await live_totals(app, "big-data"))[pool] == (POOL - (FIRST - 7) - SECOND, SECOND)

    end = await send(app, ccr("d1", TERMINATE, 2, "big-data", rg(DATA, used=data(SECOND - 3))))
    assert end.result is ResultCode.SUCCESS
    left = POOL - (FIRST - 7) - (SECOND - 3)
    assert (await live_totals(app, "big-data"))[pool] == (left, 0)
    assert ledger_totals(app, "big-data")[pool] == left


async def test_a_session_priced_in_huge_money_amounts_keeps_every_micro_unit(
    app: ChargingApp,
) -> None:
    await new_account(app, "big-money", balance="900000000.000001")
    asked = money("123456789.012345")
    first = await send(app, ccr("m1", INITIAL, 0, "big-money", rg(CONTENT, asked)))
    assert first.result is ResultCode.SUCCESS
    assert first.rating_groups[0].granted == asked
    balance = money("900000000.000001").amount
    assert await live_totals(app, "big-money") == {
        "main-EUR": (balance - asked.amount, asked.amount)
    }
    used = money("123456789.012338")
    end = await send(app, ccr("m1", TERMINATE, 1, "big-money", rg(CONTENT, used=used)))
    assert end.result is ResultCode.SUCCESS
    assert end.rating_groups[0].charged_units == used
    assert await live_totals(app, "big-money") == {"main-EUR": (balance - used.amount, 0)}
    assert ledger_totals(app, "big-money") == {"main-EUR": balance - used.amount}


@pytest.mark.parametrize(
    "value",
    [
        {"al": [["main-EUR", 123_456_789_012_345], ["pool", 4_503_599_627_370_496]]},
        {"k": "u", "al": [["b", -900_000_000_000_001]], "cur": "EUR", "sw": 1_764_000_000_000},
        {"small": [1, 2, 3], "s": "e+ in a string", "t": True, "nested": {"n": 10**14}},
        {"empty": {}, "zero": 0},
        [10**15, -(10**15), 7],
    ],
)
async def test_scripts_write_json_with_every_integer_whole(
    redis_client: aioredis.Redis, value: Any
) -> None:
    prelude = resources.files(LUA_PACKAGE).joinpath("_lib.lua").read_text(encoding="utf-8")
    script = f"{prelude}\nreturn J(cjson.decode(ARGV[1]))"
    text = await redis_client.eval(script, 0, json.dumps(value))
    assert json.loads(text) == value
