"""Rating's ``UsageRerated`` corrects what offline usage cost, once per re-rating.

The events are built with rating's own ``UsageRerated`` (the payload it publishes).
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis
from sqlalchemy import select

from services.charging.adapters import orm
from services.charging.bootstrap import ChargingApp
from services.charging.domain.accounts import BillingMode
from services.common.clock import ManualClock
from services.common.events import EventEnvelope
from services.rating.service_layer.events import UsageRerated
from tests.integration.charging.support import (
    ledger_totals,
    live_totals,
    money,
    new_account,
    outbox_events,
)
from tests.integration.charging.test_accounts_and_events import envelope

PERIOD = (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))


def rated(account: str, record_id: str, amount: str) -> dict[str, object]:
    return {
        "record_id": record_id,
        "account_id": account,
        "service": "voice",
        "quantity": "60",
        "unit": "second",
        "amount": {"amount": amount, "currency": "EUR"},
        "event_time": "2026-02-20T10:00:00+00:00",
    }


async def import_usage(
    app: ChargingApp, clock: ManualClock, event_id: str, *records: dict[str, object]
) -> None:
    await app.usage.handle(
        envelope("UsageRated", {"file_id": event_id, "records": list(records)}, clock, event_id)
    )


def rerated(
    clock: ManualClock, rerate_id: str, account: str, *changes: tuple[str, str, str]
) -> EventEnvelope:
    event = UsageRerated(
        rerate_id,
        account,
        PERIOD[0].isoformat(),
        PERIOD[1].isoformat(),
        2,
        {},
        [
            {
                "record_id": record_id,
                "event_time": "2026-02-20T10:00:00+00:00",
                "old": {"amount": old, "currency": "EUR"},
                "new": {"amount": new, "currency": "EUR"},
            }
            for record_id, old, new in changes
        ],
    )
    return envelope(event.event_type, event.payload(), clock, f"ev-{rerate_id}", source="rating")


def rerate_entries(app: ChargingApp, account: str) -> list[tuple[str, str, int, str]]:
    e = orm.ledger_entries
    with app.engine.connect() as connection:
        rows = connection.execute(
            select(e.c.direction, e.c.reference, e.c.amount, e.c.reason)
            .where(e.c.account_id == account, e.c.reference.like("rerate:%"))
            .order_by(e.c.seq)
        ).all()
    return [(r.direction, r.reference, int(r.amount), r.reason) for r in rows]


async def test_a_re_rating_debits_the_difference_once(
    app: ChargingApp, clock: ManualClock, redis_client: aioredis.Redis
) -> None:
    await new_account(app, "rr", balance="10.00")
    await import_usage(app, clock, "f1", rated("rr", "cdr-1", "1.25"), rated("rr", "cdr-2", "1.25"))
    assert ledger_totals(app, "rr") == {"main-EUR": money("7.50").amount}

    # cdr-1 up 0.25, cdr-2 down 0.15: 0.10 more. "ghost" was never charged by charging
    # (no usage entry), so its correction is not either.
    event = rerated(
        clock, "rrt-1", "rr", ("cdr-1", "1.25", "1.50"), ("cdr-2", "1.25", "1.10"),
        ("ghost", "2.00", "3.00"),
    )  # fmt: skip
    await app.usage.handle(event)
    await app.usage.handle(event)  # redelivered
    assert ledger_totals(app, "rr") == {"main-EUR": money("7.40").amount}
    assert await live_totals(app, "rr") == {"main-EUR": (money("7.40").amount, 0)}
    assert rerate_entries(app, "rr") == [
        ("D", "rerate:rrt-1:EUR", money("0.10").amount, "re-rating rrt-1: 2 records")
    ]

    # Redis loses everything: the ledger still knows the re-rating was applied.
    await redis_client.flushall()
    await app.usage.handle(event)
    assert ledger_totals(app, "rr") == {"main-EUR": money("7.40").amount}
    await app.loader.ensure_loaded("rr")  # rebuilt from the ledger
    assert await live_totals(app, "rr") == {"main-EUR": (money("7.40").amount, 0)}


async def test_a_re_rating_that_lowers_the_price_credits_back(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "rr2", balance="10.00")
    await import_usage(app, clock, "f2", rated("rr2", "cdr-9", "1.50"))
    await app.usage.handle(rerated(clock, "rrt-2", "rr2", ("cdr-9", "1.50", "1.00")))
    assert ledger_totals(app, "rr2") == {"main-EUR": money("9.00").amount}
    assert rerate_entries(app, "rr2") == [
        ("C", "rerate:rrt-2:EUR", money("0.50").amount, "re-rating rrt-2: 1 records")
    ]
    # A record re-rated again later is corrected from its latest amount.
    await app.usage.handle(rerated(clock, "rrt-3", "rr2", ("cdr-9", "1.00", "1.20")))
    assert ledger_totals(app, "rr2") == {"main-EUR": money("8.80").amount}


async def test_postpaid_unbilled_usage_moves_and_the_credit_limit_is_checked_again(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "rrp", mode=BillingMode.POSTPAID, credit_limit="5.00")
    await import_usage(app, clock, "f3", rated("rrp", "cdr-p", "4.50"))
    assert ledger_totals(app, "rrp") == {"main-EUR": -money("4.50").amount}
    levels = [p["percent"] for t, p in outbox_events(app) if t == "CreditLimitReached"]
    assert levels == [80]
    await app.usage.handle(rerated(clock, "rrt-4", "rrp", ("cdr-p", "4.50", "5.25")))
    # 5.25 of unbilled usage against a 5.00 limit: the 100% threshold is announced.
    assert ledger_totals(app, "rrp") == {"main-EUR": -money("5.25").amount}
    levels = [p["percent"] for t, p in outbox_events(app) if t == "CreditLimitReached"]
    assert levels == [80, 100]


async def test_a_re_rating_of_an_account_charging_does_not_know_changes_nothing(
    app: ChargingApp, clock: ManualClock
) -> None:
    await app.usage.handle(rerated(clock, "rrt-5", "nobody", ("cdr-x", "1.00", "2.00")))
    assert rerate_entries(app, "nobody") == []
