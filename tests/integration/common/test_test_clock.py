"""The suite-wide test clock (ADR 0037): one time for every process, schedulers wake on moves.

Real Redis, real child processes: a clock moved by one process (the `reckon clock`
command) is what every other process reads, and a scheduler sleeping for minutes
runs again within a fraction of a second of the move.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from services.charging.service_layer.supervision import every
from services.common.clock import (
    TEST_CLOCK_KEY,
    ManualClock,
    SharedTestClock,
    SystemClock,
    clock_from_config,
    clock_sleep,
    close_clock,
    parse_duration,
    parse_instant,
    sleep_until,
)
from services.common.config import ConfigError, ServiceSettings, load_settings
from suite.cli import app
from suite.state import SuiteState, write_state
from suite.supervisor import CODE_ROOT, SuiteConfig, SuiteError, Supervisor
from tests.conftest import TEST_TOKEN

pytestmark = pytest.mark.timeout(60)

READ_CLOCK = """
import sys
from services.common.clock import SharedTestClock
clock = SharedTestClock(sys.argv[1]).start()
print(clock.now().isoformat(), flush=True)
clock.close()
"""


@pytest.fixture
def clock_url(redis_server) -> str:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(redis_server.url)
    client.delete(TEST_CLOCK_KEY)
    client.close()
    return str(redis_server.url)


def read_in_another_process(url: str) -> datetime:
    out = subprocess.run(
        [sys.executable, "-c", READ_CLOCK, url],
        capture_output=True,
        text=True,
        check=True,
        cwd=CODE_ROOT,
        env={**os.environ, "PYTHONPATH": str(CODE_ROOT)},
    )
    return datetime.fromisoformat(out.stdout.strip())


def test_a_moved_clock_is_the_time_of_every_process(clock_url: str) -> None:
    mover = SharedTestClock(clock_url)
    try:
        assert abs(mover.now() - datetime.now(UTC)) < timedelta(seconds=1)
        mover.set(datetime(2027, 1, 1, tzinfo=UTC))
        seen = read_in_another_process(clock_url)
        # The other process reads the same offset: same instant, give or take the run.
        assert datetime(2027, 1, 1, tzinfo=UTC) <= seen < datetime(2027, 1, 1, 0, 0, 30, tzinfo=UTC)
        mover.advance(timedelta(days=3))
        seen = read_in_another_process(clock_url)
        assert datetime(2027, 1, 4, tzinfo=UTC) <= seen < datetime(2027, 1, 4, 0, 0, 30, tzinfo=UTC)
    finally:
        mover.close()


def test_the_test_clock_never_runs_backwards(clock_url: str) -> None:
    clock = SharedTestClock(clock_url)
    try:
        clock.set(datetime(2030, 6, 1, tzinfo=UTC))
        with pytest.raises(ValueError, match="backwards"):
            clock.set(datetime(2030, 5, 1, tzinfo=UTC))
        with pytest.raises(ValueError, match="backwards"):
            clock.advance(timedelta(seconds=-1))
        assert clock.now() >= datetime(2030, 6, 1, tzinfo=UTC)
    finally:
        clock.close()


async def test_a_sleeper_wakes_when_another_process_moves_the_clock(clock_url: str) -> None:
    follower = SharedTestClock(clock_url, poll_interval=0.05).start()
    mover = SharedTestClock(clock_url)
    try:
        started = time.monotonic()
        sleeper = asyncio.create_task(clock_sleep(follower, 30))
        await asyncio.sleep(0.2)
        assert not sleeper.done()
        await asyncio.to_thread(mover.advance, timedelta(days=31))
        await asyncio.wait_for(sleeper, timeout=5)
        assert time.monotonic() - started < 5
        assert follower.now() > datetime.now(UTC) + timedelta(days=30)
    finally:
        follower.close()
        mover.close()


async def test_sleep_until_returns_once_the_clock_reaches_the_instant() -> None:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    due = datetime(2026, 3, 31, tzinfo=UTC)
    waiter = asyncio.create_task(sleep_until(clock, due, check_every=30))
    await asyncio.sleep(0.05)
    clock.advance(timedelta(days=10))
    await asyncio.sleep(0.05)
    assert not waiter.done()  # moved, but not far enough
    clock.set(due)
    assert await asyncio.wait_for(waiter, timeout=2) is True


async def test_charging_sweeps_run_again_as_soon_as_the_clock_moves() -> None:
    clock = ManualClock()
    stop = asyncio.Event()
    runs = 0

    async def sweep() -> None:
        nonlocal runs
        runs += 1

    loop = asyncio.create_task(every(3600, stop, sweep, "sweep", clock))
    await asyncio.sleep(0.05)
    assert runs == 1
    clock.advance(timedelta(days=1))
    for _ in range(250):
        await asyncio.sleep(0.02)
        if runs == 2:
            break
    assert runs == 2  # not an hour later
    stop.set()
    await asyncio.wait_for(loop, timeout=2)


def test_a_service_reads_the_shared_clock_only_in_test_clock_mode(
    clock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECKON_SERVICE_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("REDIS_URL", clock_url)
    monkeypatch.delenv("RECKON_TEST_CLOCK", raising=False)
    assert isinstance(clock_from_config(load_settings(ServiceSettings)), SystemClock)
    monkeypatch.setenv("RECKON_TEST_CLOCK", "1")
    clock = clock_from_config(load_settings(ServiceSettings))
    assert isinstance(clock, SharedTestClock)
    close_clock(clock)
    monkeypatch.setenv("RECKON_ENV", "production")
    with pytest.raises(ConfigError, match="never available with RECKON_ENV=production"):
        load_settings(ServiceSettings)


def test_reckon_up_refuses_a_test_clock_in_production(tmp_path: Path) -> None:
    supervisor = Supervisor(
        SuiteConfig(
            data_dir=tmp_path,
            free_ports=True,
            environ={**os.environ, "RECKON_ENV": "production"},
            test_clock=True,
        )
    )
    with pytest.raises(SuiteError, match="never available with RECKON_ENV=production"):
        supervisor.start()
    assert not (tmp_path / "suite.json").exists()


def _suite_json(data_dir: Path, redis_url: str, *, test_clock: bool) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    write_state(
        data_dir,
        SuiteState(
            data_dir=str(data_dir),
            supervisor_pid=os.getpid(),
            started_at="2026-01-01T00:00:00+00:00",
            redis_url=redis_url,
            redis_pid=None,
            token_file=None,
            trace_receiver=None,
            otlp_endpoint=None,
            traces_file=None,
            test_clock=test_clock,
        ),
    )


def test_reckon_clock_is_refused_for_a_suite_not_in_test_clock_mode(
    clock_url: str, tmp_path: Path
) -> None:
    _suite_json(tmp_path, clock_url, test_clock=False)
    result = CliRunner().invoke(app, ["clock", "advance", "3d", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "not started in test-clock mode" in " ".join(result.output.split())
    client = redis.Redis.from_url(clock_url)
    assert client.get(TEST_CLOCK_KEY) is None  # nothing moved
    client.close()


def test_reckon_clock_moves_a_test_clock_suite(clock_url: str, tmp_path: Path) -> None:
    _suite_json(tmp_path, clock_url, test_clock=True)
    runner = CliRunner()
    result = runner.invoke(app, ["clock", "set", "2027-01-01T00:00Z", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "2027-01-01T00:00" in result.output
    result = runner.invoke(app, ["clock", "advance", "3d", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "2027-01-04T00:00" in result.output
    result = runner.invoke(app, ["clock", "set", "2026-12-01T00:00Z", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "backwards" in result.output
    assert read_in_another_process(clock_url) >= datetime(2027, 1, 4, tzinfo=UTC)


def test_durations_and_instants_of_the_clock_command() -> None:
    assert parse_duration("3d") == timedelta(days=3)
    assert parse_duration("1d12h") == timedelta(days=1, hours=12)
    assert parse_duration("2w") == timedelta(weeks=2)
    for bad in ("", "3", "3x", "d", "-3d", "3d junk"):
        with pytest.raises(ValueError, match="expected a duration"):
            parse_duration(bad)
    assert parse_instant("2027-01-01T00:00Z") == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_instant("2027-01-01") == datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="time zone"):
        parse_instant("2027-01-01T00:00")
    assert json.dumps(str(parse_instant("2027-01-01T01:00+01:00"))) == '"2027-01-01 00:00:00+00:00"'
