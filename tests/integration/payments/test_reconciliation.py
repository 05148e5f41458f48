"""The reconciliation report against the sandbox PSP's settlement and payouts (SQLite, PostgreSQL).

Recorded payments per day and channel are set against what the provider moved
(charges less fees, refunds) and paid out; every disagreement names the payment.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.common.money import Money
from services.payments.adapters.sandbox import SandboxProvider
from services.payments.domain.model import Channel, MethodKind
from services.payments.service_layer.commands import AddPaymentMethod, CreatePayment, Refund
from services.payments.service_layer.reconciliation import ChannelTotals
from services.payments.service_layer.statements import Statements
from tests.integration.payments.conftest import PaymentsWorld, eur

DAY = date(2026, 3, 1)


@pytest.fixture
def statements(world: PaymentsWorld) -> Statements:
    return Statements(
        world.collector.uow_factory, world.collector, world.invoicing, world.clock, world.sandbox
    )


def pay(world: PaymentsWorld, account: str, amount: str, channel: Channel, key: str) -> str:
    return world.collector.create_payment(
        CreatePayment(account, eur(amount), channel, request_id=key)
    ).payment_id


def row(totals: list[ChannelTotals], channel: Channel) -> ChannelTotals:
    (found,) = [t for t in totals if t.channel is channel]
    return found


def test_a_day_that_agrees_with_the_provider_and_its_payout(
    world: PaymentsWorld, statements: Statements
) -> None:
    world.card("acc1")
    world.invoicing.issue("inv1", "acc1", "100")
    paid = pay(world, "acc1", "100.00", Channel.ONLINE_CARD, "p1")
    world.methods.refund(Refund(paid, eur("20.00"), "r1"))
    pay(world, "acc1", "5.00", Channel.CASH_DESK, "desk")  # no provider behind the desk
    report = statements.report(DAY)
    assert report.provider == "sandbox"
    assert report.provider_error == ""
    cards = row(report.totals, Channel.ONLINE_CARD)
    assert (cards.payments, cards.collected, cards.reversed) == (1, eur("100"), eur("20"))
    assert cards.provider_gross == eur("80.00")
    assert cards.provider_fees == eur("1.75")
    assert cards.provider_net == eur("78.25")
    assert cards.difference == eur("0")
    assert cards.differences == ()
    desk = row(report.totals, Channel.CASH_DESK)
    assert (desk.collected, desk.provider_gross, desk.difference) == (eur("5"), None, None)
    assert report.payouts == []
    # The next day the provider pays the day out; the report of that day shows it.
    world.clock.advance(timedelta(days=1))
    (payout,) = statements.report(DAY + timedelta(days=1)).payouts
    assert (payout.amount, payout.arrival_date) == (eur("78.25"), DAY + timedelta(days=1))


def test_a_direct_debit_settles_on_its_channel_with_its_own_fee(
    world: PaymentsWorld, statements: Statements
) -> None:
    world.methods.add_method(
        AddPaymentMethod(
            "dd1",
            "cus_dd1",
            "EUR",
            MethodKind.SEPA_DEBIT,
            iban="DE89370400440532013000",
            mandate_reference="M-1",
            mandate_signed_on=DAY,
        )
    )
    payment_id = pay(world, "dd1", "30.00", Channel.DIRECT_DEBIT, "dd")
    world.clock.advance(timedelta(days=2))
    world.sandbox.settle_due()
    world.collector.run_janitor()  # asks the provider: settled
    assert world.payment(payment_id).settled_at is not None
    debits = row(statements.report(DAY + timedelta(days=2)).totals, Channel.DIRECT_DEBIT)
    assert (debits.collected, debits.provider_gross) == (eur("30.00"), eur("30.00"))
    assert debits.provider_fees == eur("0.35")
    assert debits.differences == ()


def test_differences_name_the_payments_and_references_concerned(
    world: PaymentsWorld, statements: Statements
) -> None:
    card = world.card("acc1")
    recorded = pay(world, "acc1", "40.00", Channel.ONLINE_CARD, "p1")
    # Money the provider moved that Reckon never recorded (a charge made at the PSP itself).
    outside = world.sandbox.charge(token=card.token, amount=eur("9.99"), idempotency_key="manual")
    world.clock.advance(timedelta(days=1))
    late = pay(world, "acc1", "12.00", Channel.ONLINE_CARD, "p2")
    report = statements.report(DAY)
    cards = row(report.totals, Channel.ONLINE_CARD)
    kinds = {(d.kind, d.payment_id, d.provider_reference) for d in cards.differences}
    assert kinds == {("NOT_RECORDED", "", outside.provider_reference)}
    assert cards.provider_gross == eur("49.99")
    assert cards.difference == eur("-9.99")
    # A provider that lost its memory (another sandbox) has none of the day's payments.
    amnesiac = Statements(
        world.collector.uow_factory,
        world.collector,
        world.invoicing,
        world.clock,
        SandboxProvider(world.clock),
    )
    today = row(amnesiac.report(DAY + timedelta(days=1)).totals, Channel.ONLINE_CARD)
    assert [(d.kind, d.payment_id, d.recorded) for d in today.differences] == [
        ("MISSING_AT_PROVIDER", late, eur("12.00"))
    ]
    assert today.difference == eur("12.00")
    assert world.payment(recorded).provider_reference != outside.provider_reference


def test_a_silent_provider_leaves_its_side_empty_with_the_reason(
    world: PaymentsWorld, statements: Statements
) -> None:
    world.card("acc1")
    pay(world, "acc1", "10.00", Channel.ONLINE_CARD, "p1")
    world.sandbox.answering = False
    report = statements.report(DAY)
    assert "provider unavailable" in report.provider_error
    cards = row(report.totals, Channel.ONLINE_CARD)
    assert (cards.collected, cards.provider_gross) == (Money.of("10.00", "EUR"), None)


def test_a_debit_settled_before_midnight_and_recorded_after_is_a_timing_difference(
    world: PaymentsWorld, statements: Statements
) -> None:
    world.methods.add_method(
        AddPaymentMethod(
            "dd1",
            "cus_dd1",
            "EUR",
            MethodKind.SEPA_DEBIT,
            iban="DE89370400440532013000",
            mandate_reference="M-1",
            mandate_signed_on=DAY,
        )
    )
    payment_id = pay(world, "dd1", "30.00", Channel.DIRECT_DEBIT, "dd")
    world.clock.advance(timedelta(days=2, hours=14, minutes=59))  # 3 March, 23:59
    world.sandbox.settle_due()
    world.clock.advance(timedelta(minutes=2))
    world.collector.run_janitor()  # recorded on 4 March
    settled_day = row(statements.report(date(2026, 3, 3)).totals, Channel.DIRECT_DEBIT)
    assert [(d.kind, d.payment_id, d.settled) for d in settled_day.differences] == [
        ("OTHER_DAY", payment_id, eur("30.00"))
    ]
    recorded_day = row(statements.report(date(2026, 3, 4)).totals, Channel.DIRECT_DEBIT)
    assert [(d.kind, d.payment_id) for d in recorded_day.differences] == [
        ("MISSING_AT_PROVIDER", payment_id)
    ]
