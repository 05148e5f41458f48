"""The payments service over gRPC with the real charging service, on SQLite and PostgreSQL.

Proves what a client sees: every test card's outcome through the API, a prepaid
top-up reaching charging's balance once however often it is retried, bad input
refused naming the field with nothing written, and no card number anywhere
afterwards: not in any SQL table, log record, span or event of the run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.type import date_pb2, money_pb2
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine, select

from reckon.charging.v1 import charging_pb2 as cpb
from reckon.charging.v1 import charging_pb2_grpc
from reckon.payments.v1 import payments_pb2 as pb
from reckon.payments.v1 import payments_pb2_grpc
from services.charging.entrypoints.grpc_servicer import binding
from services.common.clock import ManualClock
from services.common.config import load_settings
from services.common.db import make_engine
from services.common.events import EventEnvelope
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from services.common.grpc_server import RunningServer, create_server
from services.common.money import Money
from services.payments.adapters.orm import metadata
from services.payments.adapters.sandbox import NEVER_ANSWERS, TEST_CARDS, SandboxProvider
from services.payments.bootstrap import running_service
from services.payments.config import PaymentsSettings
from services.payments.domain.provider import CardDetails
from services.payments.entrypoints.callbacks import CallbackRejected, ProviderCallbacks
from suite.redis_server import EmbeddedRedis
from tests.conftest import TEST_TOKEN, TestDatabase
from tests.integration.charging.support import START, charging_app
from tests.integration.payments.fakes import FakeInvoicing

ALL_PANS = [*TEST_CARDS, NEVER_ANSWERS]


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@dataclass
class Api:
    stub: Any  # PaymentsServiceStub
    charging: Any  # ChargingServiceStub
    engine: Engine
    sandbox: SandboxProvider
    invoicing: FakeInvoicing
    redis: aioredis.Redis
    clock: ManualClock
    callbacks: ProviderCallbacks
    address: str

    def dump(self) -> str:
        """Every value of every payments table, as text."""
        parts: list[str] = []
        with self.engine.connect() as connection:
            for table in metadata.tables.values():
                for row in connection.execute(select(table)):
                    parts.extend(str(value) for value in row)
        return "\n".join(parts)

    def row_counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            return {
                name: len(list(connection.execute(select(table))))
                for name, table in metadata.tables.items()
            }


def eur(units: int, nanos: int = 0, currency: str = "EUR") -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency, units=units, nanos=nanos)


@pytest.fixture
async def api(
    database: TestDatabase,
    service_env: dict[str, str],
    redis_client: aioredis.Redis,
    redis_server: EmbeddedRedis,
    spans: InMemorySpanExporter,
) -> AsyncIterator[Api]:
    clock = ManualClock(START)
    async with charging_app(database, redis_client, redis_server.url, clock=clock) as charging:
        charging_server: RunningServer = await create_server(
            service_name="charging",
            listen="127.0.0.1:0",
            service_token=TEST_TOKEN,
            bindings=[binding(charging.handlers)],
        )
        schema = f"{database.schema}_pay" if database.schema else None
        url = database.url.replace("test.db", "payments.db")
        settings = load_settings(
            PaymentsSettings,
            listen="127.0.0.1:0",
            database_url=url,
            database_schema=schema,
            shutdown_grace_seconds=0,
            worker_interval_seconds=0.2,
            charging_addr=f"127.0.0.1:{charging_server.port}",
        )
        sandbox = SandboxProvider(clock)
        invoicing = FakeInvoicing()
        async with running_service(
            settings, clock=clock, provider=sandbox, invoicing=invoicing
        ) as service:
            engine = make_engine(url, schema, instrument=False)
            channel = open_channel(f"127.0.0.1:{service.port}", TEST_TOKEN)
            charging_channel = open_channel(f"127.0.0.1:{charging_server.port}", TEST_TOKEN)
            try:
                yield Api(
                    payments_pb2_grpc.PaymentsServiceStub(channel),
                    charging_pb2_grpc.ChargingServiceStub(charging_channel),
                    engine,
                    sandbox,
                    invoicing,
                    redis_client,
                    clock,
                    service.app.callbacks,
                    f"127.0.0.1:{service.port}",
                )
            finally:
                await channel.close()
                await charging_channel.close()
                engine.dispose()
        await charging_server.server.stop(0)
        if schema:
            drop = make_engine(url, None, instrument=False)
            with drop.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            drop.dispose()


async def add_card(api: Api, account: str, number: str, **extra: Any) -> pb.PaymentMethod:
    reply = await api.stub.AddPaymentMethod(
        pb.AddPaymentMethodRequest(
            account_id=account,
            customer_id=f"cus_{account}",
            currency_code="EUR",
            kind=pb.PAYMENT_METHOD_KIND_CARD,
            card=pb.CardInput(number=number, exp_month=12, exp_year=2030, cvc="123"),
            request_id=f"pm-{account}-{number[-4:]}",
            **extra,
        )
    )
    return reply.payment_method  # type: ignore[no-any-return]


EXPECTED_STATES = {
    "4242424242424242": (pb.PAYMENT_STATE_SUCCEEDED, ""),
    "4000000000000002": (pb.PAYMENT_STATE_FAILED, "generic_decline"),
    "4000000000009995": (pb.PAYMENT_STATE_FAILED, "insufficient_funds"),
    "4000000000009987": (pb.PAYMENT_STATE_FAILED, "lost_card"),
    "4000000000009979": (pb.PAYMENT_STATE_FAILED, "stolen_card"),
    "4000000000000069": (pb.PAYMENT_STATE_FAILED, "expired_card"),
    "4000000000000119": (pb.PAYMENT_STATE_FAILED, "processing_error"),
    "4000000000000341": (pb.PAYMENT_STATE_FAILED, "generic_decline"),
    NEVER_ANSWERS: (pb.PAYMENT_STATE_UNKNOWN, ""),
}


async def test_every_test_card_over_the_api_and_no_pan_left_anywhere(
    api: Api, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    spans.clear()
    for index, number in enumerate(ALL_PANS):
        account = f"acc{index}"
        method = await add_card(api, account, number)
        assert method.card_last4 == number[-4:]
        assert method.is_default
        api.invoicing.issue(f"inv{index}", account, "10")
        reply = await api.stub.CreatePayment(
            pb.CreatePaymentRequest(
                account_id=account,
                amount=eur(10),
                channel=pb.CHANNEL_ONLINE_CARD,
                invoice_ids=[f"inv{index}"],
                request_id=f"pay-{account}",
            )
        )
        payment = reply.payment
        assert (payment.state, payment.decline_code) == EXPECTED_STATES[number], number
        assert len(payment.attempts) == 1
        paid = payment.state == pb.PAYMENT_STATE_SUCCEEDED
        assert api.invoicing.due(f"inv{index}").is_zero() is paid
    # Every place a card number could have leaked to.
    haystacks = [api.dump(), caplog.text]
    for span in spans.get_finished_spans():
        haystacks.append(span.name)
        haystacks.extend(str(v) for v in (span.attributes or {}).values())
        for event in span.events:
            haystacks.extend(str(v) for v in (event.attributes or {}).values())
    entries: Any = await api.redis.xrange("reckon:events:payments")
    for _, fields in entries:
        haystacks.append(str(fields))
    text = "\n".join(haystacks)
    assert "acc0" in text  # the haystack is real
    for number in ALL_PANS:
        assert number not in text, f"card number {number[-4:]} leaked"


async def test_a_prepaid_top_up_reaches_the_charging_balance_once(api: Api) -> None:
    await api.charging.SetAccountPolicy(
        cpb.SetAccountPolicyRequest(
            policy=cpb.AccountPolicy(
                account_id="pre1", billing_mode=cpb.BILLING_MODE_PREPAID, currency_code="EUR"
            )
        )
    )
    await add_card(api, "pre1", "4242424242424242")
    request = pb.CreatePaymentRequest(
        account_id="pre1",
        amount=eur(25, 500_000_000),
        channel=pb.CHANNEL_ONLINE_CARD,
        purpose=pb.PAYMENT_PURPOSE_TOP_UP,
        request_id="topup-1",
    )
    first = await api.stub.CreatePayment(request)
    for _ in range(4):
        again = await api.stub.CreatePayment(request)
        assert again.payment.payment_id == first.payment.payment_id
    assert first.payment.state == pb.PAYMENT_STATE_SUCCEEDED
    balance = await api.charging.GetBalance(cpb.GetBalanceRequest(account_id="pre1"))
    money = [b.available.money for b in balance.buckets if b.available.HasField("money")]
    assert [(m.units, m.nanos) for m in money] == [(25, 500_000_000)]
    assert api.sandbox.charges_made == 1


async def invalid(call: Any) -> set[str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    return details_of(raised.value).fields


async def test_bad_input_names_the_field_and_writes_nothing(api: Api) -> None:
    await add_card(api, "acc1", "4242424242424242")
    api.invoicing.issue("inv1", "acc1", "10")
    before = api.row_counts()
    base: dict[str, Any] = {
        "account_id": "acc1",
        "customer_id": "cus_acc1",
        "currency_code": "EUR",
        "request_id": "bad",
    }
    bad_card = pb.AddPaymentMethodRequest(
        kind=pb.PAYMENT_METHOD_KIND_CARD,
        card=pb.CardInput(number="4242424242424241", exp_month=13, exp_year=2030),
        **base,
    )
    assert {"payment_method.card.number", "payment_method.card.exp_month"} <= await invalid(
        api.stub.AddPaymentMethod(bad_card)
    )
    bad_iban = pb.AddPaymentMethodRequest(
        kind=pb.PAYMENT_METHOD_KIND_SEPA_DEBIT,
        iban="DE89370400440532013001",
        mandate_reference="M-1",
        mandate_signed_date=date_pb2.Date(year=2026, month=1, day=2),
        **base,
    )
    assert "payment_method.iban" in await invalid(api.stub.AddPaymentMethod(bad_iban))

    def payment(**fields: Any) -> pb.CreatePaymentRequest:
        values: dict[str, Any] = {
            "account_id": "acc1",
            "amount": eur(10),
            "channel": pb.CHANNEL_ONLINE_CARD,
            "request_id": "p-bad",
        }
        values.update(fields)
        return pb.CreatePaymentRequest(**values)

    assert "payment.amount" in await invalid(api.stub.CreatePayment(payment(amount=eur(-5))))
    assert "payment.amount" in await invalid(api.stub.CreatePayment(payment(amount=eur(10**12))))
    assert "payment.amount" in await invalid(
        api.stub.CreatePayment(payment(amount=eur(1, 1)))  # a billionth of a euro
    )
    assert "payment.amount.currency_code" in await invalid(
        api.stub.CreatePayment(payment(amount=eur(10, currency="USD")))
    )
    assert "payment.invoice_ids[0]" in await invalid(
        api.stub.CreatePayment(payment(invoice_ids=["inv-missing"]))
    )
    with pytest.raises(grpc.aio.AioRpcError) as beyond:
        await api.stub.CreatePayment(
            payment(amount=eur(20), invoice_ids=["inv1"], invoice_amounts=[eur(15)])
        )
    assert beyond.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(beyond.value).reason == "ALLOCATION_EXCEEDS_DUE"
    assert "payment.channel" in await invalid(
        api.stub.CreatePayment(payment(channel=pb.CHANNEL_UNSPECIFIED))
    )
    assert "payment.method_id" in await invalid(
        api.stub.CreatePayment(payment(method_id="pm_forged"))
    )
    assert api.row_counts() == before
    assert api.sandbox.charges_made == 0


async def wait_for_payment(api: Api, account: str, state: int, within: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        reply = await api.stub.ListPayments(pb.ListPaymentsRequest(account_id=account))
        if reply.payments and reply.payments[-1].state == state:
            return reply.payments[-1]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no {state} payment for {account}: {reply.payments}")
        await asyncio.sleep(0.05)


def invoice_issued(invoice_id: str, account: str, amount: str, due: str) -> dict[Any, Any]:
    envelope = EventEnvelope(
        event_id=f"evt-{invoice_id}",
        event_type="InvoiceIssued",
        source="invoicing",
        aggregate_id=invoice_id,
        occurred_at=START,
        payload={
            "invoice_id": invoice_id,
            "number": f"INV-2026-{invoice_id}",
            "account_id": account,
            "customer_id": f"cus_{account}",
            "currency": "EUR",
            "status": "OPEN",
            "amount_due": {"amount": amount, "currency": "EUR"},
            "due_date": due,
            "resend": False,
        },
    )
    return {"envelope": envelope.to_json()}


async def test_an_issued_invoice_is_collected_from_the_event(api: Api) -> None:
    await add_card(api, "auto1", "4242424242424242")
    api.invoicing.issue("i100", "auto1", "42.50")
    for _ in range(2):  # delivered twice: collected once
        await api.redis.xadd(
            "reckon:events:invoicing", invoice_issued("i100", "auto1", "42.50", "2026-03-15")
        )
    payment = await wait_for_payment(api, "auto1", pb.PAYMENT_STATE_SUCCEEDED)
    assert payment.channel == pb.CHANNEL_ONLINE_CARD
    assert [a.invoice_id for a in payment.allocations] == ["i100"]
    assert api.invoicing.due("i100").is_zero()
    await asyncio.sleep(0.3)
    listed = await api.stub.ListPayments(pb.ListPaymentsRequest(account_id="auto1"))
    assert len(listed.payments) == 1
    assert api.sandbox.charges_made == 1


async def test_a_direct_debit_is_sent_on_the_due_date_and_settles_by_signed_callback(
    api: Api,
) -> None:
    reply = await api.stub.AddPaymentMethod(
        pb.AddPaymentMethodRequest(
            account_id="dd1",
            customer_id="cus_dd1",
            currency_code="EUR",
            kind=pb.PAYMENT_METHOD_KIND_SEPA_DEBIT,
            iban="DE89 3704 0044 0532 0130 00",
            mandate_reference="MANDATE-1",
            mandate_signed_date=date_pb2.Date(year=2026, month=1, day=2),
            request_id="dd1",
        )
    )
    assert reply.payment_method.iban_masked == "DE89**************3000"
    api.invoicing.issue("i200", "dd1", "19.99")
    clock = api.clock
    due = (clock.now() + timedelta(days=3)).date().isoformat()
    await api.redis.xadd("reckon:events:invoicing", invoice_issued("i200", "dd1", "19.99", due))
    created = await wait_for_payment(api, "dd1", pb.PAYMENT_STATE_PENDING)
    assert not created.attempts  # waits for the due date
    clock.advance(timedelta(days=3))
    sent = await wait_for_payment(api, "dd1", pb.PAYMENT_STATE_PENDING)
    for _ in range(600):  # workers pass every 0.2 s; a loaded CI machine is slower
        sent = (
            await api.stub.GetPayment(pb.GetPaymentRequest(payment_id=created.payment_id))
        ).payment
        if sent.attempts:
            break
        await asyncio.sleep(0.05)
    assert sent.channel == pb.CHANNEL_DIRECT_DEBIT
    assert len(sent.attempts) == 1
    clock.advance(timedelta(days=2))
    settled = await wait_for_payment(api, "dd1", pb.PAYMENT_STATE_SUCCEEDED)
    assert settled.payment_id == created.payment_id
    assert api.invoicing.due("i200").is_zero()
    # A forged callback is refused and changes nothing.
    body, headers = api.sandbox.signed_callback(sent.attempts[0].attempt_id)
    with pytest.raises(CallbackRejected):
        api.callbacks.receive(body.replace(b"SUCCEEDED", b"FAILED"), headers)


async def test_the_cli_records_a_desk_payment_and_reports_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from suite.payments_cli import payments_app

    api.invoicing.issue("i300", "desk1", "30")
    await add_card(api, "desk1", "4242424242424242")
    monkeypatch.setenv("RECKON_SERVICE_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("COLUMNS", "250")
    address = ["--addr", api.address]
    runner = CliRunner()
    paid = await asyncio.to_thread(
        runner.invoke, payments_app, ["pay", "desk1", "50", "--reference", "R-1", *address]
    )
    assert paid.exit_code == 0, paid.output
    assert "succeeded" in paid.output
    assert api.invoicing.due("i300").is_zero()
    assert api.invoicing.credit["desk1"].amount == 20
    day = api.clock.now().date().isoformat()
    report = await asyncio.to_thread(runner.invoke, payments_app, ["report", day, *address])
    assert report.exit_code == 0, report.output
    assert "cash_desk" in report.output
    assert "50.00 EUR" in report.output
    refused = await asyncio.to_thread(
        runner.invoke, payments_app, ["pay", *address, "--", "desk1", "-5"]
    )
    assert refused.exit_code == 1
    assert "payment.amount" in refused.output


async def test_the_cli_imports_an_mt940_statement_file(
    api: Api, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from typer.testing import CliRunner

    from suite.payments_cli import payments_app

    method = (
        await api.stub.AddPaymentMethod(
            pb.AddPaymentMethodRequest(
                account_id="bt1",
                customer_id="cus_bt1",
                currency_code="EUR",
                kind=pb.PAYMENT_METHOD_KIND_BANK_TRANSFER,
                request_id="bt1",
            )
        )
    ).payment_method
    api.invoicing.issue("i400", "bt1", "40")
    statement = tmp_path / "statement.sta"
    statement.write_bytes(
        (
            ":20:STMT-CLI\r\n:25:DE89370400440532013000\r\n:28C:7/1\r\n"
            ":60F:C260301EUR0,00\r\n"
            ":61:2603020302C40,00NTRFNONREF//BANK-CLI-1\r\n"
            f":86:166?00SEPA-GUTSCHRIFT?20SVWZ+{method.payment_reference}?32Ada\r\n"
            ":61:2603020302D3,00NCHGNONREF//BANK-CLI-2\r\n:86:805?00FEE\r\n"
            ":62F:C260302EUR37,00\r\n-\r\n"
        ).encode()
    )
    monkeypatch.setenv("RECKON_SERVICE_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()
    imported = await asyncio.to_thread(
        runner.invoke,
        payments_app,
        ["import-statement", str(statement), "--addr", api.address],
    )
    assert imported.exit_code == 0, imported.output
    assert "statement STMT-CLI" in imported.output
    assert "BANK-CLI-1" in imported.output
    assert "MATCHED" in imported.output
    assert "IGNORED" in imported.output
    assert api.invoicing.due("i400").is_zero()
    # The file in the camt053 field is recognised too; both fields at once are refused.
    again = await api.stub.ImportBankStatement(
        pb.ImportBankStatementRequest(camt053=statement.read_bytes())
    )
    assert [line.outcome for line in again.lines] == ["DUPLICATE", "IGNORED"]
    assert await invalid(
        api.stub.ImportBankStatement(
            pb.ImportBankStatementRequest(camt053=b"<x/>", mt940=statement.read_bytes())
        )
    ) == {"mt940"}


async def test_the_reconciliation_report_sets_the_day_against_the_providers_settlement(
    api: Api,
) -> None:
    await add_card(api, "rec1", "4242424242424242")
    await api.stub.CreatePayment(
        pb.CreatePaymentRequest(
            account_id="rec1", amount=eur(10), channel=pb.CHANNEL_ONLINE_CARD, request_id="rec-1"
        )
    )
    today = api.clock.now().date()
    reply = await api.stub.GetReconciliationReport(
        pb.GetReconciliationReportRequest(
            date=date_pb2.Date(year=today.year, month=today.month, day=today.day)
        )
    )
    assert (reply.provider, reply.provider_error) == ("sandbox", "")
    (cards,) = [t for t in reply.totals if t.channel == pb.CHANNEL_ONLINE_CARD]
    assert (cards.net.units, cards.provider_gross.units) == (10, 10)
    assert (cards.provider_fees.units, cards.provider_fees.nanos) == (0, 400_000_000)
    assert (cards.provider_net.units, cards.provider_net.nanos) == (9, 600_000_000)
    assert cards.HasField("difference")
    assert (cards.difference.units, cards.difference.nanos) == (0, 0)
    assert list(cards.differences) == []


async def test_the_cli_report_shows_the_providers_side_differences_and_payouts(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from suite.payments_cli import payments_app

    await add_card(api, "rec2", "4242424242424242")
    await api.stub.CreatePayment(
        pb.CreatePaymentRequest(
            account_id="rec2", amount=eur(20), channel=pb.CHANNEL_ONLINE_CARD, request_id="rec-2"
        )
    )
    # A charge the PSP made that Reckon never recorded.
    today = api.clock.now().date()
    elsewhere = api.sandbox.tokenise_card(CardDetails("4242424242424242", 12, 2030), today=today)
    outside = api.sandbox.charge(
        token=elsewhere.token, amount=Money.of("5.00", "EUR"), idempotency_key="outside"
    )
    monkeypatch.setenv("RECKON_SERVICE_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()
    address = ["--addr", api.address]
    shown = await asyncio.to_thread(
        runner.invoke, payments_app, ["report", today.isoformat(), *address]
    )
    assert shown.exit_code == 0, shown.output
    assert "provider gross" in shown.output
    assert "25.00 EUR" in shown.output  # 20 recorded + 5 not recorded, at the provider
    assert "NOT_RECORDED" in shown.output
    assert outside.provider_reference in shown.output
    api.clock.advance(timedelta(days=1))
    tomorrow = (today + timedelta(days=1)).isoformat()
    paid_out = await asyncio.to_thread(runner.invoke, payments_app, ["report", tomorrow, *address])
    assert paid_out.exit_code == 0, paid_out.output
    # 25 less fees (0.55 and 0.33): what the sandbox sends to the bank the next day.
    assert "payout sbxpo_" in paid_out.output
    assert "24.12 EUR" in paid_out.output
