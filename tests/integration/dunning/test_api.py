"""The dunning service over gRPC, started in-process (SQLite and PostgreSQL, real Redis):
the daily run starts by itself on the clock and is worked through the work stream; bad
input is refused naming the field; the behaviour report after a year of payments; the
CLI's list and behaviour CSV exports."""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.type import date_pb2
from typer.testing import CliRunner

from reckon.dunning.v1 import dunning_pb2 as pb
from reckon.dunning.v1 import dunning_pb2_grpc
from services.common.clock import ManualClock
from services.common.config import load_settings
from services.common.events import EventEnvelope, stream_for
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from services.common.ids import new_id
from services.dunning.bootstrap import RunningDunning, running_service
from services.dunning.config import DunningSettings
from suite.cli import app as reckon
from tests.conftest import TEST_TOKEN, TestDatabase
from tests.integration.dunning.conftest import SAMPLE

START = datetime(2027, 1, 1, 0, 30, tzinfo=UTC)


@dataclass
class Api:
    service: RunningDunning
    stub: Any
    clock: ManualClock
    redis: aioredis.Redis

    async def publish(self, source: str, event_type: str, **payload: Any) -> None:
        envelope = EventEnvelope(
            event_id=new_id("evt"),
            event_type=event_type,
            source=source,
            aggregate_id=str(payload.get("invoice_id", payload.get("account_id", ""))),
            occurred_at=self.clock.now(),
            payload=payload,
        )
        await self.redis.xadd(stream_for(source), {"envelope": envelope.to_json()})

    async def invoice(
        self, invoice_id: str, account_id: str, customer_id: str, **facts: Any
    ) -> None:
        await self.publish(
            "invoicing",
            facts.pop("event_type", "InvoiceIssued"),
            invoice_id=invoice_id,
            account_id=account_id,
            customer_id=customer_id,
            currency="EUR",
            total={"amount": "50.00", "currency": "EUR"},
            disputed_amount={"amount": "0", "currency": "EUR"},
            **facts,
        )


async def eventually(probe: Callable[[], Awaitable[Any]], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def api(
    database: TestDatabase,
    service_env: dict[str, str],
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> AsyncIterator[Api]:
    clock = ManualClock(START)
    settings = load_settings(
        DunningSettings,
        listen="127.0.0.1:0",
        database_url=database.url,
        database_schema=database.schema,
        shutdown_grace_seconds=0,
        export_dir=tmp_path / "exports",
    )
    async with running_service(settings, clock=clock) as service:
        channel = open_channel(service.address, TEST_TOKEN, traced=False)
        try:
            yield Api(service, dunning_pb2_grpc.DunningServiceStub(channel), clock, redis_client)
        finally:
            await channel.close()


async def _refused(call: Awaitable[Any]) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return details_of(caught.value)


async def test_bad_input_is_refused_naming_the_field(api: Api) -> None:
    bad = SAMPLE.read_text().replace("days_past_due: 7", "days_past_due: -7")
    details = await _refused(api.stub.ApplyPolicy(pb.ApplyPolicyRequest(document=bad)))
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    (violation,) = details.violations
    assert violation.field == "document.levels[1].when.days_past_due"
    assert violation.description.startswith("line 19: ")  # the sample's line
    checked = await api.stub.CheckPolicy(pb.CheckPolicyRequest(document=bad))
    assert [v.field for v in checked.violations] == ["document.levels[1].when.days_past_due"]
    cases = [
        (
            api.stub.RunDunning(
                pb.RunDunningRequest(run_date=date_pb2.Date(year=2027, month=2, day=30))
            ),
            "run_date",
        ),
        (api.stub.ListDunningAccounts(pb.ListDunningAccountsRequest(level=-1)), "level"),
        (
            api.stub.ListDunningAccounts(pb.ListDunningAccountsRequest(page_token="zz")),
            "page_token",
        ),
        (api.stub.SetExemption(pb.SetExemptionRequest(account_id="acc_1")), "reason"),
        (
            api.stub.SetExemption(
                pb.SetExemptionRequest(
                    account_id="acc_" + "x" * 60,
                    reason="vip",
                    end_date=date_pb2.Date(year=2027, month=6, day=1),
                )
            ),
            "account_id",
        ),
        (api.stub.GetPaymentBehaviour(pb.GetPaymentBehaviourRequest()), "customer_id"),
        (api.stub.ListPaymentBehaviours(pb.ListPaymentBehavioursRequest(grade="Z")), "grade"),
        (api.stub.GetDunningRun(pb.GetDunningRunRequest()), "run_id"),
    ]
    for call, field in cases:
        details = await _refused(call)
        assert details.code == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in details.fields, (field, details.fields)
    missing = await _refused(api.stub.GetDunningRun(pb.GetDunningRunRequest(run_id="dru_nope")))
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND")


async def test_the_daily_run_starts_on_its_own_and_workers_judge_every_account(api: Api) -> None:
    await api.stub.ApplyPolicy(pb.ApplyPolicyRequest(document=SAMPLE.read_text()))
    due = date(2027, 1, 1)
    for n in range(1, 8):
        await api.invoice(
            f"inv_{n}",
            f"acc_{n}",
            f"cus_{n}",
            status="OPEN",
            due_date=due.isoformat(),
            amount_due={"amount": "50.00", "currency": "EUR"},
        )

    async def projected() -> bool:
        with api.service.app.uow_factory() as uow:
            return len(uow.runs.candidates(due + timedelta(days=1))) == 7

    await eventually(projected, 10, "the invoices to be projected")
    # Day 1 after the due date, past the run hour (01:00 UTC): the scheduler wakes on the
    # move and starts the run; the work consumer judges the accounts.
    api.clock.set(datetime(2027, 1, 2, 2, tzinfo=UTC))

    async def completed() -> list[Any]:
        reply = await api.stub.ListDunningAccounts(pb.ListDunningAccountsRequest(level=1))
        return list(reply.accounts) if len(reply.accounts) == 7 else []

    listed = await eventually(completed, 15, "the daily run to put 7 accounts at level 1")
    assert {a.next_step for a in listed} == {"sms and late fee"}
    assert {a.days_past_due for a in listed} == {1}


async def test_payment_behaviour_after_a_year_of_mixed_payments(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Twelve monthly invoices of cus_y: eight paid on their due date, three paid 10 days
    # late after a failed collection each, December still open and 3 days overdue.
    for month in range(1, 13):
        due = date(2027, month, 10)
        invoice_id = f"inv_{month:02d}"
        issued = datetime.combine(due - timedelta(days=14), datetime.min.time(), UTC)
        api.clock.set(max(issued, api.clock.now()))
        await api.invoice(
            invoice_id,
            "acc_y",
            "cus_y",
            status="OPEN",
            due_date=due.isoformat(),
            amount_due={"amount": "50.00", "currency": "EUR"},
        )
        if month in (3, 6, 9):
            api.clock.set(datetime.combine(due, datetime.min.time(), UTC) + timedelta(hours=6))
            await api.publish(
                "payments",
                "PaymentFailed",
                payment_id=new_id("pay"),
                account_id="acc_y",
                customer_id="cus_y",
                decline_code="insufficient_funds",
                invoice_ids=[invoice_id],
            )
            paid_on = due + timedelta(days=10)
        else:
            paid_on = due
        if month == 12:
            continue
        api.clock.set(datetime.combine(paid_on, datetime.min.time(), UTC) + timedelta(hours=12))
        await api.invoice(
            invoice_id,
            "acc_y",
            "cus_y",
            event_type="InvoicePaid",
            status="PAID",
            due_date=due.isoformat(),
            amount_due={"amount": "0", "currency": "EUR"},
        )
    api.clock.set(datetime(2027, 12, 13, 12, tzinfo=UTC))

    async def recorded() -> Any:
        try:
            reply = await api.stub.GetPaymentBehaviour(
                pb.GetPaymentBehaviourRequest(customer_id="cus_y")
            )
        except grpc.aio.AioRpcError:
            return None
        paid = [o for o in reply.outcomes if o.outcome in ("PAID_ON_TIME", "PAID_LATE")]
        return (
            reply
            if len(reply.outcomes) == 12
            and len(paid) == 11
            and reply.behaviour.failed_attempts == 3
            else None
        )

    reply = await eventually(recorded, 15, "the year of payments to be recorded")
    record = reply.behaviour
    assert (record.invoices, record.paid_on_time, record.paid_late, record.overdue) == (12, 8, 3, 1)
    late = {o.invoice_id: o.days_late for o in reply.outcomes if o.days_late}
    assert late == {"inv_03": 10, "inv_06": 10, "inv_09": 10, "inv_12": 3}
    # Cost: 3 x (5 + 3) for the late ones + 1.5 for December = 25.5 / 12 = 2.125 -> 97.9 -> 98.
    assert (record.score, record.grade, record.average_days_late) == (98, "A", "2.8")

    # The base report and the CLI's CSV exports.
    monkeypatch.setenv("DUNNING_ADDR", api.service.address)
    monkeypatch.setenv("RECKON_SERVICE_TOKEN", TEST_TOKEN)
    out = tmp_path / "behaviour.csv"
    result = await asyncio.to_thread(
        CliRunner().invoke, reckon, ["dunning", "behaviour", "--all", "--csv", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [(r["customer_id"], r["grade"], r["score"], r["paid_late"]) for r in rows] == [
        ("cus_y", "A", "98", "3")
    ]
    per_invoice = tmp_path / "cus_y.csv"
    result = await asyncio.to_thread(
        CliRunner().invoke, reckon, ["dunning", "behaviour", "cus_y", "--csv", str(per_invoice)]
    )
    assert result.exit_code == 0, result.output
    outcomes = list(csv.DictReader(per_invoice.open()))
    assert len(outcomes) == 12
    assert outcomes[2]["outcome"] == "PAID_LATE"
    assert outcomes[2]["paid_date"] == "2027-03-20"


async def test_fuzzing_every_method_finds_no_internal_error(api: Api) -> None:
    from tests.e2e.fuzz_requests import fuzz_server

    await api.stub.ApplyPolicy(pb.ApplyPolicyRequest(document=SAMPLE.read_text()))
    calls, findings = await fuzz_server(api.service.address, TEST_TOKEN)
    assert calls > 0
    report = "\n".join(sorted({str(f) for f in findings}))
    assert not findings, f"{len(findings)} findings:\n{report}"
