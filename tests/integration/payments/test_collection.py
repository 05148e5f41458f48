"""Collections on a real database: test cards, idempotency, the janitor, retries, allocation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from services.common.errors import Aborted, FailedPrecondition, InvalidArgument
from services.payments.adapters.sandbox import NEVER_ANSWERS
from services.payments.domain.model import Channel, PaymentState, Purpose
from services.payments.service_layer.commands import CollectInvoice, CreatePayment
from tests.integration.payments.conftest import PaymentsWorld, eur


def pay(world: PaymentsWorld, account: str, amount: str, request_id: str, **extra: object):  # type: ignore[no-untyped-def]
    return world.collector.create_payment(
        CreatePayment(
            account_id=account,
            amount=eur(amount),
            channel=extra.pop("channel", Channel.ONLINE_CARD),  # type: ignore[arg-type]
            request_id=request_id,
            **extra,  # type: ignore[arg-type]
        )
    )


def test_an_issued_invoice_is_collected_from_the_card_and_marked_paid(world: PaymentsWorld) -> None:
    world.card("acc1")
    world.invoicing.issue("inv1", "acc1", "42.50")
    payment = world.collector.collect_invoice(CollectInvoice("inv1", "acc1", eur("42.50")))
    assert payment is not None
    assert payment.state is PaymentState.SUCCEEDED
    assert payment.channel is Channel.ONLINE_CARD
    assert world.invoicing.due("inv1") == eur("0")
    assert world.outbox_types() == ["PaymentSucceeded"]
    # The event arrives twice: still one payment, one charge.
    again = world.collector.collect_invoice(CollectInvoice("inv1", "acc1", eur("42.50")))
    assert again is not None
    assert again.payment_id == payment.payment_id
    assert world.sandbox.charges_made == 1


def test_five_retries_of_one_request_make_one_charge(world: PaymentsWorld) -> None:
    world.card("acc1")
    world.invoicing.issue("inv1", "acc1", "10")

    def attempt() -> str:
        for _ in range(50):
            try:
                return str(pay(world, "acc1", "10", "same-key").payment_id)
            except Aborted:
                continue
        raise AssertionError("never got through")

    with ThreadPoolExecutor(5) as pool:
        ids = set(pool.map(lambda _: attempt(), range(5)))
    ids.add(pay(world, "acc1", "10", "same-key").payment_id)
    assert len(ids) == 1
    assert world.sandbox.charges_made == 1
    assert world.invoicing.due("inv1") == eur("0")
    with pytest.raises(InvalidArgument) as refused:
        pay(world, "acc1", "11", "same-key")
    assert refused.value.violations[0].field == "request_id"


def test_a_crash_after_the_provider_answered_is_resolved_by_the_janitor_once(
    world: PaymentsWorld,
) -> None:
    world.card("acc1")
    world.invoicing.issue("inv1", "acc1", "30")

    def crash(_: str) -> None:
        raise SystemExit("process killed between the provider call and the commit")

    world.collector.after_provider_call = crash
    with pytest.raises(SystemExit):
        world.collector.collect_invoice(CollectInvoice("inv1", "acc1", eur("30")))
    world.collector.after_provider_call = None
    assert world.sandbox.charges_made == 1
    with world.uow() as uow:
        (payment,) = uow.payments.history(account_id="acc1", limit=10)
        assert payment.state is PaymentState.PENDING
    assert world.collector.run_janitor() == 0  # not before 5 minutes
    world.clock.advance(timedelta(minutes=5))
    assert world.collector.run_janitor() == 1
    world.clock.advance(timedelta(days=7))
    assert world.collector.run_janitor() == 0
    assert world.collector.run_retries() == 0
    with world.uow() as uow:
        resolved = uow.payments.get(payment.payment_id)
        assert resolved is not None
        assert resolved.state is PaymentState.SUCCEEDED
    assert world.sandbox.charges_made == 1
    assert world.invoicing.due("inv1") == eur("0")
    assert world.outbox_types() == ["PaymentSucceeded"]


def test_a_lost_answer_stays_unknown_until_the_janitor_asks(world: PaymentsWorld) -> None:
    world.card("acc1", NEVER_ANSWERS)
    world.invoicing.issue("inv1", "acc1", "8")
    payment = world.collector.collect_invoice(CollectInvoice("inv1", "acc1", eur("8")))
    assert payment is not None
    assert payment.state is PaymentState.UNKNOWN
    assert world.invoicing.due("inv1") == eur("8")  # never guessed
    world.sandbox.answering = False
    world.clock.advance(timedelta(minutes=5))
    world.collector.run_janitor()
    assert world.state(payment.payment_id) is PaymentState.UNKNOWN
    world.sandbox.answering = True
    world.clock.advance(timedelta(hours=1))
    world.collector.run_janitor()
    assert world.state(payment.payment_id) is PaymentState.SUCCEEDED
    assert world.sandbox.charges_made == 1
    assert world.invoicing.due("inv1") == eur("0")


def test_soft_declines_follow_the_schedule_and_a_hard_decline_stops_it(
    world: PaymentsWorld,
) -> None:
    method = world.card("acc1", "4000000000009995")  # insufficient funds
    world.invoicing.issue("inv1", "acc1", "20")
    payment = world.collector.collect_invoice(CollectInvoice("inv1", "acc1", eur("20")))
    assert payment is not None
    first_failure = world.clock.now()
    retries = []
    for _day in range(1, 8):
        world.clock.advance(timedelta(days=1))
        if world.collector.run_retries():
            retries.append((world.clock.now() - first_failure).days)
    assert retries == [1, 3, 5, 7]
    failed = world.payment(payment.payment_id)
    assert failed.state is PaymentState.FAILED
    assert [a.decline_code for a in failed.attempts] == ["insufficient_funds"] * 5
    assert failed.next_retry_at is None
    assert world.outbox_types() == ["PaymentFailed"] * 5
    assert method.card_last4 == "9995"

    world.card("acc2", "4000000000009987")  # lost card: hard decline
    world.invoicing.issue("inv2", "acc2", "20")
    lost = world.collector.collect_invoice(CollectInvoice("inv2", "acc2", eur("20")))
    assert lost is not None
    assert lost.hard_decline
    assert lost.next_retry_at is None
    world.clock.advance(timedelta(days=8))
    assert world.collector.run_retries() == 0
    assert len(world.payment(lost.payment_id).attempts) == 1


def test_a_group_schedule_is_used_and_the_last_try_can_succeed(world: PaymentsWorld) -> None:
    world.methods.set_retry_schedule("gold", [2])
    world.card("acc1", "4000000000000119")  # processing error: retryable
    from services.payments.service_layer.commands import UpdateSettings

    world.methods.update_settings(UpdateSettings("acc1", group_id="gold"))
    world.invoicing.issue("inv1", "acc1", "5")
    payment = world.collector.collect_invoice(CollectInvoice("inv1", "acc1", eur("5")))
    assert payment is not None
    assert payment.retry_days == "2"
    good = world.card("acc1")  # the customer adds a working card before the retry
    with world.uow() as uow:
        stored = uow.payments.get(payment.payment_id)
        assert stored is not None
        stored.method_id = good.method_id
        uow.commit()
    world.clock.advance(timedelta(days=1))
    assert world.collector.run_retries() == 0
    world.clock.advance(timedelta(days=1))
    assert world.collector.run_retries() == 1
    assert world.state(payment.payment_id) is PaymentState.SUCCEEDED
    assert world.invoicing.due("inv1") == eur("0")


def test_a_manual_payment_settles_oldest_first_and_the_rest_becomes_credit(
    world: PaymentsWorld,
) -> None:
    world.card("acc1")
    world.invoicing.issue("new", "acc1", "30", days_ago=1)
    world.invoicing.issue("old", "acc1", "50", days_ago=40)
    payment = pay(world, "acc1", "100", "r1", channel=Channel.CASH_DESK)
    assert payment.state is PaymentState.SUCCEEDED
    assert {(a.invoice_id, a.amount) for a in payment.allocations} == {
        ("old", eur("50")),
        ("new", eur("30")),
    }
    assert world.invoicing.due("old") == eur("0")
    assert world.invoicing.due("new") == eur("0")
    assert world.invoicing.credit["acc1"] == eur("20")
    assert payment.credit == eur("20")


def test_a_prepaid_top_up_credits_charging_once(world: PaymentsWorld) -> None:
    world.card("acc1")
    for _ in range(3):
        pay(world, "acc1", "15", "topup-1", purpose=Purpose.TOP_UP)
    world.collector.run_effects()
    assert world.charging.balances["acc1"] == eur("15")
    assert world.sandbox.charges_made == 1


def test_bad_payments_are_refused_and_write_nothing(world: PaymentsWorld) -> None:
    world.card("acc1")
    world.invoicing.issue("inv1", "acc1", "10")
    world.invoicing.issue("other", "acc2", "10")
    before = world.row_counts()
    with pytest.raises(InvalidArgument) as unknown:
        pay(world, "acc1", "10", "b1", invoice_ids=("nope",))
    assert unknown.value.violations[0].field == "payment.invoice_ids[0]"
    with pytest.raises(InvalidArgument):
        pay(world, "acc1", "10", "b2", invoice_ids=("other",))
    with pytest.raises(FailedPrecondition) as beyond:
        pay(world, "acc1", "20", "b3", invoice_ids=("inv1",), invoice_amounts=(eur("15"),))
    assert beyond.value.reason == "ALLOCATION_EXCEEDS_DUE"
    from services.common.money import Money

    with pytest.raises(InvalidArgument) as currency:
        world.collector.create_payment(
            CreatePayment("acc1", Money.of("10", "USD"), Channel.ONLINE_CARD, "b4")
        )
    assert currency.value.violations[0].field == "payment.amount.currency_code"
    assert world.row_counts() == before
    assert world.sandbox.charges_made == 0


def test_refunds_full_and_partial_and_a_chargeback_reopen_the_invoice(
    world: PaymentsWorld,
) -> None:
    from services.payments.service_layer.commands import RecordChargeback, Refund

    world.card("acc1")
    world.invoicing.issue("inv1", "acc1", "100")
    payment = world.collector.collect_invoice(CollectInvoice("inv1", "acc1", eur("100")))
    assert payment is not None
    part = world.methods.refund(Refund(payment.payment_id, eur("30"), "r1", "goodwill"))
    assert part.state is PaymentState.SUCCEEDED
    assert part.provider_reference
    assert world.invoicing.due("inv1") == eur("30")
    again = world.methods.refund(Refund(payment.payment_id, eur("30"), "r1", "goodwill"))
    assert again.payment_id == part.payment_id
    assert world.invoicing.due("inv1") == eur("30")
    with pytest.raises(InvalidArgument):
        world.methods.refund(Refund(payment.payment_id, eur("80"), "r2"))
    chargeback = world.methods.chargeback(
        RecordChargeback(payment.payment_id, None, "cb1", "fraudulent")
    )
    assert chargeback.amount == eur("70")
    assert world.invoicing.due("inv1") == eur("100")
    assert world.payment(payment.payment_id).refundable == eur("0")
    with pytest.raises(InvalidArgument):
        world.methods.refund(Refund(payment.payment_id, None, "r3"))
    assert world.outbox_types() == ["PaymentSucceeded", "PaymentRefunded", "ChargebackReceived"]
    assert any('"reason":"fraudulent"' in p for p in world.outbox_payloads())


def test_no_retry_charges_an_invoice_paid_another_way(world: PaymentsWorld) -> None:
    world.card("acc1", "4000000000009995")  # insufficient funds
    world.invoicing.issue("inv1", "acc1", "20")
    payment = world.collector.collect_invoice(CollectInvoice("inv1", "acc1", eur("20")))
    assert payment is not None
    assert payment.next_retry_at is not None
    pay(world, "acc1", "20", "desk", channel=Channel.CASH_DESK, invoice_ids=("inv1",))
    assert world.invoicing.due("inv1") == eur("0")
    world.clock.advance(timedelta(days=8))
    assert world.collector.run_retries() == 0
    stopped = world.payment(payment.payment_id)
    assert stopped.next_retry_at is None
    assert len(stopped.attempts) == 1


def test_a_provider_that_stops_answering_mid_run_charges_nothing_twice(
    world: PaymentsWorld,
) -> None:
    from services.common.errors import Unavailable

    world.card("acc1")
    world.invoicing.issue("inv1", "acc1", "12")
    world.sandbox.answering = False
    payment = world.collector.collect_invoice(CollectInvoice("inv1", "acc1", eur("12")))
    assert payment is not None
    assert payment.state is PaymentState.UNKNOWN
    with pytest.raises(Unavailable):
        world.card("acc2")
    world.clock.advance(timedelta(minutes=5))
    world.collector.run_janitor()  # still silent: asked again later
    assert world.state(payment.payment_id) is PaymentState.UNKNOWN
    world.sandbox.answering = True
    world.clock.advance(timedelta(hours=1))
    world.collector.run_janitor()  # the request never arrived: a soft failure, retried
    failed = world.payment(payment.payment_id)
    assert failed.state is PaymentState.FAILED
    assert failed.decline_code == "not_received"
    assert world.sandbox.charges_made == 0
    world.clock.advance(timedelta(days=1))
    assert world.collector.run_retries() == 1
    assert world.state(payment.payment_id) is PaymentState.SUCCEEDED
    assert world.sandbox.charges_made == 1
    assert world.invoicing.due("inv1") == eur("0")


def test_a_refund_recorded_while_the_payment_changes_is_recorded_once(
    world: PaymentsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The provider has refunded; while the answer is being recorded the payment moves on
    # in another transaction (as the effects runner marking its effects done does), so
    # the recording aborts. It is read and recorded again: one refund, no error.
    from services.payments.domain.events import PaymentRefunded
    from services.payments.service_layer.commands import Refund

    if world.engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: the other transaction would wait for this one")
    world.card("acc1")
    world.invoicing.issue("inv1", "acc1", "100")
    payment = world.collector.collect_invoice(CollectInvoice("inv1", "acc1", eur("100")))
    assert payment is not None
    real_factory = world.methods.uow_factory
    interfered: list[str] = []

    def factory():  # type: ignore[no-untyped-def]
        uow = real_factory()
        real_commit = uow.commit

        def commit() -> None:
            if not interfered and any(isinstance(e, PaymentRefunded) for e in uow.pending_events):
                interfered.append(payment.payment_id)
                with real_factory() as other:
                    moved = other.payments.get(payment.payment_id)
                    assert moved is not None
                    moved.effects_pending = not moved.effects_pending
                    other.commit()
            real_commit()

        uow.commit = commit  # type: ignore[method-assign]
        return uow

    monkeypatch.setattr(world.methods, "uow_factory", factory)
    refund = world.methods.refund(Refund(payment.payment_id, eur("40"), "r1", "goodwill"))
    assert interfered
    assert refund.amount == eur("40")
    assert world.payment(payment.payment_id).refundable == eur("60")
    assert world.outbox_types() == ["PaymentSucceeded", "PaymentRefunded"]
    assert world.invoicing.due("inv1") == eur("40")
    assert len(world.sandbox._refunds) == 1  # one refund at the provider
