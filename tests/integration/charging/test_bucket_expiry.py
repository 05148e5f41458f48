"""What an ended bucket still has is forfeited into the ledger (ADR 0021, CHG-5, CHG-10).

A bucket whose validity ended can never be drawn again, so what it still has
available is debited with an EXPIRY ledger entry by the maintenance pass: the
ledger then says what the customer can still use, and finance sees the breakage.
Units a session holds stay the session's until it reports them; what it gives
back is forfeited by a later pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from services.charging.adapters import orm
from services.charging.bootstrap import ChargingApp
from services.charging.domain.credit_control import RequestType, ResultCode
from services.charging.domain.instants import to_ms
from services.charging.domain.ledger import Direction, EntryKind
from services.charging.domain.units import TIME, Quantity
from services.charging.service_layer.commands import Adjust, CloseBucket, UpdateBucket
from services.charging.service_layer.ports import JournalEntry
from services.common.clock import ManualClock
from services.common.errors import FailedPrecondition, InvalidArgument
from tests.integration.charging.support import (
    VOICE,
    add_bucket,
    ccr,
    ledger_totals,
    live_totals,
    money,
    new_account,
    outbox_events,
    rg,
    seconds,
    send,
)

INITIAL, UPDATE, TERMINATE = RequestType.INITIAL, RequestType.UPDATE, RequestType.TERMINATE


def expiry_entries(app: ChargingApp, account_id: str) -> list[tuple[str, int, str]]:
    with app.uow() as uow:
        entries = uow.ledger.page(account_id, None, 0, 1000)
    return [
        (e.bucket_id, e.amount.amount, e.reason)
        for e in entries
        if e.kind is EntryKind.EXPIRY and e.direction is Direction.DEBIT
    ]


def settled(app: ChargingApp, account_id: str, bucket_id: str) -> bool:
    b = orm.buckets
    with app.engine.connect() as connection:
        value = connection.execute(
            select(b.c.settled_at).where(b.c.account_id == account_id, b.c.bucket_id == bucket_id)
        ).scalar_one()
    return value is not None


async def test_an_ended_bucket_forfeits_what_it_has_left_once(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "exp", balance="1.00")
    ends = clock.now() + timedelta(hours=10)
    weekend = await add_bucket(app, "exp", TIME, 300, valid_until=ends, label="weekend minutes")
    month = await add_bucket(app, "exp", TIME, 600, valid_until=ends + timedelta(days=30))
    forever = await add_bucket(app, "exp", TIME, 50)

    assert await app.maintenance.forfeit_expired_once() == 0  # nothing has ended yet
    clock.advance(timedelta(hours=11))
    assert await app.maintenance.forfeit_expired_once() == 1
    assert await app.maintenance.forfeit_expired_once() == 0  # settled: never twice

    assert expiry_entries(app, "exp") == [(weekend, 300, f"validity ended {ends.isoformat()}")]
    live = await live_totals(app, "exp")
    assert live[weekend] == (0, 0)
    assert live[month] == (600, 0)
    assert live[forever] == (50, 0)
    assert live["main-EUR"] == (money("1.00").amount, 0)
    ledger = ledger_totals(app, "exp")
    assert ledger.get(weekend, 0) == 0
    assert ledger[month] == 600
    assert settled(app, "exp", weekend)
    assert not settled(app, "exp", month)
    # The customer's balance lists the ended bucket with nothing in it.
    balance = await app.handlers.balance("exp")
    line = next(line for line in balance.lines if line.bucket.bucket_id == weekend)
    assert (line.available, line.reserved, line.usable) == (0, 0, False)


async def test_units_a_session_holds_are_debited_and_the_rest_forfeited_later(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "held-exp", balance="0")
    ends = clock.now() + timedelta(seconds=30)
    minutes = await add_bucket(app, "held-exp", TIME, 300, valid_until=ends)
    granted = await send(app, ccr("hx", INITIAL, 0, "held-exp", rg(VOICE, seconds(60))))
    assert granted.rating_groups[0].granted == seconds(60)

    clock.advance(timedelta(seconds=40))  # the bucket ended; the grant is still valid
    assert await app.maintenance.forfeit_expired_once() == 1
    assert await live_totals(app, "held-exp") == {"main-EUR": (0, 0), minutes: (0, 60)}
    assert not settled(app, "held-exp", minutes)

    # Usage under the grant is debited from the units held; the rest goes back...
    end = await send(app, ccr("hx", TERMINATE, 1, "held-exp", rg(VOICE, used=seconds(20))))
    assert end.result is ResultCode.SUCCESS
    assert (await live_totals(app, "held-exp"))[minutes] == (40, 0)
    # ...and is forfeited by the next pass, which settles the bucket.
    assert await app.maintenance.forfeit_expired_once() == 1
    assert (await live_totals(app, "held-exp"))[minutes] == (0, 0)
    assert [amount for _, amount, _ in expiry_entries(app, "held-exp")] == [240, 40]
    assert ledger_totals(app, "held-exp").get(minutes, 0) == 0
    assert settled(app, "held-exp", minutes)


async def test_a_bucket_still_valid_is_not_forfeited(app: ChargingApp, clock: ManualClock) -> None:
    await new_account(app, "live", balance="0")
    ends = clock.now() + timedelta(hours=1)
    minutes = await add_bucket(app, "live", TIME, 300, valid_until=ends)
    with app.uow() as uow:
        bucket = uow.buckets.get("live", minutes)
    assert bucket is not None
    with pytest.raises(FailedPrecondition) as refused:
        await app.handlers.forfeit_expired(bucket)
    assert refused.value.reason == "BUCKET_STILL_VALID"
    assert await live_totals(app, "live") == {"main-EUR": (0, 0), minutes: (300, 0)}
    assert expiry_entries(app, "live") == []


async def test_an_ended_bucket_takes_no_credit_but_an_operator_may_still_debit_it(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "ended", balance="0")
    minutes = await add_bucket(
        app, "ended", TIME, 300, valid_until=clock.now() + timedelta(minutes=1)
    )
    clock.advance(timedelta(minutes=2))
    with pytest.raises(FailedPrecondition) as refused:
        await app.handlers.adjust(
            Adjust("ended", minutes, Quantity(TIME, 60), reason="goodwill", request_id="a1")
        )
    assert refused.value.reason == "BUCKET_ENDED"
    assert (await live_totals(app, "ended"))[minutes] == (300, 0)
    # A correction downwards is still the operator's to make.
    await app.handlers.adjust(
        Adjust("ended", minutes, Quantity(TIME, -100), reason="correction", request_id="a2")
    )
    assert await app.maintenance.forfeit_expired_once() == 1
    assert expiry_entries(app, "ended") == [
        (minutes, 200, f"validity ended {(clock.now() - timedelta(minutes=1)).isoformat()}")
    ]
    assert ledger_totals(app, "ended").get(minutes, 0) == 0


def valid_until_in_sql(app: ChargingApp, account_id: str, bucket_id: str) -> object:
    b = orm.buckets
    with app.engine.connect() as connection:
        return connection.execute(
            select(b.c.valid_until).where(b.c.account_id == account_id, b.c.bucket_id == bucket_id)
        ).scalar_one()


async def test_closing_a_bucket_ends_it_now_and_forfeits_what_is_available(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "churn", balance="1.00")
    bundle = await add_bucket(app, "churn", TIME, 300, label="monthly bundle")
    granted = await send(app, ccr("c1", INITIAL, 0, "churn", rg(VOICE, seconds(100))))
    assert granted.rating_groups[0].granted == seconds(100)

    clock.advance(timedelta(seconds=10))
    command = CloseBucket("churn", bundle, "subscription cancelled", request_id="close-1")
    closed = await app.handlers.close_bucket(command)
    assert closed.entry is not None
    assert (closed.entry.kind, closed.entry.direction) == (EntryKind.EXPIRY, Direction.DEBIT)
    assert (closed.entry.amount.amount, closed.entry.reason) == (200, "subscription cancelled")
    assert (closed.balance.available, closed.balance.reserved) == (0, 100)
    assert not closed.balance.usable
    assert valid_until_in_sql(app, "churn", bundle) == clock.now()
    # A retry gets the same entry and forfeits nothing more.
    again = await app.handlers.close_bucket(command)
    assert again.entry is not None
    assert again.entry.entry_id == closed.entry.entry_id

    # The session's next minutes come from money, not from the closed bundle; its usage
    # under the old grant is still debited from the units it holds.
    update = await send(app, ccr("c1", UPDATE, 1, "churn", rg(VOICE, seconds(60), seconds(100))))
    assert update.rating_groups[0].granted == seconds(60)
    live = await live_totals(app, "churn")
    assert live[bundle] == (0, 0)
    assert live["main-EUR"] == (money("0.90").amount, money("0.10").amount)
    assert await app.maintenance.forfeit_expired_once() == 0
    assert settled(app, "churn", bundle)
    assert ledger_totals(app, "churn")[bundle] == 0


async def test_a_closed_bucket_stays_closed_after_a_rebuild_from_sql(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "closed", balance="1.00")
    bundle = await add_bucket(
        app, "closed", TIME, 300, valid_until=clock.now() + timedelta(days=30)
    )
    await app.handlers.close_bucket(CloseBucket("closed", bundle, "mistake"))
    closed_at = clock.now()
    assert valid_until_in_sql(app, "closed", bundle) == closed_at
    await app.redis.flushall()
    await app.store.load()
    clock.advance(timedelta(seconds=1))
    answer = await send(app, ccr("c2", INITIAL, 0, "closed", rg(VOICE, seconds(60))))
    assert answer.rating_groups[0].granted == seconds(60)
    live = await live_totals(app, "closed")
    assert live[bundle] == (0, 0)  # rebuilt closed and empty: the grant is money
    assert live["main-EUR"] == (money("0.90").amount, money("0.10").amount)
    assert valid_until_in_sql(app, "closed", bundle) == closed_at


async def test_a_replayed_bucket_record_never_undoes_a_later_change(
    app: ChargingApp, clock: ManualClock
) -> None:
    """The writer may see a bucket's creation record again after its close record (a
    reconciler's retry): SQL applies a bucket record only when its version is newer."""
    await new_account(app, "replay", balance="0")
    created_ends = clock.now() + timedelta(days=30)
    bundle = await add_bucket(app, "replay", TIME, 300, valid_until=created_ends)
    await app.handlers.close_bucket(CloseBucket("replay", bundle, "cancelled"))
    closed_at = clock.now()

    def record(entry_id: str, ends: datetime | None, version: int) -> JournalEntry:
        meta: dict[str, object] = {"u": TIME.key, "p": 100, "o": to_ms(closed_at), "v": version}
        if ends is not None:
            meta["t"] = to_ms(ends)
        return JournalEntry(
            "replay",
            entry_id,
            {"k": "B", "id": entry_id, "at": to_ms(closed_at), "b": bundle, "meta": meta},
        )

    await app.writer.commit([record("replayed-create", created_ends, 0)])
    assert valid_until_in_sql(app, "replay", bundle) == closed_at
    await app.writer.commit([record("same-version", None, 1)])
    assert valid_until_in_sql(app, "replay", bundle) == closed_at
    earlier = closed_at - timedelta(seconds=5)
    await app.writer.commit([record("a-newer-version", earlier, 2)])
    assert valid_until_in_sql(app, "replay", bundle) == earlier


async def test_an_operator_edits_a_live_bucket_and_sql_follows(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "edit", balance="1.00")
    ends = clock.now() + timedelta(hours=1)
    first = await add_bucket(app, "edit", TIME, 60, priority=10, valid_until=ends)
    second = await add_bucket(app, "edit", TIME, 60, priority=20, label="old")

    # Priority decides the draw: after the edit the second bucket goes first.
    command = UpdateBucket("edit", second, priority=5, label="goodwill", request_id="e1")
    edited = await app.handlers.update_bucket(command)
    assert (edited.balance.bucket.priority, edited.balance.bucket.label) == (5, "goodwill")
    assert (await app.handlers.update_bucket(command)).balance == edited.balance  # a retry
    answer = await send(app, ccr("e", INITIAL, 0, "edit", rg(VOICE, seconds(30))))
    assert answer.rating_groups[0].granted == seconds(30)
    live = await live_totals(app, "edit")
    assert (live[first], live[second]) == ((60, 0), (30, 30))

    # A goodwill extension of the first bucket; then it no longer ends at all.
    later = ends + timedelta(days=7)
    extended = await app.handlers.update_bucket(UpdateBucket("edit", first, valid_until=later))
    assert extended.balance.bucket.valid_until == later
    assert valid_until_in_sql(app, "edit", first) == later
    await app.handlers.update_bucket(UpdateBucket("edit", first, clear_valid_until=True))
    assert valid_until_in_sql(app, "edit", first) is None
    with app.uow() as uow:
        row = uow.buckets.get("edit", second)
    assert row is not None
    assert (row.priority, row.label, row.version) == (5, "goodwill", 1)

    # The edits survive Redis losing everything: they are in SQL.
    await app.redis.flushall()
    await app.store.load()
    balance = await app.handlers.balance("edit")
    by_id = {line.bucket.bucket_id: line.bucket for line in balance.lines}
    assert (by_id[second].priority, by_id[second].label) == (5, "goodwill")
    assert by_id[first].valid_until is None


async def test_ended_and_main_buckets_are_not_edited(app: ChargingApp, clock: ManualClock) -> None:
    await new_account(app, "noedit", balance="1.00")
    start = clock.now() + timedelta(hours=2)
    minutes = await add_bucket(
        app, "noedit", TIME, 60, valid_from=start, valid_until=start + timedelta(hours=1)
    )
    with pytest.raises(InvalidArgument) as bad:
        await app.handlers.update_bucket(
            UpdateBucket("noedit", minutes, valid_until=start - timedelta(minutes=1))
        )
    assert [v.field for v in bad.value.violations] == ["bucket.valid_until"]
    with pytest.raises(FailedPrecondition) as main:
        await app.handlers.update_bucket(UpdateBucket("noedit", "main-EUR", priority=1))
    assert main.value.reason == "MAIN_BUCKET"
    clock.advance(timedelta(hours=4))
    with pytest.raises(FailedPrecondition) as ended:
        await app.handlers.update_bucket(
            UpdateBucket("noedit", minutes, valid_until=clock.now() + timedelta(days=1))
        )
    assert ended.value.reason == "BUCKET_ENDED"
    assert valid_until_in_sql(app, "noedit", minutes) == start + timedelta(hours=1)


async def test_an_extended_end_is_announced_again_before_it_comes(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "renew", balance="0")
    ends = clock.now() + timedelta(hours=10)  # inside the 72 h warning
    bundle = await add_bucket(app, "renew", TIME, 300, valid_until=ends)
    app.maintenance.announce_buckets_once()
    later = ends + timedelta(days=30)
    await app.handlers.update_bucket(UpdateBucket("renew", bundle, valid_until=later))
    app.maintenance.announce_buckets_once()  # the new end is a month away: nothing yet
    clock.advance(timedelta(days=29))
    app.maintenance.announce_buckets_once()
    app.maintenance.announce_buckets_once()
    warnings = [p for t, p in outbox_events(app) if t == "BucketExpiring"]
    assert [w["valid_until"] for w in warnings] == [ends.isoformat(), later.isoformat()]
