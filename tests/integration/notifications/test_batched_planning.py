"""Planning in batches (ADR 0082), on SQLite and PostgreSQL: ``plan_events`` queues what
``plan_event`` one event after another queues, in one transaction; duplicates and events
handled before plan nothing; the consumer hands it a read's events and, when the batch
fails, plans each event on its own."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import Engine, delete, func, select

from services.common.clock import ManualClock
from services.common.db import make_engine
from services.common.events import EventEnvelope, stream_for
from services.common.migrations import upgrade_to_head
from services.notifications.adapters.orm import kit, messages
from services.notifications.adapters.templates import JinjaRenderer
from services.notifications.adapters.unit_of_work import (
    SqlNotificationsUnitOfWork,
    session_factory,
)
from services.notifications.bootstrap import MIGRATIONS, load_rules
from services.notifications.config import DEFAULT_RULES
from services.notifications.domain.model import Channel, Preference, WebhookEndpoint
from services.notifications.entrypoints import event_consumers
from services.notifications.service_layer import handlers
from tests.conftest import TestDatabase

NOW = datetime(2027, 1, 15, 12, tzinfo=UTC)
PLANNING = handlers.Planning(load_rules(DEFAULT_RULES, JinjaRenderer()))

UowFactory = Callable[[], SqlNotificationsUnitOfWork]


@pytest.fixture
def engine(database: TestDatabase) -> Iterator[Engine]:
    engine = make_engine(database.url, database.schema, instrument=False)
    upgrade_to_head(engine, MIGRATIONS)
    yield engine
    engine.dispose()


@pytest.fixture
def uow(engine: Engine) -> UowFactory:
    sessions = session_factory(engine)
    clock = ManualClock(NOW)
    return lambda: SqlNotificationsUnitOfWork(sessions, clock=clock)


def _event(
    event_id: str,
    event_type: str,
    source: str,
    payload: dict[str, Any],
    occurred_at: datetime = NOW,
) -> EventEnvelope:
    return EventEnvelope(event_id, event_type, source, "", occurred_at, payload)


def _story(p: str) -> list[EventEnvelope]:
    """A customer's events, every id prefixed with ``p`` so two runs share one database."""
    return [
        # Before the contact is known: no e-mail (as one by one), the webhook still.
        _event(f"{p}evt_0", "InvoiceIssued", "invoicing", {
            "invoice_id": f"{p}inv_0", "customer_id": f"{p}cus", "number": f"{p}N-0",
            "amount_due": {"amount": "1.00", "currency": "EUR"}}),
        _event(f"{p}evt_1", "CustomerCreated", "accounts", {
            "customer_id": f"{p}cus", "email": f"{p}ada@example.com", "display_name": "Ada",
            "phone_number": "+31612345678", "language_code": "nl", "group_id": ""}),
        _event(f"{p}evt_2", "AccountCreated", "accounts", {
            "account_id": f"{p}acc", "customer_id": f"{p}cus", "time_zone": "Europe/Amsterdam"}),
        _event(f"{p}evt_3", "InvoiceIssued", "invoicing", {
            "invoice_id": f"{p}inv_1", "customer_id": f"{p}cus", "number": f"{p}N-1",
            "amount_due": {"amount": "121.00", "currency": "EUR"}}),
        # Charging names the account only: the link learnt two events ago finds the customer.
        _event(f"{p}evt_4", "BalanceLow", "charging", {
            "account_id": f"{p}acc", "balance": {"amount": "2.00", "currency": "EUR"},
            "threshold": {"amount": "5.00", "currency": "EUR"}}),
        # Names the invoice by the number learnt from evt_3 (and one never seen).
        _event(f"{p}evt_5", "PaymentSucceeded", "payments", {
            "payment_id": f"{p}pay", "account_id": f"{p}acc", "customer_id": f"{p}cus",
            "invoice_ids": [f"{p}inv_1", f"{p}inv_x"],
            "amount": {"amount": "121.00", "currency": "EUR"}}),
        # The address changes; the next invoice goes to the new one.
        _event(f"{p}evt_6", "CustomerUpdated", "accounts", {
            "customer_id": f"{p}cus", "email": f"{p}ada@new.example.com", "display_name": "Ada",
            "language_code": "fr", "group_id": ""}),
        _event(f"{p}evt_7", "InvoiceIssued", "invoicing", {
            "invoice_id": f"{p}inv_2", "customer_id": f"{p}cus", "number": f"{p}N-2",
            "amount_due": {"amount": "3.00", "currency": "EUR"}}),
        # Too old to notify about: its invoice number is still learnt.
        _event(f"{p}evt_8", "InvoiceIssued", "invoicing", {
            "invoice_id": f"{p}inv_3", "customer_id": f"{p}cus", "number": f"{p}N-3"},
            occurred_at=NOW - timedelta(days=4)),
        # Bookkeeping between services: no webhook.
        _event(f"{p}evt_9", "UsageRated", "rating", {"account_id": f"{p}acc"}),
    ]  # fmt: skip


def _endpoint(endpoint_id: str, event_types: list[str], *, enabled: bool = True) -> WebhookEndpoint:
    return WebhookEndpoint(
        endpoint_id, "https://hooks.example.com/x", event_types, "whsec_x", "ops@example.com",
        "", enabled, NOW,
    )  # fmt: skip


def _add_endpoints(uow: UowFactory, *endpoints: WebhookEndpoint) -> None:
    with uow() as unit:
        for endpoint in endpoints:
            unit.endpoints.add(endpoint)
        unit.commit()


def _rows(engine: Engine, prefix: str) -> list[str]:
    """Every message of the run with ``prefix``, in a form two runs can be compared in."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(messages).where(messages.c.event_id.like(f"{prefix}%"))
        ).mappings()
        found = []
        for row in rows:
            kept = {k: v for k, v in row.items() if k not in ("message_id", "trace_context")}
            found.append(json.dumps(kept, default=str, sort_keys=True).replace(prefix, "P_"))
    return sorted(found)


def _count(engine: Engine, table: Any = messages) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_batch_queues_what_one_event_after_another_queues(
    engine: Engine, uow: UowFactory
) -> None:
    _add_endpoints(
        uow, _endpoint("whe_all", []), _endpoint("whe_inv", ["InvoiceIssued"]),
        _endpoint("whe_off", [], enabled=False),
    )  # fmt: skip
    with uow() as unit:  # SMS of a payment needs the opt-in; quiet hours move the SMS
        for p in ("batch_", "single_"):
            unit.preferences.add(Preference(f"{p}cus", Channel.SMS, opted_in=True,
                                            quiet_start=time(8), quiet_end=time(18)))  # fmt: skip
            unit.preferences.add(Preference(f"{p}cus", Channel.EMAIL, wants_einvoice=True))
        unit.commit()

    batched = handlers.plan_events(_story("batch_"), uow(), PLANNING)
    one_by_one = sum(handlers.plan_event(e, uow(), PLANNING) for e in _story("single_"))

    assert batched == one_by_one
    assert _rows(engine, "batch_") == _rows(engine, "single_")
    rows = [json.loads(r) for r in _rows(engine, "batch_")]
    by_event: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_event.setdefault(row["event_id"], []).append((row["channel"], row["recipient"]))
    mails = {e: sorted(r for c, r in v if c != "WEBHOOK") for e, v in by_event.items()}
    assert mails["P_evt_0"] == []  # the contact was not known yet
    assert mails["P_evt_3"] == ["P_ada@example.com"]  # learnt earlier in the same batch
    assert mails["P_evt_4"] == ["+31612345678", "P_ada@example.com"]  # through the link
    assert mails["P_evt_7"] == ["P_ada@new.example.com"]  # the update earlier in the batch
    assert "P_evt_8" not in by_event  # too old
    payment = next(r for r in rows if r["event_id"] == "P_evt_5" and r["channel"] == "EMAIL")
    assert payment["payload"]["invoices"] == [
        {"invoice_id": "P_inv_1", "number": "P_N-1"},
        {"invoice_id": "P_inv_x", "number": "P_inv_x"},
    ]
    invoice = next(r for r in rows if r["event_id"] == "P_evt_7" and r["channel"] == "EMAIL")
    assert invoice["language"] == "fr"
    assert invoice["payload"]["attach"] == ["invoice_pdf", "einvoice_xml"]
    # One webhook per event and endpoint that wants it; none to the disabled endpoint,
    # none for rating's bookkeeping, none for the too-old event.
    hooks = sorted((e, r) for e, v in by_event.items() for c, r in v if c == "WEBHOOK")
    wanted = [f"P_evt_{i}" for i in range(8)]
    invoices = ["P_evt_0", "P_evt_3", "P_evt_7"]
    assert hooks == sorted([(e, "whe_all") for e in wanted] + [(e, "whe_inv") for e in invoices])
    # The same MessageStatusChanged rows (e-mail and SMS only) as one by one.
    mails_made = sum(len(v) for v in mails.values())
    assert _count(engine, kit.outbox) == 2 * mails_made


def test_duplicates_and_events_handled_before_plan_nothing(engine: Engine, uow: UowFactory) -> None:
    _add_endpoints(uow, _endpoint("whe_all", []))
    first, second, third = (
        _event(f"evt_{i}", "InvoiceVoided", "invoicing", {"invoice_id": f"inv_{i}"})
        for i in range(3)
    )
    assert handlers.plan_events([first, first, second, first], uow(), PLANNING) == 2
    assert handlers.plan_events([second, third, third], uow(), PLANNING) == 1
    with engine.connect() as connection:
        planned = sorted(connection.execute(select(messages.c.event_id)).scalars())
        inbox = connection.execute(select(func.count()).select_from(kit.processed_events))
        assert inbox.scalar_one() == 3
    assert planned == ["evt_0", "evt_1", "evt_2"]


def test_a_redelivered_batch_queues_nothing_new_even_without_its_inbox_rows(
    engine: Engine, uow: UowFactory
) -> None:
    _add_endpoints(uow, _endpoint("whe_all", []))
    story = _story("b_")
    planned = handlers.plan_events(story, uow(), PLANNING)
    assert planned > 0
    before = (_count(engine), _count(engine, kit.outbox))
    assert handlers.plan_events(story, uow(), PLANNING) == 0
    assert handlers.plan_events(list(reversed(story)), uow(), PLANNING) == 0
    # The inbox pruned (or lost): the messages' unique keys still keep the batch from
    # queueing anything twice. (evt_0 is left out: planned again now, it would find the
    # contact it came too early for, and e-mail, as plan_event would.)
    with engine.begin() as connection:
        connection.execute(delete(kit.processed_events))
    assert handlers.plan_events(story[1:], uow(), PLANNING) == 0
    assert (_count(engine), _count(engine, kit.outbox)) == before


def test_a_batch_conflicting_with_a_concurrent_one_is_retried_whole(
    engine: Engine, uow: UowFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add_endpoints(uow, _endpoint("whe_all", []))
    events = [_event(f"evt_{i}", "InvoiceVoided", "invoicing", {"invoice_id": "i"}) for i in (1, 2)]
    handlers.plan_event(events[1], uow(), PLANNING)  # another consumer planned evt_2
    real = SqlNotificationsUnitOfWork.mark_processed_many
    calls: list[int] = []

    def racing(self: SqlNotificationsUnitOfWork, consumer: str, ids: Any) -> list[str]:
        calls.append(len(ids))
        if len(calls) > 1:
            return real(self, consumer, ids)
        # The inbox read ran just before the other consumer committed evt_2: the
        # multi-row INSERT then meets its row.
        session: Any = self.session
        session.scalars = lambda *args, **kwargs: iter(())
        try:
            return real(self, consumer, ids)
        finally:
            del session.scalars

    monkeypatch.setattr(SqlNotificationsUnitOfWork, "mark_processed_many", racing)
    assert event_consumers.plan_batch_with_retries(events, uow, PLANNING) == 1
    assert calls == [2, 2]  # ABORTED, then the whole batch again: evt_1 alone is new
    with engine.connect() as connection:
        assert sorted(connection.execute(select(messages.c.event_id)).scalars()) == [
            "evt_1",
            "evt_2",
        ]


async def test_the_consumer_plans_a_read_at_once_and_a_failed_batch_one_by_one(
    engine: Engine,
    uow: UowFactory,
    redis_client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _add_endpoints(uow, _endpoint("whe_all", []))
    stream = stream_for("invoicing")
    batches: list[int] = []
    real = handlers.plan_events

    def watched(envelopes: Any, unit: Any, planning: Any, **options: Any) -> int:
        batches.append(len(envelopes))
        if len(envelopes) > 1 and failing:
            raise RuntimeError("the batch cannot be planned")
        return real(envelopes, unit, planning, **options)

    monkeypatch.setattr(handlers, "plan_events", watched)
    woken: list[int] = []
    consumer = event_consumers.notifications_consumer(
        redis_client, uow, PLANNING, on_planned=lambda: woken.append(1)
    )
    await consumer.ensure_groups()

    async def publish(names: range) -> None:
        for i in names:  # untraced: one group in the read
            event = _event(f"evt_{i}", "InvoiceVoided", "invoicing", {"invoice_id": f"inv_{i}"})
            await redis_client.xadd(stream, {"envelope": event.to_json()})

    failing = False
    await publish(range(0, 4))
    assert await consumer.consume_once(block_ms=50) == 4
    assert batches == [4]
    assert _count(engine) == 4

    failing = True
    batches.clear()
    await publish(range(4, 7))
    assert await consumer.consume_once(block_ms=50) == 3
    assert batches == [3, 1, 1, 1]  # the batch failed, then each event on its own
    assert _count(engine) == 7
    assert (await redis_client.xpending(stream, consumer.group))["pending"] == 0

    # The whole read delivered again (a consumer that died before acknowledging): nothing.
    failing = False
    batches.clear()
    await publish(range(0, 7))
    assert await consumer.consume_once(block_ms=50) == 7
    assert batches == [7]
    assert _count(engine) == 7
    assert len(woken) == 4  # once per call that queued something: the batch, 3 singles
