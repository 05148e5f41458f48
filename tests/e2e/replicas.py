"""Service replicas as separate processes on PostgreSQL and a Redis Cluster, for the
scale-out and restart tests: started, killed (SIGKILL) and restarted by their PIDs.

Each replica is ``python -m services.<name>`` on a loopback port of its own, told its
database schema, Redis and peers through the environment as ``reckon up`` tells it;
what it prints goes to a log file next to the test's data, shown when it dies early.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from suite.health import Health, check_health
from suite.redis_server import free_port
from suite.supervisor import CODE_ROOT
from tests.conftest import TEST_TOKEN
from tests.e2e.test_suite import embedded_defaults

START_TIMEOUT_SECONDS = 45.0


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU a live process has used (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Replica:
    """One service process; ``start`` again after ``kill``/``stop`` reuses its port."""

    service: str
    env: dict[str, str]
    log_file: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Replica:
        env = {
            **embedded_defaults(),
            "RECKON_SERVICE_TOKEN": TEST_TOKEN,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(CODE_ROOT),
            # No collector here: the replicas export nothing.
            "OTEL_SDK_DISABLED": "true",
            f"{self.service.upper()}_LISTEN": self.address,
            **self.env,
        }
        self._log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.service}"],
            env=env,
            cwd=CODE_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_serving(self, timeout: float = START_TIMEOUT_SECONDS) -> float:
        """Seconds until the replica's health says SERVING."""
        started = time.monotonic()
        while check_health(self.address, timeout=0.5) is not Health.SERVING:
            assert self.process is not None
            code = self.process.poll()
            tail = self.log_file.read_text(errors="replace").splitlines()[-30:]
            assert code is None, f"{self.service} exited {code}:\n" + "\n".join(tail)
            assert time.monotonic() - started < timeout, (
                f"{self.service} not serving after {timeout}s:\n" + "\n".join(tail)
            )
            time.sleep(0.1)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL by the PID this replica started."""
        self._end(signal.SIGKILL)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (the server drains), SIGKILL after ``grace``."""
        self._end(signal.SIGTERM, grace)

    def _end(self, sig: signal.Signals, grace: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            # Popen.send_signal does nothing once the child was reaped: no recycled PID.
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)


def round_robin_target(replicas: list[Replica]) -> str:
    """One gRPC target naming every replica: the kit's channel spreads calls over them."""
    return "ipv4:" + ",".join(replica.address for replica in replicas)
