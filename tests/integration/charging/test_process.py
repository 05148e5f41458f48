"""``python -m services.charging``: configuration errors, worker processes, graceful stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from suite.redis_server import EmbeddedRedis, free_port
from tests.conftest import TEST_TOKEN

ROOT = Path(__file__).resolve().parents[3]


def test_a_missing_variable_stops_the_service_with_its_name(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RECKON_SERVICE_TOKEN")}
    env["CHARGING_WORKERS"] = "0"
    result = subprocess.run(
        [sys.executable, "-m", "services.charging"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "RECKON_SERVICE_TOKEN" in result.stderr
    assert "CHARGING_WORKERS" in result.stderr


@pytest.mark.slow
def test_two_worker_processes_serve_one_port_and_stop_on_sigterm(
    tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    port = free_port()
    redis.Redis.from_url(redis_server.url.replace("/0", "/3")).flushdb()
    env = {
        **os.environ,
        "RECKON_SERVICE_TOKEN": TEST_TOKEN,
        "REDIS_URL": redis_server.url.replace("/0", "/3"),
        "RECKON_DATA_DIR": str(tmp_path),
        "CHARGING_LISTEN": f"127.0.0.1:{port}",
        "CHARGING_WORKERS": "2",
        "CHARGING_TARIFFS": '{"voice": {"price": "0.10", "currency": "EUR", "per_units": 60,'
        ' "increment": 60}}',
        "OTEL_SDK_DISABLED": "true",
    }
    log_file = tmp_path / "charging.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "services.charging"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file.open("wb"),
    )
    serving = [f"charging worker {worker} serving on port {port}" for worker in (0, 1)]
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        # The second worker starts after the first answers health checks (on a loaded
        # machine, seconds later): the calls below are meant for both.
        while not all(line in log_file.read_text() for line in serving):
            assert process.poll() is None, log_file.read_text()
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.2)
        while True:
            try:
                health = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                if health.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.2)
        stub = charging_pb2_grpc.ChargingServiceStub(channel)
        metadata = (("authorization", f"Bearer {TEST_TOKEN}"),)
        stub.SetAccountPolicy(
            pb.SetAccountPolicyRequest(
                policy=pb.AccountPolicy(
                    account_id="w1", billing_mode=pb.BILLING_MODE_PREPAID, currency_code="EUR"
                )
            ),
            metadata=metadata,
        )
        stub.DefineService(
            pb.DefineServiceRequest(
                service=pb.ServiceDefinition(
                    rating_group=1,
                    service="voice",
                    unit_kind=pb.UNIT_KIND_TIME,
                    charging=pb.SERVICE_CHARGING_RATED,
                )
            ),
            metadata=metadata,
        )
        stub.TopUp(
            pb.TopUpRequest(
                account_id="w1", amount=pb.Quantity(money={"currency_code": "EUR", "units": 1})
            ),
            metadata=metadata,
        )
        # Many connections: the kernel spreads them over both workers. A worker learns of
        # the service defined above through the bus, so on a loaded machine the other
        # worker may answer before it has heard: each check may be asked again for a few
        # seconds (a fresh session id each time), but every one must end in SUCCESS.
        answers = []
        for i in range(20):
            for attempt in range(50):
                with grpc.insecure_channel(f"127.0.0.1:{port}") as fresh:
                    answer = charging_pb2_grpc.ChargingServiceStub(fresh).CreditControl(
                        pb.CreditControlRequest(
                            session_id=f"w{i}-{attempt}",
                            request_type=pb.REQUEST_TYPE_EVENT,
                            requested_action=pb.REQUESTED_ACTION_CHECK_BALANCE,
                            account_id="w1",
                            multiple_services=[
                                pb.MultipleServicesCreditControl(
                                    rating_group=1, requested_units=pb.Quantity(time_seconds=60)
                                )
                            ],
                        ),
                        metadata=metadata,
                        timeout=10,
                    )
                if answer.result_code == pb.RESULT_CODE_SUCCESS:
                    break
                time.sleep(0.1)
            answers.append(answer)
        assert {a.result_code for a in answers} == {pb.RESULT_CODE_SUCCESS}
        channel.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    log = log_file.read_text()
    assert code == 0, log
    # Both processes bound the port (SO_REUSEPORT), not the first one alone.
    for line in serving:
        assert line in log, log
