"""``python -m services.accounts``: fails fast on bad configuration, serves, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.accounts.conftest import wait_for

ROOT = Path(__file__).resolve().parents[3]


def environment(**overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACCOUNTS_", "RECKON_", "OTEL_"))
        and k not in ("REDIS_URL", "DATABASE_URL")
    }
    env["OTEL_SDK_DISABLED"] = "true"
    env.update(overrides)
    return env


def test_a_missing_service_token_stops_the_start_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.accounts"],
        cwd=ROOT,
        env=environment(REDIS_URL="redis://127.0.0.1:1/0", RECKON_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "RECKON_SERVICE_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "accounts.db").exists()  # nothing was started


def test_a_missing_redis_url_is_named_too(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.accounts"],
        cwd=ROOT,
        env=environment(RECKON_SERVICE_TOKEN="t" * 32, RECKON_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_service_serves_and_stops_cleanly_on_sigterm(
    tmp_path: Path, service_env: dict[str, str]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    log_file = tmp_path / "accounts.log"
    with log_file.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.accounts",
            cwd=ROOT,
            env=environment(
                RECKON_SERVICE_TOKEN=service_env["RECKON_SERVICE_TOKEN"],
                REDIS_URL=service_env["REDIS_URL"],
                RECKON_DATA_DIR=str(tmp_path / "data"),
                ACCOUNTS_LISTEN=address,
            ),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
    try:

        async def serving() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"exited early: {log_file.read_text()}")
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service="reckon.accounts.v1.AccountsService"),
                        timeout=1,
                    )
            except grpc.aio.AioRpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        await wait_for(serving, 30, "the service to serve", interval=0.2)
        assert (tmp_path / "data" / "accounts.db").exists()  # migrated its SQLite file

        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
        output = log_file.read_text()
        assert code == 0, output
        assert "Traceback" not in output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
