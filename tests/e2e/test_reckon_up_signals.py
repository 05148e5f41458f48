"""`reckon up` as a user runs it, stopped by a burst of signals (issue 9 item 17).

A second SIGINT or SIGTERM within a millisecond of the first used to crash the
command inside Rich (its console is not re-entrant), leaving the suite half
stopped. Every signal of the burst must be taken calmly, and the suite must stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.state import read_state
from suite.supervisor import CODE_ROOT
from tests.e2e.test_suite import embedded_defaults, process_exists

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def start_reckon_up(data_dir: Path) -> subprocess.Popen[str]:
    env = {
        **embedded_defaults(),
        # Free ports: never collide with a suite someone runs on the default ones.
        "ACCOUNTS_LISTEN": "127.0.0.1:0",
        "RATING_LISTEN": "127.0.0.1:0",
        "COLUMNS": "200",
    }
    more = ["--data-dir", str(data_dir)]
    return subprocess.Popen(
        [sys.executable, "-m", "suite.cli", "up", "--services", "accounts,rating", *more],
        cwd=CODE_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_suite(process: subprocess.Popen[str], data_dir: Path) -> list[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if (data_dir / "suite.json").exists():
            state = read_state(data_dir)
            return [record.pid for record in state.services] + [state.redis_pid or 0]
        time.sleep(0.1)
    process.kill()
    raise AssertionError("reckon up did not write suite.json in 60s")


BURSTS = {
    "two SIGINTs": [signal.SIGINT, signal.SIGINT],
    # Alternating kinds, a fraction of a millisecond apart, for a few milliseconds:
    # one of them lands while the previous handler is still running.
    "SIGTERM and SIGINT alternating": [signal.SIGTERM, signal.SIGINT] * 20,
}


@pytest.mark.parametrize("burst", list(BURSTS.values()), ids=list(BURSTS))
def test_a_burst_of_signals_stops_the_suite_without_a_crash(
    tmp_path: Path, burst: list[signal.Signals]
) -> None:
    process = start_reckon_up(tmp_path)
    try:
        children = wait_for_suite(process, tmp_path)
        for signum in burst:
            os.kill(process.pid, signum)
            time.sleep(0.0002)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in stderr, stderr
    assert process.returncode == 0, stderr
    assert stderr.count("stopping the suite") == 1
    assert not [pid for pid in children if pid and process_exists(pid)]
    assert not (tmp_path / "suite.json").exists()
