"""The Stripe adapter against localstripe, a Stripe-compatible server run as its own process.

localstripe is GPL-3: it lives in ``.venv-localstripe`` (``tools/ensure_services.sh``
installs it) or wherever ``LOCALSTRIPE`` points, and is only ever started, never imported.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import stripe
from sqlalchemy import select

from services.common.clock import ManualClock
from services.common.db import make_engine
from services.common.migrations import upgrade_to_head
from services.common.money import Money
from services.payments.adapters.orm import metadata
from services.payments.adapters.sandbox import FAILING_IBAN
from services.payments.adapters.stripe_provider import StripeProvider
from services.payments.adapters.unit_of_work import SqlPaymentsUnitOfWork, session_factory
from services.payments.bootstrap import MIGRATIONS
from services.payments.domain.model import Channel, MethodKind, PaymentState
from services.payments.domain.provider import CardDetails, ProviderStatus
from services.payments.service_layer.collection import Collector
from services.payments.service_layer.commands import (
    AddPaymentMethod,
    CollectInvoice,
    CreatePayment,
    Refund,
)
from services.payments.service_layer.methods import MethodsService
from services.payments.service_layer.ports import PaymentsUnitOfWork
from services.payments.service_layer.statements import Statements
from tests.conftest import TestDatabase
from tests.integration.payments.fakes import FakeCharging, FakeInvoicing

ROOT = Path(__file__).resolve().parents[3]
TODAY = date(2026, 3, 1)


def _localstripe_binary() -> str:
    configured = os.environ.get("LOCALSTRIPE")
    candidate = Path(configured) if configured else ROOT / ".venv-localstripe/bin/localstripe"
    if not candidate.exists():
        pytest.fail(f"localstripe not found at {candidate}: run tools/ensure_services.sh")
    return str(candidate)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_localstripe() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [_localstripe_binary(), "--port", str(port), "--from-scratch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("localstripe did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    with running_localstripe() as address:
        yield address


@pytest.fixture
def stripe_provider(localstripe: str) -> StripeProvider:
    return StripeProvider("sk_test_reckon", api_base=localstripe)


def test_purchase_succeeds_and_is_found_again_by_its_key(stripe_provider: StripeProvider) -> None:
    card = stripe_provider.tokenise_card(
        CardDetails("4242424242424242", 12, 2030, "123"), today=TODAY
    )
    assert (card.brand, card.last4) == ("visa", "4242")
    assert "4242424242424242" not in card.token
    result = stripe_provider.charge(
        token=card.token, amount=Money.of("12.34", "EUR"), idempotency_key="pay-1"
    )
    assert result.status is ProviderStatus.SUCCEEDED
    assert result.provider_reference.startswith("ch_")
    found = stripe_provider.lookup("pay-1")
    assert (found.status, found.provider_reference) == (
        ProviderStatus.SUCCEEDED,
        result.provider_reference,
    )


def test_declined_card_fails_with_a_reason(stripe_provider: StripeProvider) -> None:
    card = stripe_provider.tokenise_card(
        CardDetails("4000000000000341", 12, 2030, "123"), today=TODAY
    )
    result = stripe_provider.charge(
        token=card.token, amount=Money.of("5.00", "EUR"), idempotency_key="pay-2"
    )
    assert result.status is ProviderStatus.FAILED
    assert result.decline_code


def test_refund_full_and_partial(stripe_provider: StripeProvider) -> None:
    card = stripe_provider.tokenise_card(
        CardDetails("4242424242424242", 12, 2030, "123"), today=TODAY
    )
    charged = stripe_provider.charge(
        token=card.token, amount=Money.of("20.00", "EUR"), idempotency_key="pay-3"
    )
    part = stripe_provider.refund(
        provider_reference=charged.provider_reference,
        amount=Money.of("5.00", "EUR"),
        idempotency_key="ref-1",
    )
    rest = stripe_provider.refund(
        provider_reference=charged.provider_reference,
        amount=Money.of("15.00", "EUR"),
        idempotency_key="ref-2",
    )
    assert part.status is ProviderStatus.SUCCEEDED
    assert rest.status is ProviderStatus.SUCCEEDED
    assert part.provider_reference.startswith("re_")


def test_a_key_never_sent_is_not_found(stripe_provider: StripeProvider) -> None:
    assert stripe_provider.lookup("never-sent").status is ProviderStatus.NOT_FOUND


def test_a_lost_answer_is_found_by_a_fresh_adapter_given_the_method(localstripe: str) -> None:
    sender = StripeProvider("sk_test_reckon", api_base=localstripe)
    card = sender.tokenise_card(CardDetails("4242424242424242", 12, 2030, "123"), today=TODAY)
    sent = sender.charge(token=card.token, amount=Money.of("3.00", "EUR"), idempotency_key="k-9")
    restarted = StripeProvider("sk_test_reckon", api_base=localstripe)  # no memory of k-9
    found = restarted.lookup("k-9", token=card.token)
    assert (found.status, found.provider_reference) == (
        ProviderStatus.SUCCEEDED,
        sent.provider_reference,
    )
    assert restarted.lookup("k-10", token=card.token).status is ProviderStatus.NOT_FOUND


def test_the_service_collects_and_refunds_through_stripe(
    localstripe: str, database: TestDatabase
) -> None:
    engine = make_engine(database.url, database.schema, instrument=False)
    upgrade_to_head(engine, MIGRATIONS)
    sessions = session_factory(engine)
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    provider = StripeProvider("sk_test_reckon", api_base=localstripe)
    invoicing = FakeInvoicing()

    def uow() -> PaymentsUnitOfWork:
        return SqlPaymentsUnitOfWork(sessions, clock=clock)

    collector = Collector(uow, provider, invoicing, FakeCharging(), clock)
    methods = MethodsService(uow, provider, invoicing, clock)
    try:
        for account, number in (("good", "4242424242424242"), ("bad", "4000000000000341")):
            methods.add_method(
                AddPaymentMethod(
                    account,
                    f"cus_{account}",
                    "EUR",
                    MethodKind.CARD,
                    card=CardDetails(number, 12, 2030, "123"),
                )
            )
            invoicing.issue(f"inv-{account}", account, "19.99")
        paid = collector.collect_invoice(
            CollectInvoice("inv-good", "good", Money.of("19.99", "EUR"))
        )
        declined = collector.collect_invoice(
            CollectInvoice("inv-bad", "bad", Money.of("19.99", "EUR"))
        )
        assert paid is not None
        assert declined is not None
        assert paid.state is PaymentState.SUCCEEDED
        assert paid.provider_reference.startswith("ch_")
        assert invoicing.due("inv-good").is_zero()
        assert declined.state is PaymentState.FAILED
        assert declined.next_retry_at is not None  # a generic decline is retried
        refund = methods.refund(Refund(paid.payment_id, Money.of("4.99", "EUR"), "r-1"))
        assert refund.provider_reference.startswith("re_")
        assert invoicing.due("inv-good") == Money.of("4.99", "EUR")
    finally:
        engine.dispose()


def _eventually(provider: StripeProvider, key: str, token: str, wanted: ProviderStatus) -> None:
    """localstripe settles a direct debit half a second after the charge, as Stripe does later."""
    deadline = time.monotonic() + 10
    while provider.lookup(key, token=token).status is not wanted:
        assert time.monotonic() < deadline, f"{key} never became {wanted}"
        time.sleep(0.1)


def test_a_sepa_mandate_is_charged_and_the_failing_iban_bounces(
    stripe_provider: StripeProvider,
) -> None:
    token = stripe_provider.register_mandate(
        iban="DE89370400440532013000", mandate_reference="MANDATE-1"
    )
    assert token.startswith("cus_")
    charged = stripe_provider.charge(
        token=token, amount=Money.of("25.00", "EUR"), idempotency_key="sepa-1"
    )
    assert charged.status in (ProviderStatus.SUCCEEDED, ProviderStatus.PENDING)
    _eventually(stripe_provider, "sepa-1", token, ProviderStatus.SUCCEEDED)
    bouncing = stripe_provider.register_mandate(iban=FAILING_IBAN, mandate_reference="MANDATE-2")
    sent = stripe_provider.charge(
        token=bouncing, amount=Money.of("25.00", "EUR"), idempotency_key="sepa-2"
    )
    assert sent.status is ProviderStatus.PENDING  # accepted; the bank answers later
    _eventually(stripe_provider, "sepa-2", bouncing, ProviderStatus.FAILED)


def test_a_mandate_on_file_through_stripe_keeps_only_the_masked_iban(
    localstripe: str, database: TestDatabase
) -> None:
    engine = make_engine(database.url, database.schema, instrument=False)
    upgrade_to_head(engine, MIGRATIONS)
    sessions = session_factory(engine)
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    provider = StripeProvider("sk_test_reckon", api_base=localstripe)

    def uow() -> PaymentsUnitOfWork:
        return SqlPaymentsUnitOfWork(sessions, clock=clock)

    methods = MethodsService(uow, provider, FakeInvoicing(), clock)
    try:
        method = methods.add_method(
            AddPaymentMethod(
                "dd1",
                "cus_dd1",
                "EUR",
                MethodKind.SEPA_DEBIT,
                request_id="mandate-1",
                iban="DE89 3704 0044 0532 0130 00",
                mandate_reference="MANDATE-1",
                mandate_signed_on=TODAY,
            )
        )
        assert method.token.startswith("cus_")
        assert method.iban_masked == "DE89**************3000"
        with engine.connect() as connection:
            stored = " ".join(
                str(value)
                for table in metadata.tables.values()
                for row in connection.execute(select(table))
                for value in row
            )
        assert "DE89370400440532013000" not in stored
        assert "0532013000" not in stored
    finally:
        engine.dispose()


def test_the_report_reads_stripes_balance_transactions_and_payouts(database: TestDatabase) -> None:
    # A localstripe of its own: the day's balance holds only this test's movements. Its
    # clock is the wall clock, so the service's is too.
    with running_localstripe() as address:
        engine = make_engine(database.url, database.schema, instrument=False)
        upgrade_to_head(engine, MIGRATIONS)
        sessions = session_factory(engine)
        clock = ManualClock(datetime.now(UTC))
        today = clock.now().date()
        provider = StripeProvider("sk_test_reckon", api_base=address)
        invoicing = FakeInvoicing()

        def uow() -> PaymentsUnitOfWork:
            return SqlPaymentsUnitOfWork(sessions, clock=clock)

        collector = Collector(uow, provider, invoicing, FakeCharging(), clock)
        methods = MethodsService(uow, provider, invoicing, clock)
        statements = Statements(uow, collector, invoicing, clock, provider)
        try:
            card = methods.add_method(
                AddPaymentMethod(
                    "acc1",
                    "cus_acc1",
                    "EUR",
                    MethodKind.CARD,
                    card=CardDetails("4242424242424242", 12, 2030, "123"),
                )
            )
            paid = collector.create_payment(
                CreatePayment("acc1", Money.of("30.00", "EUR"), Channel.ONLINE_CARD, "p-1")
            )
            refund = methods.refund(Refund(paid.payment_id, Money.of("10.00", "EUR"), "r-1"))
            outside = provider.charge(
                token=card.token, amount=Money.of("9.99", "EUR"), idempotency_key="at-stripe"
            )
            report = statements.report(today)
            assert (report.provider, report.provider_error) == ("stripe", "")
            (cards,) = [t for t in report.totals if t.channel is Channel.ONLINE_CARD]
            assert cards.net == Money.of("20.00", "EUR")
            assert cards.provider_gross == Money.of("29.99", "EUR")
            assert cards.provider_fees == Money.of("0", "EUR")  # localstripe charges no fees
            assert [(d.kind, d.provider_reference) for d in cards.differences] == [
                ("NOT_RECORDED", outside.provider_reference)
            ]
            assert refund.provider_reference.startswith("re_")
            # localstripe makes payouts only when asked (no schedule); one arrives in 2 days.
            client = stripe.StripeClient("sk_test_reckon", base_addresses={"api": address})
            made = client.v1.payouts.create(params={"amount": 2000, "currency": "eur"})
            arrival = datetime.fromtimestamp(made.arrival_date, UTC).date()
            (payout,) = provider.settlement(arrival).payouts
            assert (payout.payout_id, payout.amount) == (made.id, Money.of("20.00", "EUR"))
            assert payout.status == "pending"
        finally:
            engine.dispose()
