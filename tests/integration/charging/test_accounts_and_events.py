"""Account states, thresholds, offline usage, one-shot events, bucket rules (CHG-5..11)."""

from __future__ import annotations

from datetime import timedelta

from services.charging.bootstrap import ChargingApp
from services.charging.domain.accounts import BillingMode
from services.charging.domain.credit_control import RequestedAction, RequestType, ResultCode
from services.charging.domain.units import TIME, service_units
from services.common.clock import ManualClock
from services.common.events import EventEnvelope
from tests.integration.charging.support import (
    EMERGENCY,
    SMS,
    VOICE,
    add_bucket,
    ccr,
    eur,
    ledger_totals,
    live_totals,
    money,
    new_account,
    outbox_events,
    rg,
    seconds,
    send,
    sms,
)

INITIAL, UPDATE, TERMINATE, EVENT = (
    RequestType.INITIAL,
    RequestType.UPDATE,
    RequestType.TERMINATE,
    RequestType.EVENT,
)


def envelope(
    event_type: str,
    payload: dict[str, object],
    clock: ManualClock,
    event_id: str,
    source: str = "accounts",
) -> EventEnvelope:
    return EventEnvelope(
        event_id=event_id,
        event_type=event_type,
        source=source,
        aggregate_id=str(payload.get("account_id", "")),
        occurred_at=clock.now(),
        payload=payload,
    )


async def test_suspended_accounts_keep_only_free_services(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "sus", balance="5.00")
    await app.states.handle(
        envelope(
            "AccountStateChanged",
            {
                "account_id": "sus",
                "from_state": "active",
                "to_state": "suspended",
                "reason": "dunning",
            },
            clock,
            "evt-1",
        )
    )
    answer = await send(
        app, ccr("x1", INITIAL, 0, "sus", rg(VOICE, seconds(60)), rg(EMERGENCY, seconds(60)))
    )
    results = {g.rating_group: g.result for g in answer.rating_groups}
    assert results == {VOICE: ResultCode.END_USER_SERVICE_DENIED, EMERGENCY: ResultCode.SUCCESS}
    # A late redelivery of an older event does not undo the newer state.
    clock.advance(timedelta(minutes=1))
    await app.states.handle(envelope("AccountReactivated", {"account_id": "sus"}, clock, "evt-2"))
    stale = envelope(
        "AccountStateChanged", {"account_id": "sus", "to_state": "barred"}, clock, "evt-0"
    )
    stale = EventEnvelope(
        stale.event_id,
        stale.event_type,
        stale.source,
        stale.aggregate_id,
        clock.now() - timedelta(hours=1),
        stale.payload,
    )
    await app.states.handle(stale)
    answer = await send(app, ccr("x2", INITIAL, 0, "sus", rg(VOICE, seconds(60))))
    assert answer.rating_groups[0].result is ResultCode.SUCCESS
    clock.advance(timedelta(minutes=1))
    await app.states.handle(envelope("AccountClosed", {"account_id": "sus"}, clock, "evt-3"))
    answer = await send(app, ccr("x3", INITIAL, 0, "sus", rg(EMERGENCY, seconds(60))))
    assert answer.rating_groups[0].result is ResultCode.END_USER_SERVICE_DENIED
    # The state survives a Redis loss: it is read back from SQL.
    await app.redis.flushdb()
    await app.store.load()
    answer = await send(app, ccr("x4", INITIAL, 0, "sus", rg(VOICE, seconds(60))))
    assert answer.rating_groups[0].result is ResultCode.END_USER_SERVICE_DENIED


async def test_thresholds_are_published_once_when_crossed(app: ChargingApp) -> None:
    await new_account(app, "low", balance="1.00", low_balance="0.50")
    await new_account(app, "post", mode=BillingMode.POSTPAID, credit_limit="1.00")
    for n in range(7):
        await send(
            app,
            ccr(
                f"lo{n}",
                EVENT,
                0,
                "low",
                rg(VOICE, seconds(60)),
                action=RequestedAction.DIRECT_DEBITING,
            ),
        )
        await send(
            app,
            ccr(
                f"po{n}",
                EVENT,
                0,
                "post",
                rg(VOICE, seconds(60)),
                action=RequestedAction.DIRECT_DEBITING,
            ),
        )
    events = outbox_events(app)
    low = [p for t, p in events if t == "BalanceLow"]
    assert low == [
        {
            "account_id": "low",
            "balance": {"amount": "0.400000", "currency": "EUR"},
            "threshold": {"amount": "0.500000", "currency": "EUR"},
        }
    ]
    for _ in range(4):
        await send(
            app,
            ccr(
                f"po-more{_}",
                EVENT,
                0,
                "post",
                rg(VOICE, seconds(60)),
                action=RequestedAction.DIRECT_DEBITING,
            ),
        )
    levels = [p["percent"] for t, p in outbox_events(app) if t == "CreditLimitReached"]
    assert levels == [80, 100]


async def test_offline_usage_is_charged_once_even_when_redelivered(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "off", balance="10.00")
    await new_account(app, "offpost", mode=BillingMode.POSTPAID, credit_limit="5.00")
    records = [
        {
            "record_id": f"cdr-{i}",
            "account_id": account,
            "service": "voice",
            "quantity": "60",
            "unit": "second",
            "amount": {"amount": "1.25", "currency": "EUR"},
            "event_time": "2026-02-28T10:00:00+00:00",
        }
        for i, account in enumerate(["off", "off", "offpost", "unknown-account"])
    ]
    event = envelope(
        "UsageRated", {"file_id": "f1", "records": records}, clock, "u-1", source="rating"
    )
    await app.usage.handle(event)
    await app.usage.handle(event)  # redelivered
    assert ledger_totals(app, "off") == {"main-EUR": money("7.50").amount}
    assert ledger_totals(app, "offpost") == {"main-EUR": -money("1.25").amount}
    # A new event carrying an already charged record (rating retried a batch): once.
    await app.usage.handle(
        envelope(
            "UsageRated", {"file_id": "f1", "records": records[:1]}, clock, "u-2", source="rating"
        )
    )
    assert ledger_totals(app, "off") == {"main-EUR": money("7.50").amount}
    # Prepaid usage that already happened goes below zero rather than being lost.
    await app.usage.handle(
        envelope(
            "UsageRated",
            {
                "records": [
                    {
                        **records[0],
                        "record_id": "big",
                        "amount": {"amount": "20", "currency": "EUR"},
                    }
                ]
            },
            clock,
            "u-3",
            source="rating",
        )
    )
    assert ledger_totals(app, "off") == {"main-EUR": -money("12.50").amount}


async def test_direct_debit_refund_balance_check_and_price_enquiry(app: ChargingApp) -> None:
    await new_account(app, "evt", balance="1.00")
    check = await send(
        app, ccr("e1", EVENT, 0, "evt", rg(SMS, sms(30)), action=RequestedAction.CHECK_BALANCE)
    )
    assert check.rating_groups[0].result is ResultCode.CREDIT_LIMIT_REACHED  # 1.50 > 1.00
    price = await send(
        app, ccr("e2", EVENT, 0, "evt", rg(SMS, sms(30)), action=RequestedAction.PRICE_ENQUIRY)
    )
    assert price.rating_groups[0].cost == eur("1.50")
    debit = await send(
        app, ccr("e3", EVENT, 0, "evt", rg(SMS, sms(10)), action=RequestedAction.DIRECT_DEBITING)
    )
    assert debit.rating_groups[0].cost == eur("0.50")
    again = await send(
        app, ccr("e3", EVENT, 0, "evt", rg(SMS, sms(10)), action=RequestedAction.DIRECT_DEBITING)
    )
    assert again == debit
    refused = await send(
        app, ccr("e4", EVENT, 0, "evt", rg(SMS, sms(11)), action=RequestedAction.DIRECT_DEBITING)
    )
    assert refused.rating_groups[0].result is ResultCode.CREDIT_LIMIT_REACHED
    refund = await send(
        app, ccr("e5", EVENT, 0, "evt", rg(SMS, sms(2)), action=RequestedAction.REFUND_ACCOUNT)
    )
    assert refund.rating_groups[0].cost == eur("0.10")
    assert ledger_totals(app, "evt") == {"main-EUR": money("0.60").amount}


async def test_buckets_apply_only_to_their_services_and_validity(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "bkt", balance="1.00")
    now = clock.now()
    expired = await add_bucket(app, "bkt", TIME, 100, valid_until=now)
    future = await add_bucket(app, "bkt", TIME, 100, valid_from=now + timedelta(days=1))
    data_only = await add_bucket(app, "bkt", TIME, 100, services=frozenset({"data"}))
    voice_group = await add_bucket(
        app, "bkt", TIME, 50, rating_groups=frozenset({VOICE}), priority=5
    )
    answer = await send(app, ccr("b1", INITIAL, 0, "bkt", rg(VOICE, seconds(60))))
    assert answer.rating_groups[0].granted == seconds(50)
    totals = await live_totals(app, "bkt")
    assert totals[voice_group] == (0, 50)
    assert totals[expired] == (100, 0)
    assert totals[future] == (100, 0)
    assert totals[data_only] == (100, 0)
    sms_bucket = await add_bucket(app, "bkt", service_units("sms"), 3)
    answer = await send(app, ccr("b2", INITIAL, 0, "bkt", rg(SMS, sms(5))))
    assert answer.rating_groups[0].granted == sms(3)
    assert (await live_totals(app, "bkt"))[sms_bucket] == (0, 3)


async def test_hybrid_uses_bundles_and_prepaid_money_before_the_credit_line(
    app: ChargingApp,
) -> None:
    await new_account(app, "hyb", mode=BillingMode.HYBRID, credit_limit="0.20")
    prepaid = await add_bucket(
        app,
        "hyb",
        __import__("services.charging.domain.units", fromlist=["money_unit"]).money_unit("EUR"),
        money("0.10").amount,
        label="promo credit",
    )
    answer = await send(app, ccr("h1", INITIAL, 0, "hyb", rg(VOICE, seconds(60))))
    assert answer.rating_groups[0].granted == seconds(60)
    assert (await live_totals(app, "hyb"))[prepaid] == (0, money("0.10").amount)
    answer = await send(app, ccr("h1", UPDATE, 1, "hyb", rg(VOICE, seconds(120), seconds(60))))
    assert answer.rating_groups[0].granted == seconds(120)
    assert (await live_totals(app, "hyb"))["main-EUR"] == (
        -money("0.20").amount,
        money("0.20").amount,
    )
    answer = await send(app, ccr("h2", INITIAL, 0, "hyb", rg(VOICE, seconds(60))))
    assert answer.rating_groups[0].result is ResultCode.CREDIT_LIMIT_REACHED


async def test_expiring_and_expired_buckets_are_announced_once(
    app: ChargingApp, clock: ManualClock
) -> None:
    await new_account(app, "exp", balance="1.00")
    await add_bucket(
        app,
        "exp",
        TIME,
        300,
        valid_until=clock.now() + timedelta(hours=10),
        label="weekend minutes",
    )
    app.maintenance.announce_buckets_once()
    app.maintenance.announce_buckets_once()
    clock.advance(timedelta(hours=11))
    app.maintenance.announce_buckets_once()
    app.maintenance.announce_buckets_once()
    kinds = [t for t, _ in outbox_events(app) if t.startswith("Bucket")]
    assert kinds == ["BucketExpiring", "BucketExpired"]
    expired = next(p for t, p in outbox_events(app) if t == "BucketExpired")
    assert expired["remaining"] == 300
    assert expired["label"] == "weekend minutes"


async def test_accounts_events_set_the_policy_and_state(
    app: ChargingApp, clock: ManualClock
) -> None:
    facts: dict[str, object] = {
        "account_id": "from-accounts",
        "customer_id": "cus-1",
        "currency_code": "EUR",
        "payment_mode": "POSTPAID",
        "credit_limit": {"amount": "50.00", "currency": "EUR"},
        "state": "ACTIVE",
        "create_time": clock.now().isoformat(),
    }
    await app.states.handle(envelope("AccountCreated", facts, clock, "acc-1"))
    view = await app.handlers.get_policy("from-accounts")
    assert view.policy.mode is BillingMode.POSTPAID
    assert view.policy.credit_limit == money("50.00").amount
    answer = await send(app, ccr("fa", INITIAL, 0, "from-accounts", rg(VOICE, seconds(60))))
    assert answer.rating_groups[0].result is ResultCode.SUCCESS
    clock.advance(timedelta(minutes=1))
    await app.states.handle(
        envelope(
            "AccountStateChanged",
            {
                "account_id": "from-accounts",
                "customer_id": "cus-1",
                "from_state": "ACTIVE",
                "to_state": "BARRED",
                "reason": "fraud",
                "change_time": clock.now().isoformat(),
            },
            clock,
            "acc-2",
        )
    )
    answer = await send(app, ccr("fb", INITIAL, 0, "from-accounts", rg(VOICE, seconds(60))))
    assert answer.rating_groups[0].result is ResultCode.END_USER_SERVICE_DENIED
    updated = {
        **facts,
        "payment_mode": "PREPAID",
        "credit_limit": None,
        "state": "BARRED",
        "update_time": clock.now().isoformat(),
    }
    await app.states.handle(envelope("AccountUpdated", updated, clock, "acc-3"))
    assert (await app.handlers.get_policy("from-accounts")).policy.mode is BillingMode.PREPAID


async def test_an_older_account_update_never_overwrites_a_newer_one(
    app: ChargingApp, clock: ManualClock
) -> None:
    start = clock.now()

    def facts(limit: str, at_minutes: int, **extra: object) -> dict[str, object]:
        return {
            "account_id": "ordered",
            "customer_id": "cus-2",
            "currency_code": "EUR",
            "payment_mode": "POSTPAID",
            "credit_limit": {"amount": limit, "currency": "EUR"},
            "state": "ACTIVE",
            **extra,
            "update_time": (start + timedelta(minutes=at_minutes)).isoformat(),
        }

    created = {**facts("50.00", 0), "create_time": start.isoformat()}
    created.pop("update_time")
    await app.states.handle(envelope("AccountCreated", created, clock, "ord-0"))
    # The limit was raised to 60 at minute 1 and to 80 at minute 2; the events arrive
    # in the other order (the first was redelivered after the second).
    await app.states.handle(envelope("AccountUpdated", facts("80.00", 2), clock, "ord-2"))
    await app.states.handle(envelope("AccountUpdated", facts("60.00", 1), clock, "ord-1"))
    view = await app.handlers.get_policy("ordered")
    assert view.policy.credit_limit == money("80.00").amount
    # A newer one still applies.
    await app.states.handle(envelope("AccountUpdated", facts("90.00", 3), clock, "ord-3"))
    assert (await app.handlers.get_policy("ordered")).policy.credit_limit == money("90.00").amount
