"""The whole suite started as ``reckon up`` starts it, checked from the outside.

One supervisor (the same code as ``reckon up``: embedded persistent Redis, embedded
trace receiver, every built service as a child process) serves most tests; the stop
test starts its own, since stopping is what it checks. Clients here are plain gRPC
clients, as an independent caller would use: health, reflection, the service token,
and one traced accounts call whose spans must form a single trace from the gRPC
server through SQL and the outbox to the event consumer.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from reckon.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from suite.health import HTTP_SERVICES, Health, check_service
from suite.state import SuiteState
from suite.supervisor import CODE_ROOT, SuiteConfig, Supervisor
from suite.trace_receiver import ReceivedSpan
from tests.e2e.story_checks import check_billing_story, check_one_trace

pytestmark = pytest.mark.timeout(120)

ACCOUNTS_SERVICE = "reckon.accounts.v1.AccountsService"
# Settings of the developer's shell that would point the suite elsewhere than the
# embedded defaults `reckon up` uses on a fresh machine.
OUTSIDE_SETTINGS = (
    "REDIS_URL",
    "DATABASE_URL",
    "RECKON_SERVICE_TOKEN",
    "RECKON_DATA_DIR",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
)


def embedded_defaults() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name not in OUTSIDE_SETTINGS and not name.endswith("_LISTEN")
    }


def start_suite(
    data_dir: Path, environ: dict[str, str] | None = None, *, test_clock: bool = False
) -> Supervisor:
    """The whole suite as `reckon up` starts it, on free ports; ``environ`` adds to the
    embedded defaults (shorter timers for a test, say)."""
    supervisor = Supervisor(
        SuiteConfig(
            data_dir=data_dir,
            free_ports=True,
            test_clock=test_clock,
            environ={**embedded_defaults(), **(environ or {})},
            start_timeout=45,
            stop_grace=5,
        )
    )
    supervisor.start()
    return supervisor


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    # `reckon up --test-clock`: the demo moves time to the cycle end and to payment
    # retries (ADR 0054); until it does, the test clock shows the machine's time.
    running = start_suite(tmp_path_factory.mktemp("suite"), test_clock=True)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def state(supervisor: Supervisor) -> SuiteState:
    assert supervisor.state is not None
    return supervisor.state


def reckon_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the `reckon` command as a user would, in a wide terminal so lines do not wrap."""
    return subprocess.run(
        [sys.executable, "-m", "suite.cli", *args],
        cwd=CODE_ROOT,
        env={**embedded_defaults(), "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_every_started_service_is_serving(state: SuiteState) -> None:
    assert "accounts" in [record.name for record in state.services]
    # The HTTP gateway is started beside the services and answers its own health check.
    gateway = next(record for record in state.services if record.name == "gateway")
    assert check_service("gateway", gateway.address) is Health.SERVING
    for record in state.services:
        if record.name in HTTP_SERVICES:
            continue
        async with grpc.aio.insecure_channel(record.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            overall = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert overall.status == health_pb2.HealthCheckResponse.SERVING, record.name
    async with grpc.aio.insecure_channel(state.address_of("accounts") or "") as channel:
        accounts = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=ACCOUNTS_SERVICE), timeout=5
        )
    assert accounts.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_accounts_service(state: SuiteState) -> None:
    async with grpc.aio.insecure_channel(state.address_of("accounts") or "") as channel:
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {
            service.name
            async for reply in replies
            for service in reply.list_services_response.service
        }
    assert ACCOUNTS_SERVICE in names
    assert "grpc.health.v1.Health" in names


async def test_call_without_the_service_token_is_unauthenticated(state: SuiteState) -> None:
    async with grpc.aio.insecure_channel(state.address_of("accounts") or "") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await accounts_pb2_grpc.AccountsServiceStub(channel).CreateCustomer(
                accounts_pb2.CreateCustomerRequest(
                    customer=accounts_pb2.Customer(
                        display_name="Mallory", email="mallory@example.com"
                    ),
                    request_id=secrets.token_hex(8),
                ),
                timeout=5,
            )
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details_of(failure.value).reason == "SERVICE_TOKEN_INVALID"


def _one_trace_from_grpc_to_consumer(spans: list[ReceivedSpan]) -> bool:
    names = {span.name for span in spans}
    return "reckon.event.consume CustomerCreated" in names and any(
        span.kind == "server" for span in spans
    )


def _ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[str]:
    chain = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        chain.append(span.name)
    return chain


async def test_referred_customer_is_one_trace_from_grpc_server_to_event_consumer(
    supervisor: Supervisor, state: SuiteState
) -> None:
    assert supervisor.receiver is not None
    address, token = state.address_of("accounts") or "", state.token()
    # Our own W3C trace context: the test knows the trace id without a tracer of its own.
    trace_id, caller_span_id = secrets.token_hex(16), secrets.token_hex(8)
    async with open_channel(address, token, traced=False) as channel:
        accounts = accounts_pb2_grpc.AccountsServiceStub(channel)
        referrer = (
            await accounts.CreateCustomer(
                accounts_pb2.CreateCustomerRequest(
                    customer=accounts_pb2.Customer(
                        display_name="Ada Lovelace", email="ada@example.com"
                    ),
                    request_id=secrets.token_hex(8),
                ),
                timeout=10,
            )
        ).customer
        referred = (
            await accounts.CreateCustomer(
                accounts_pb2.CreateCustomerRequest(
                    customer=accounts_pb2.Customer(
                        display_name="Charles Babbage",
                        email="charles@example.com",
                        referred_by=referrer.referral_code,
                    ),
                    request_id=secrets.token_hex(8),
                ),
                metadata=(("traceparent", f"00-{trace_id}-{caller_span_id}-01"),),
                timeout=10,
            )
        ).customer
        assert referred.referred_by == referrer.referral_code

        spans = supervisor.receiver.store.wait_for(
            trace_id, _one_trace_from_grpc_to_consumer, timeout=10
        )

        # What a user sees: the referrer is credited once the consumer has run.
        deadline = time.monotonic() + 10
        while True:
            count = (
                await accounts.GetCustomer(
                    accounts_pb2.GetCustomerRequest(customer_id=referrer.customer_id), timeout=5
                )
            ).customer.referrals_count
            if count == 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    assert count == 1

    by_id = {span.span_id: span for span in spans}
    names = sorted(span.name for span in spans)
    server = [
        span
        for span in spans
        if span.kind == "server" and span.name == f"/{ACCOUNTS_SERVICE}/CreateCustomer"
    ]
    assert len(server) == 1, names
    assert server[0].service == "reckon-accounts"
    assert server[0].parent_span_id == caller_span_id  # the caller's context was honoured
    inserts = [
        span
        for span in spans
        if span.name.split(" ")[0].upper() == "INSERT"
        or str(span.attributes.get("db.statement", "")).upper().startswith("INSERT")
    ]
    assert inserts, f"no SQL INSERT span in {names}"
    publish = [span for span in spans if span.name == "reckon.event.publish CustomerCreated"]
    assert publish, f"no publish span in {names}"
    consume = [span for span in spans if span.name == "reckon.event.consume CustomerCreated"]
    assert consume, f"no consumer span in {names}"
    # The consumer ran in another task, after the request ended, yet it descends from
    # the request's server span through the publish span carried in the envelope.
    lineage = _ancestors(consume[0], by_id)
    assert "reckon.event.publish CustomerCreated" in lineage, lineage
    assert server[0].name in lineage, lineage


def test_reckon_status_reports_every_service_serving(state: SuiteState) -> None:
    result = reckon_cli("status", "--data-dir", state.data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    for record in state.services:
        line = next(line for line in result.stdout.splitlines() if f" {record.name} " in line)
        assert "SERVING" in line
    assert "PONG" in result.stdout


@pytest.fixture(scope="module")
def demo_output(state: SuiteState) -> str:
    """`reckon demo` played once against the module's suite (two tests read it)."""
    result = reckon_cli("demo", "--data-dir", state.data_dir, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.mark.timeout(300)
def test_reckon_demo_plays_the_story_against_the_running_suite(demo_output: str) -> None:
    output = demo_output
    assert "Using the suite running from" in output
    assert "Story complete" in output
    assert "not running yet" not in output  # every step's services run in the suite
    assert "ACCOUNT_NOT_ACTIVE" in output  # subscribing while suspended is refused
    # Accounts asks rating: a plan missing from the applied catalog is refused.
    assert "INVALID_ARGUMENT UNKNOWN_PLAN: subscription.plan_code" in output
    # The sample conference call: five legs rated, the Tokyo leg rejected with its reason.
    assert "records 6, rated 5, rejected 1 (NO_TARIFF 1)" in output
    assert "conf-0042-leg2-" in output
    assert "NO_TARIFF" in output
    trace_line = output.strip().splitlines()[-1]
    assert trace_line.startswith("trace id ")
    # The gateway runs beside the services: the demo customer gets a self-care login.
    assert "Self-care: http://127.0.0.1:" in output
    # One trace: the accounts story, accounts asking rating, rating's import.
    assert "reckon.event.consume CustomerCreated" in output
    assert "/reckon.rating.v1.RatingService/GetPlan" in output
    assert "/reckon.rating.v1.RatingService/ImportUsage" in output
    # The prepaid call: charging priced it through rating and the last grant was cut.
    assert "1.00 EUR into main-EUR" in output
    assert "call cut by the final-unit indication (TERMINATE)" in output
    assert "/reckon.charging.v1.ChargingService/CreditControl" in output
    assert "/reckon.rating.v1.RatingService/Quote" in output
    # In any one time band the credit runs out inside a grant, and charging asks rating
    # what the rest buys (the figures are pinned by tests/unit/suite/test_demo_call.py).
    # Only a call crossing a band boundary may use the credit up at a grant's end.
    if "is what the credit left bought" in output:
        assert "/reckon.rating.v1.RatingService/UnitsForAmount" in output
    else:
        assert "the last grant used the credit up exactly" in output
    assert "TOP_UP" in output  # the ledger
    assert "USAGE" in output
    # The call took the balance below the alert: charging's BalanceLow became an e-mail.
    assert "EMAIL to accounts@babbage.example: balance_low, SENT" in output
    assert "Subject  Your balance is low:" in output
    # ... and an SMS, shown as `reckon up`'s SMSC simulator received it, delivered.
    assert "balance_low_sms" in output
    assert "Reckon: your balance is" in output
    assert "DELIVERED (delivery receipt)" in output
    # Dunning's day-7 SMS, by notifications' rules, as the SMSC received it.
    assert "is overdue for 7 days. Please pay now." in output
    check_billing_story(output)


@pytest.mark.timeout(300)
def test_one_trace_holds_every_hop_of_the_story(state: SuiteState, demo_output: str) -> None:
    trace_id = demo_output.strip().splitlines()[-1].removeprefix("trace id ").strip()
    assert state.traces_file, "the suite runs the embedded trace receiver"
    check_one_trace(Path(state.traces_file), trace_id)


def _port_open(url: str) -> bool:
    host_port = url.removeprefix("redis://").split("/")[0]
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def test_stopping_the_supervisor_stops_every_child_and_its_redis(tmp_path: Path) -> None:
    data_dir = tmp_path / "suite"
    supervisor = start_suite(data_dir)
    try:
        assert supervisor.state is not None
        state = supervisor.state
        assert state.redis_pid is not None
        pids = [record.pid for record in state.services] + [state.redis_pid]
        assert all(process_exists(pid) for pid in pids)
        with redis.Redis.from_url(state.redis_url) as client:
            client.set("e2e:survives-restart", "yes")
    finally:
        supervisor.stop()

    assert [pid for pid in pids if process_exists(pid)] == []
    assert not _port_open(state.redis_url)
    assert not (data_dir / "suite.json").exists()
    assert reckon_cli("status", "--data-dir", str(data_dir)).returncode != 0

    # `reckon up` again on the same data directory: same token, Redis data kept.
    restarted = start_suite(data_dir)
    try:
        assert restarted.state is not None
        assert restarted.state.token() == state.token()
        with redis.Redis.from_url(restarted.state.redis_url) as client:
            assert client.get("e2e:survives-restart") == b"yes"
    finally:
        restarted.stop()
