"""The kit seen from outside a running suite: the test clock moves every service's time,
reflection v1 answers, a Node.js client works from the .proto files alone, and a
fuzzer generated from reflection finds no INTERNAL.

One suite, started as `reckon up --test-clock` starts it, serves the module. The
fuzzer runs last: it leaves odd records behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.type import money_pb2

from reckon.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from reckon.charging.v1 import charging_pb2, charging_pb2_grpc
from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.clock import SharedTestClock
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from suite.services import available_services
from suite.state import SuiteState
from suite.supervisor import CODE_ROOT, SuiteConfig, Supervisor
from suite.trace_receiver import read_spans
from tests.e2e.fuzz_requests import fuzz_server
from tests.e2e.test_redis_supervision import customer_with_balance
from tests.e2e.test_suite import embedded_defaults, reckon_cli

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

BUILT = [spec.name for spec in available_services()]
# The gRPC services (the gateway speaks HTTP; its own tests fuzz its OpenAPI document).
GRPC_BUILT = [name for name in BUILT if name != "gateway"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    supervisor = Supervisor(
        SuiteConfig(
            data_dir=tmp_path_factory.mktemp("kit-suite"),
            free_ports=True,
            # An hour between maintenance runs: only a move of the clock can wake it
            # within a test's patience (test_charging_maintenance_wakes_...).
            environ={**embedded_defaults(), "CHARGING_MAINTENANCE_INTERVAL_SECONDS": "3600"},
            start_timeout=45,
            stop_grace=5,
            test_clock=True,
        )
    )
    supervisor.start()
    yield supervisor
    supervisor.stop()


@pytest.fixture(scope="module")
def state(suite: Supervisor) -> SuiteState:
    assert suite.state is not None
    assert suite.state.test_clock
    return suite.state


async def _customer_create_time(state: SuiteState, name: str) -> datetime:
    address = state.address_of("accounts")
    assert address is not None
    async with open_channel(address, state.token()) as channel:
        stub = accounts_pb2_grpc.AccountsServiceStub(channel)
        customer = await stub.CreateCustomer(
            accounts_pb2.CreateCustomerRequest(
                customer=accounts_pb2.Customer(display_name=name, email="tc@example.org"),
                request_id=f"test-clock-{name}-{time.time_ns()}",
            ),
            timeout=10,
        )
    created: datetime = customer.customer.create_time.ToDatetime(tzinfo=UTC)
    return created


async def _created_once_the_clock_shows(state: SuiteState, at_least: datetime) -> datetime:
    """A customer's create time once accounts follows the moved clock (a poll or two)."""
    deadline = time.monotonic() + 10
    while True:
        created = await _customer_create_time(state, f"At-{at_least:%Y%m%d}")
        if created >= at_least or time.monotonic() > deadline:
            return created
        await asyncio.sleep(0.1)


async def test_reckon_clock_moves_the_time_of_the_running_services(state: SuiteState) -> None:
    shown = reckon_cli("clock", "set", "2031-05-01T00:00Z", "--data-dir", state.data_dir)
    assert shown.returncode == 0, shown.stderr
    assert "2031-05-01T00:00" in shown.stdout
    # Every service follows the shared clock within its poll interval.
    created = await _created_once_the_clock_shows(state, datetime(2031, 5, 1, tzinfo=UTC))
    assert datetime(2031, 5, 1, tzinfo=UTC) <= created < datetime(2031, 5, 1, 0, 5, tzinfo=UTC)
    moved = reckon_cli("clock", "advance", "3d", "--data-dir", state.data_dir)
    assert moved.returncode == 0, moved.stderr
    created = await _created_once_the_clock_shows(state, datetime(2031, 5, 4, tzinfo=UTC))
    assert datetime(2031, 5, 4, tzinfo=UTC) <= created < datetime(2031, 5, 4, 0, 5, tzinfo=UTC)
    clock = SharedTestClock(state.redis_url)
    clock.refresh()
    assert abs(clock.now() - created) < timedelta(minutes=1)
    clock.close()


async def test_charging_maintenance_wakes_when_the_clock_moves(state: SuiteState) -> None:
    """A weekend bucket ends on the test clock: charging forfeits it within seconds,
    not at its next hourly maintenance run (issue 10 item 7)."""
    account_id = await customer_with_balance(state)
    clock = SharedTestClock(state.redis_url)
    clock.refresh()
    ends = clock.now() + timedelta(days=1)
    async with open_channel(str(state.address_of("charging")), state.token()) as channel:
        charging = charging_pb2_grpc.ChargingServiceStub(channel)
        valid_until = timestamp_pb2.Timestamp()
        valid_until.FromDatetime(ends)
        created = await charging.CreateBucket(
            charging_pb2.CreateBucketRequest(
                bucket=charging_pb2.Bucket(
                    account_id=account_id,
                    unit_kind=charging_pb2.UNIT_KIND_TIME,
                    valid_until=valid_until,
                    label="weekend minutes",
                ),
                initial_amount=charging_pb2.Quantity(time_seconds=300),
                request_id=f"weekend-{account_id}",
            ),
            timeout=10,
        )
        bucket_id = created.balance.bucket.bucket_id
        await asyncio.to_thread(clock.advance, timedelta(days=2))
        clock.close()
        deadline = time.monotonic() + 15
        while True:
            balance = await charging.GetBalance(
                charging_pb2.GetBalanceRequest(account_id=account_id), timeout=10
            )
            line = next(b for b in balance.buckets if b.bucket.bucket_id == bucket_id)
            if line.available.time_seconds == 0:
                break
            assert time.monotonic() < deadline, f"not forfeited: {line}"
            await asyncio.sleep(0.2)
        assert not line.usable


async def test_following_the_test_clock_leaves_no_spans(state: SuiteState) -> None:
    # Each service reads the clock five times a second: none of it may be traced.
    window_start = time.time_ns()
    await asyncio.sleep(2.0)
    window_end = time.time_ns()
    await asyncio.sleep(2.5)  # the embedded receiver gets spans in batches
    assert state.traces_file is not None
    # The statement is redacted ("GET ?"), so count GETs in two quiet seconds: traced
    # clock reads would be 10 per service.
    gets = [
        span
        for span in read_spans(Path(state.traces_file))
        if span.name == "GET" and window_start <= span.start_unix_nano <= window_end
    ]
    assert len(gets) < 2 * len(state.services), [g.attributes for g in gets[:3]]


@pytest.mark.parametrize("package", ["grpc.reflection.v1", "grpc.reflection.v1alpha"])
@pytest.mark.parametrize("service", GRPC_BUILT)
def test_every_service_answers_reflection_v1_and_v1alpha(
    state: SuiteState, service: str, package: str
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2

    address = state.address_of(service)
    assert address is not None
    with grpc.insecure_channel(address) as channel:
        info = channel.stream_stream(
            f"/{package}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        answers = list(info(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answers[0].list_services_response.service}
    assert any(name.startswith(f"reckon.{service}.") for name in names), names


BEFORE_YEAR_1 = timestamp_pb2.Timestamp(seconds=-62_135_596_801)
NEGATIVE_NANOS = timestamp_pb2.Timestamp(seconds=1_800_000_000, nanos=-1)


async def test_the_named_rpcs_refuse_bad_timestamps_naming_the_field(state: SuiteState) -> None:
    """Issue 9 item 13: these answered INTERNAL."""
    charging_address, rating_address = state.address_of("charging"), state.address_of("rating")
    assert charging_address is not None
    assert rating_address is not None
    token = state.token()
    async with open_channel(charging_address, token) as channel:
        charging = charging_pb2_grpc.ChargingServiceStub(channel)
        for stamp in (BEFORE_YEAR_1, NEGATIVE_NANOS):
            with pytest.raises(grpc.aio.AioRpcError) as bucket:
                await charging.CreateBucket(
                    charging_pb2.CreateBucketRequest(
                        bucket=charging_pb2.Bucket(account_id="acc_1", valid_from=stamp),
                        request_id="fuzz-bucket",
                    ),
                    timeout=10,
                )
            assert details_of(bucket.value).code == grpc.StatusCode.INVALID_ARGUMENT
            assert "bucket.valid_from" in details_of(bucket.value).fields
            with pytest.raises(grpc.aio.AioRpcError) as vouchers:
                await charging.CreateVoucherBatch(
                    charging_pb2.CreateVoucherBatchRequest(
                        count=1, expire_time=stamp, request_id="fuzz-vouchers"
                    ),
                    timeout=10,
                )
            assert details_of(vouchers.value).code == grpc.StatusCode.INVALID_ARGUMENT
            assert "expire_time" in details_of(vouchers.value).fields
    async with open_channel(rating_address, token) as channel:
        rating = rating_pb2_grpc.RatingServiceStub(channel)
        for stamp in (BEFORE_YEAR_1, NEGATIVE_NANOS):
            with pytest.raises(grpc.aio.AioRpcError) as rerate:
                await rating.Rerate(
                    rating_pb2.RerateRequest(
                        request_id="fuzz-rerate",
                        account_id="acc_1",
                        period_start=stamp,
                        period_end=timestamp_pb2.Timestamp(seconds=1_900_000_000),
                    ),
                    timeout=10,
                )
            assert details_of(rerate.value).code == grpc.StatusCode.INVALID_ARGUMENT
            assert "period_start" in details_of(rerate.value).fields


INT64_MAX = 2**63 - 1


def _out_of_range(failure: pytest.ExceptionInfo[grpc.aio.AioRpcError], field: str) -> str:
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    found = {v.field: v.description for v in details.violations}
    assert field in found, found
    return found[field]


async def test_int64_max_amounts_are_out_of_range_everywhere(state: SuiteState) -> None:
    """Issue 9 item 14: one wording for an amount no service can hold."""
    token = state.token()
    huge_eur = money_pb2.Money(currency_code="EUR", units=INT64_MAX)
    async with open_channel(str(state.address_of("charging")), token) as channel:
        charging = charging_pb2_grpc.ChargingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as top_up:
            await charging.TopUp(
                charging_pb2.TopUpRequest(
                    account_id="acc_1", amount=charging_pb2.Quantity(money=huge_eur)
                ),
                timeout=10,
            )
        assert "out of range" in _out_of_range(top_up, "amount.money.units")
    async with open_channel(str(state.address_of("rating")), token) as channel:
        rating = rating_pb2_grpc.RatingServiceStub(channel)
        huge = rating_pb2.Quantity(value=INT64_MAX, unit=rating_pb2.QUANTITY_UNIT_SECOND)
        with pytest.raises(grpc.aio.AioRpcError) as rated:
            await rating.RateEvent(
                rating_pb2.RateEventRequest(
                    event=rating_pb2.UsageEvent(
                        record_id="r1",
                        account_id="acc_1",
                        service="voice",
                        event_time=timestamp_pb2.Timestamp(seconds=1_800_000_000),
                        quantity=huge,
                    )
                ),
                timeout=10,
            )
        assert "out of range" in _out_of_range(rated, "event.quantity.value")
        with pytest.raises(grpc.aio.AioRpcError) as quoted:
            await rating.Quote(
                rating_pb2.QuoteRequest(account_id="acc_1", service="voice", quantity=huge),
                timeout=10,
            )
        assert "out of range" in _out_of_range(quoted, "quantity.value")
    async with open_channel(str(state.address_of("accounts")), token) as channel:
        accounts = accounts_pb2_grpc.AccountsServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as account:
            await accounts.CreateAccount(
                accounts_pb2.CreateAccountRequest(
                    account=accounts_pb2.Account(
                        customer_id="cus_01hzzzzzzzzzzzzzzzzzzzzzzz",
                        currency_code="EUR",
                        payment_mode=accounts_pb2.PAYMENT_MODE_POSTPAID,
                        credit_limit=huge_eur,
                    ),
                    request_id="huge-credit-limit",
                ),
                timeout=10,
            )
        descriptions = " ".join(
            v.description for v in details_of(account.value).violations if "credit_limit" in v.field
        )
        assert "out of range" in descriptions, details_of(account.value).violations


EXAMPLE = CODE_ROOT / "examples" / "node"
NODE, NPM = shutil.which("node"), shutil.which("npm")


@pytest.mark.skipif(
    not (NODE and NPM) and not os.environ.get("CI"),
    reason="node/npm absent on this machine (CI has them: tools/ensure_services.sh)",
)
def test_the_node_js_example_creates_a_customer_and_reads_its_balance(state: SuiteState) -> None:
    assert NODE, "CI must have node"
    assert NPM, "CI must have npm"
    if not (EXAMPLE / "node_modules" / "@grpc" / "grpc-js").exists():
        subprocess.run(
            [NPM, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=EXAMPLE,
            check=True,
            timeout=300,
        )
    accounts, charging = state.address_of("accounts"), state.address_of("charging")
    assert accounts is not None
    assert charging is not None
    run = subprocess.run(
        [NODE, "create_customer.js"],
        cwd=EXAMPLE,
        env={
            **os.environ,
            "RECKON_ACCOUNTS_ADDR": accounts,
            "RECKON_CHARGING_ADDR": charging,
            "RECKON_SERVICE_TOKEN": state.token(),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["customer_id"].startswith("cus_")
    assert answer["account_id"]
    assert answer["billing_mode"].startswith("BILLING_MODE_")
    assert isinstance(answer["buckets"], list)


BUF = CODE_ROOT / "node_modules" / ".bin" / "buf"


@pytest.mark.skipif(
    not BUF.exists() and not os.environ.get("CI"), reason="buf not installed (make setup)"
)
def test_buf_curl_lists_and_calls_through_reflection_v1(state: SuiteState) -> None:
    """`buf curl` asks grpc.reflection.v1 (issue 9 item 16), with a lower-case bearer."""
    address = state.address_of("accounts")
    base = [str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge"]
    listed = subprocess.run(
        [*base, "--reflect-protocol", "grpc-v1", "--list-methods", f"http://{address}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "reckon.accounts.v1.AccountsService/CreateCustomer" in listed.stdout
    created = subprocess.run(
        [
            *base,
            "--reflect-protocol",
            "grpc-v1",
            "-H",
            f"authorization: bearer {state.token()}",
            "-d",
            '{"customer": {"display_name": "Curl BV", "email": "curl@example.org"},'
            ' "request_id": "buf-curl-1"}',
            f"http://{address}/reckon.accounts.v1.AccountsService/CreateCustomer",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["customer"]["customerId"].startswith("cus_")


@pytest.mark.parametrize("service", GRPC_BUILT)
async def test_fuzzing_every_method_finds_no_internal_error(
    state: SuiteState, service: str
) -> None:
    address = state.address_of(service)
    assert address is not None
    started = time.monotonic()
    calls, findings = await fuzz_server(address, state.token())
    elapsed = time.monotonic() - started
    print(f"{service}: {calls} fuzzed calls in {elapsed:.1f}s, {len(findings)} findings")
    assert calls > 0
    report = "\n".join(sorted({str(f) for f in findings}))
    assert not findings, f"{len(findings)} calls answered INTERNAL/UNKNOWN:\n{report}"
