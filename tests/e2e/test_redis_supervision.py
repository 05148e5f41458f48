"""`reckon up` supervises its embedded Redis like a process supervisor would (issue 9 item 4).

Redis is SIGKILLed under a running suite: the supervisor restarts it on the same
port with the same data (a log line says so), no service dies, and the services
reconnect: a customer and an account created afterwards reach charging through
the event stream, and charging answers the account's balance.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from reckon.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from reckon.charging.v1 import charging_pb2, charging_pb2_grpc
from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from suite.health import Health, check_service
from suite.state import SuiteState, read_state
from suite.supervisor import SuiteConfig, Supervisor, _port_free
from tests.e2e.test_suite import embedded_defaults

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


@pytest.fixture
def watched_suite(tmp_path: Path) -> Iterator[tuple[Supervisor, list[str], list[str | None]]]:
    reports: list[str] = []
    supervisor = Supervisor(
        SuiteConfig(
            data_dir=tmp_path / "suite",
            free_ports=True,
            environ=embedded_defaults(),
            start_timeout=45,
            stop_grace=5,
        ),
        report=reports.append,
    )
    supervisor.start()
    outcome: list[str | None] = []
    watcher = threading.Thread(target=lambda: outcome.append(supervisor.watch(0.1)))
    watcher.start()
    try:
        yield supervisor, reports, outcome
    finally:
        supervisor.stop_requested.set()
        watcher.join(timeout=30)
        supervisor.stop()


async def customer_with_balance(state: SuiteState) -> str:
    """Create a customer and an account in accounts, then read its balance in charging."""
    token = state.token()
    accounts_address, charging_address = state.address_of("accounts"), state.address_of("charging")
    assert accounts_address is not None
    assert charging_address is not None
    async with open_channel(accounts_address, token) as channel:
        accounts = accounts_pb2_grpc.AccountsServiceStub(channel)
        customer = await accounts.CreateCustomer(
            accounts_pb2.CreateCustomerRequest(
                customer=accounts_pb2.Customer(display_name="After Redis", email="r@example.org"),
                request_id=str(uuid.uuid4()),
            ),
            timeout=10,
        )
        account = await accounts.CreateAccount(
            accounts_pb2.CreateAccountRequest(
                account=accounts_pb2.Account(
                    customer_id=customer.customer.customer_id,
                    display_name="Prepaid",
                    currency_code="EUR",
                    time_zone="Europe/Amsterdam",
                    bill_cycle_day=1,
                    tax_region="NL",
                    payment_mode=accounts_pb2.PAYMENT_MODE_PREPAID,
                ),
                request_id=str(uuid.uuid4()),
            ),
            timeout=10,
        )
    account_id: str = account.account.account_id
    async with open_channel(charging_address, token) as channel:
        charging = charging_pb2_grpc.ChargingServiceStub(channel)
        deadline = time.monotonic() + 30
        while True:
            try:
                await charging.GetBalance(
                    charging_pb2.GetBalanceRequest(account_id=account_id), timeout=5
                )
                return account_id
            except grpc.aio.AioRpcError as exc:
                # Charging learns the account from accounts' events: give it a moment.
                if time.monotonic() > deadline:
                    raise AssertionError(f"charging never knew {account_id}: {exc}") from exc
                await asyncio.sleep(0.2)


async def test_a_killed_redis_is_restarted_and_the_services_reconnect(
    watched_suite: tuple[Supervisor, list[str], list[str | None]],
) -> None:
    supervisor, reports, outcome = watched_suite
    assert supervisor.state is not None
    assert supervisor.redis is not None
    assert supervisor.redis.process is not None
    await customer_with_balance(supervisor.state)
    client = redis.Redis.from_url(supervisor.state.redis_url)
    client.set("reckon:test:survives", "yes")
    await asyncio.sleep(1.5)  # appendfsync everysec: the key is on disk after a second
    first_pid = supervisor.redis.process.pid
    os.kill(first_pid, signal.SIGKILL)

    deadline = time.monotonic() + 20
    # "is back" is reported once the restarted Redis answers and suite.json says so.
    while not any("redis-server is back" in line for line in reports) or not _pings(client):
        assert not outcome, f"the supervisor gave up: {outcome}"
        assert time.monotonic() < deadline, reports
        await asyncio.sleep(0.1)
    assert any("restarting it on port" in line for line in reports), reports
    assert client.get("reckon:test:survives") == b"yes"  # same data
    assert read_state(supervisor.data_dir).redis_pid == supervisor.redis.process.pid

    # Every service lived through it and uses the new Redis.
    await customer_with_balance(supervisor.state)
    for record in supervisor.state.services:
        assert check_service(record.name, record.address) is Health.SERVING, record.name
    assert supervisor.failure() is None
    assert not outcome
    client.close()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_a_port_left_in_time_wait_is_free_for_a_restart() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    # The server side closes first: its end of the connection stays in TIME_WAIT.
    accepted.close()
    listener.close()
    client.close()
    assert _port_free(f"127.0.0.1:{port}")


async def test_streams_open_while_the_suite_stops_end_unavailable(tmp_path: Path) -> None:
    """Clients that retry on UNAVAILABLE retry; a CANCELLED call they would not."""
    supervisor = Supervisor(
        SuiteConfig(
            data_dir=tmp_path / "suite",
            free_ports=True,
            environ=embedded_defaults(),
            start_timeout=45,
            stop_grace=10,
        )
    )
    state = supervisor.start()
    try:
        token = state.token()
        async with (
            open_channel(str(state.address_of("charging")), token) as charging_channel,
            open_channel(str(state.address_of("rating")), token) as rating_channel,
        ):
            charging = charging_pb2_grpc.ChargingServiceStub(charging_channel).StreamCreditControl()
            await charging.write(
                charging_pb2.StreamCreditControlRequest(
                    request=charging_pb2.CreditControlRequest(
                        session_id="s1",
                        request_type=charging_pb2.REQUEST_TYPE_EVENT,
                        requested_action=charging_pb2.REQUESTED_ACTION_CHECK_BALANCE,
                        account_id="nobody",
                    )
                )
            )
            await charging.read()  # the stream is open and answering
            rating = rating_pb2_grpc.RatingServiceStub(rating_channel).StreamRateEvents()
            await rating.write(rating_pb2.StreamRateEventsRequest(event=rating_pb2.UsageEvent()))
            await rating.read()
            await asyncio.to_thread(supervisor.stop)
            for stream in (charging, rating):
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await stream.read()
                assert ended.value.code() is grpc.StatusCode.UNAVAILABLE, ended.value
                assert details_of(ended.value).reason == "SERVICE_STOPPING"
    finally:
        supervisor.stop()
