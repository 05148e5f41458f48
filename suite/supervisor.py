"""The supervisor behind ``reckon up``: start the suite, watch it, stop it by PID.

``Supervisor.start`` prepares the data directory and the service token, starts an
embedded Redis (persistent, in ``DATA_DIR/redis``) unless ``REDIS_URL`` is set, an
embedded OTLP trace receiver unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, then
every built service as ``python -m services.<name>``; it returns once each one's
gRPC health says SERVING and ``suite.json`` is written. ``stop`` sends SIGTERM to
each child it started, SIGKILL after a grace period, then stops Redis and the
receiver. ``reckon up``, ``reckon demo`` and the e2e tests all use this one class.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import services
from services.common.clock import TEST_CLOCK_ENV
from suite.environment import build_service_env, dial_address, plan_addresses
from suite.health import Health, check_service
from suite.mail_catcher import MailCatcher, mail_dir
from suite.redis_server import EmbeddedRedis, free_port
from suite.service_token import ServiceToken, load_or_create_token
from suite.services import ModuleProbe, ServiceSpec, module_runnable, select_services
from suite.smsc import LocalSmsc, sms_dir
from suite.state import (
    ServiceRecord,
    SuiteState,
    SuiteStateError,
    read_state,
    remove_state,
    write_state,
)
from suite.trace_receiver import TraceReceiver

# The directory holding the `services` package: children import from here.
CODE_ROOT = Path(services.__file__).resolve().parent.parent
OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
LOG_TAIL_LINES = 40
# The embedded Redis is restarted when it dies, at most this often within the window
# (a Redis that keeps dying has a cause a restart will not fix).
REDIS_RESTARTS = 5
REDIS_RESTART_WINDOW = 300.0

Report = Callable[[str], None]


class SuiteError(RuntimeError):
    """The suite cannot start or keep running; the message says which part and why."""


class StopRequested(SuiteError):
    """Ctrl-C or SIGTERM arrived while the suite was starting."""


@dataclass
class SuiteConfig:
    data_dir: Path
    # None or empty: every service in the registry whose code exists.
    services: Sequence[str] | None = None
    # True: every service on a free port (tests, a demo's throw-away suite);
    # False: the default ports of services.common.config.DEFAULT_PORTS.
    free_ports: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    start_timeout: float = 60.0
    stop_grace: float = 10.0
    probe: ModuleProbe = module_runnable
    # Every service reads "now" from the suite's shared test clock (ADR 0037).
    test_clock: bool = False


@dataclass
class ServiceProcess:
    """A service child process and where its output goes."""

    spec: ServiceSpec
    listen: str
    process: subprocess.Popen[bytes]
    log_file: Path
    # Where this run's output starts in the (appended) log file.
    log_offset: int
    log_handle: IO[bytes]

    @property
    def address(self) -> str:
        return dial_address(self.listen)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with self.log_file.open("rb") as handle:
                handle.seek(self.log_offset)
                text = handle.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log_file}: {exc})"
        tail = text.splitlines()[-lines:]
        return "\n".join(tail) if tail else "(no output)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_free(listen: str) -> bool:
    host, _, port = listen.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers themselves bind: connections of a previous run that linger in
        # TIME_WAIT must not make a restart on the same ports look "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]") or "127.0.0.1", int(port)))
        except OSError:
            return False
    return True


class Supervisor:
    def __init__(
        self,
        config: SuiteConfig,
        *,
        stop_requested: threading.Event | None = None,
        report: Report | None = None,
    ) -> None:
        self.config = config
        self.data_dir = config.data_dir.expanduser().resolve()
        self.stop_requested = stop_requested or threading.Event()
        self._report = report or (lambda message: None)
        self.processes: list[ServiceProcess] = []
        self.redis: EmbeddedRedis | None = None
        self.receiver: TraceReceiver | None = None
        self.mail_catcher: MailCatcher | None = None
        self.smsc: LocalSmsc | None = None
        self.token: ServiceToken | None = None
        self.state: SuiteState | None = None
        self._stopped = False
        self._redis_restarts: list[float] = []

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def traces_file(self) -> Path:
        return self.data_dir / "traces.jsonl"

    # --- start -----------------------------------------------------------------------

    def start(self) -> SuiteState:
        """Start everything and wait until it serves; on any failure stop what started."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> SuiteState:
        environ = self.config.environ
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        self._refuse_if_running()
        if self.config.test_clock and environ.get("RECKON_ENV", "").lower() == "production":
            raise SuiteError("--test-clock is never available with RECKON_ENV=production")
        specs = select_services(self.config.services, self.config.probe)
        if not specs:
            raise SuiteError("no service is built yet: nothing to start")
        self.token = load_or_create_token(self.data_dir, environ)
        addresses = plan_addresses(
            specs, environ, free_ports=self.config.free_ports, pick_port=free_port
        )
        self._check_ports(specs, addresses)

        redis_url = environ.get("REDIS_URL")
        if not redis_url:
            self._report(f"starting Redis (persistent, in {self.data_dir / 'redis'})")
            self.redis = EmbeddedRedis(self.data_dir / "redis", persist=True).start()
            redis_url = self.redis.url
        if not environ.get("SMTP_URL") and any(s.name == "notifications" for s in specs):
            # The local mail catcher: notifications' e-mails land in <data>/mail.
            self.mail_catcher = MailCatcher(mail_dir(self.data_dir)).start()
            environ = {**environ, "SMTP_URL": self.mail_catcher.url}
            self._report(f"mail catcher on {self.mail_catcher.host}:{self.mail_catcher.port}")
        if not environ.get("SMPP_URL") and any(s.name == "notifications" for s in specs):
            # The local SMSC simulator: notifications' SMS land in <data>/sms, with receipts.
            self.smsc = LocalSmsc(sms_dir(self.data_dir)).start()
            environ = {**environ, "SMPP_URL": self.smsc.url}
            self._report(f"SMSC simulator on {self.smsc.host}:{self.smsc.port}")
        receiver_endpoint = None
        if not any(environ.get(name) for name in OTLP_ENDPOINT_VARS):
            self.receiver = TraceReceiver(traces_file=self.traces_file).start()
            receiver_endpoint = self.receiver.endpoint
            self._report(f"trace receiver listening on {self.receiver.address}")

        for spec in specs:
            env = build_service_env(
                spec,
                environ=environ,
                token=self.token.value,
                redis_url=redis_url,
                data_dir=self.data_dir,
                addresses=addresses,
                receiver_endpoint=receiver_endpoint,
                code_root=CODE_ROOT,
            )
            # Set either way: an inherited RECKON_TEST_CLOCK must not pick the mode.
            env[TEST_CLOCK_ENV] = "1" if self.config.test_clock else "0"
            self.processes.append(self._spawn(spec, addresses[spec.name], env))
            self._report(f"started {spec.name} (pid {self.processes[-1].pid})")
        self._wait_until_serving()

        self.state = SuiteState(
            data_dir=str(self.data_dir),
            supervisor_pid=os.getpid(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            redis_url=redis_url,
            redis_pid=self.redis.process.pid if self.redis and self.redis.process else None,
            token_file=str(self.token.path) if self.token.path else None,
            trace_receiver=self.receiver.address if self.receiver else None,
            otlp_endpoint=receiver_endpoint
            or next((environ[name] for name in OTLP_ENDPOINT_VARS if environ.get(name)), None),
            traces_file=str(self.traces_file) if self.receiver else None,
            test_clock=self.config.test_clock,
            services=[
                ServiceRecord(p.spec.name, p.address, p.pid, str(p.log_file))
                for p in self.processes
            ],
        )
        write_state(self.data_dir, self.state)
        return self.state

    def _refuse_if_running(self) -> None:
        """Two suites on one data directory would share Redis files and SQLite databases."""
        try:
            previous = read_state(self.data_dir)
        except SuiteStateError:
            return
        if previous.supervisor_pid == os.getpid() or not _pid_alive(previous.supervisor_pid):
            return  # left over from a suite that did not stop cleanly
        if any(
            check_service(s.name, s.address, timeout=1.0) is Health.SERVING
            for s in previous.services
        ):
            raise SuiteError(
                f"a suite is already running from {self.data_dir} "
                f"(supervisor pid {previous.supervisor_pid}); stop it first"
            )

    def _check_ports(self, specs: Sequence[ServiceSpec], addresses: Mapping[str, str]) -> None:
        busy = [spec for spec in specs if not _port_free(addresses[spec.name])]
        if not busy:
            return
        lines = [
            f"{spec.name}: {addresses[spec.name]} is in use "
            f"(set {spec.env_prefix}_LISTEN=127.0.0.1:<port>, or stop what holds it)"
            for spec in busy
        ]
        with contextlib.suppress(SuiteStateError):
            stale = read_state(self.data_dir)
            pids = ", ".join(str(s.pid) for s in stale.services)
            lines.append(
                f"suite.json lists service PIDs {pids} from a suite that did not stop cleanly"
            )
        raise SuiteError("\n".join(lines))

    def _spawn(self, spec: ServiceSpec, listen: str, env: dict[str, str]) -> ServiceProcess:
        log_file = self.logs_dir / f"{spec.name}.log"
        handle = log_file.open("ab")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        handle.write(f"=== reckon up {stamp}: {spec.module} on {listen} ===\n".encode())
        handle.flush()
        offset = handle.tell()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", spec.module],
                env=env,
                cwd=CODE_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                # Own session: Ctrl-C reaches the supervisor only, which then stops each
                # child in order instead of every process racing to exit at once.
                start_new_session=True,
            )
        except BaseException:
            handle.close()
            raise
        return ServiceProcess(spec, listen, process, log_file, offset, handle)

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + self.config.start_timeout
        waiting = list(self.processes)
        while waiting:
            if self.stop_requested.is_set():
                raise StopRequested("stop requested while the suite was starting")
            for child in list(waiting):
                code = child.process.poll()
                if code is not None:
                    raise SuiteError(
                        f"{child.spec.name} exited with code {code} while starting; "
                        f"last lines of {child.log_file}:\n{child.log_tail()}"
                    )
                if check_service(child.spec.name, child.address, timeout=0.5) is Health.SERVING:
                    waiting.remove(child)
                    self._report(f"{child.spec.name} is serving on {child.address}")
            if not waiting:
                return
            if time.monotonic() > deadline:
                names = ", ".join(child.spec.name for child in waiting)
                tails = "\n".join(f"--- {child.log_file}:\n{child.log_tail()}" for child in waiting)
                raise SuiteError(
                    f"not serving after {self.config.start_timeout:.0f}s: {names}\n{tails}"
                )
            time.sleep(0.1)

    # --- run -------------------------------------------------------------------------

    def failure(self) -> str | None:
        """What has died since start, if anything: a child service or the embedded Redis."""
        for child in self.processes:
            code = child.process.poll()
            if code is not None:
                return (
                    f"{child.spec.name} (pid {child.pid}) exited with code {code}; "
                    f"last lines of {child.log_file}:\n{child.log_tail()}"
                )
        if self.redis is not None and self.redis.process is not None:
            code = self.redis.process.poll()
            if code is not None:
                return self._restart_redis(code)
        return None

    def _restart_redis(self, code: int) -> str | None:
        """Start the embedded Redis again on its port and data; None once it answers.

        Services reconnect on their own (their clients retry, the outbox re-sends what
        Redis lost), as they would under any process supervisor (ADR 0039).
        """
        assert self.redis is not None
        assert self.redis.process is not None
        died = f"redis-server (pid {self.redis.process.pid}) exited with code {code}"
        now = time.monotonic()
        self._redis_restarts = [t for t in self._redis_restarts if now - t < REDIS_RESTART_WINDOW]
        if len(self._redis_restarts) >= REDIS_RESTARTS:
            return (
                f"{died}; restarted {REDIS_RESTARTS} times in {REDIS_RESTART_WINDOW:.0f}s, "
                f"giving up; see {self.redis.directory / 'redis.log'}"
            )
        self._redis_restarts.append(now)
        attempt = len(self._redis_restarts)
        self._report(
            f"{died}; restarting it on port {self.redis.port} with the same data "
            f"(restart {attempt} of at most {REDIS_RESTARTS} in {REDIS_RESTART_WINDOW:.0f}s)"
        )
        time.sleep(0.1 * attempt)  # a little backoff when it keeps dying
        try:
            self.redis.start()
        except RuntimeError as exc:
            return f"{died}; the restart failed: {exc}"
        if self.state is not None:
            self.state = replace(self.state, redis_pid=self.redis.process.pid)
            write_state(self.data_dir, self.state)
        self._report(f"redis-server is back (pid {self.redis.process.pid})")
        return None

    def watch(self, interval: float = 0.5) -> str | None:
        """Block until a stop is requested (None) or something dies (what died)."""
        while not self.stop_requested.wait(interval):
            problem = self.failure()
            if problem is not None:
                return problem
        return None

    # --- stop ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every child by the PID we started it with; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        self._stop_services()
        if self.redis is not None:
            self._report("stopping Redis")
            self.redis.stop()
        if self.mail_catcher is not None:
            self.mail_catcher.stop()
        if self.smsc is not None:
            self.smsc.stop()
        if self.receiver is not None:
            # Last: services flush their final spans while shutting down.
            self.receiver.stop()
        if self.state is not None:
            remove_state(self.data_dir, self.state.supervisor_pid)

    def _stop_services(self) -> None:
        # Reverse start order: callers stop before the services they call.
        children = list(reversed(self.processes))
        for child in children:
            if child.process.poll() is None:
                self._report(f"stopping {child.spec.name} (pid {child.pid})")
                # Popen.send_signal does nothing once the child has been reaped, so a
                # recycled PID is never signalled.
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.stop_grace
        for child in children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._report(f"{child.spec.name} ignored SIGTERM; killing pid {child.pid}")
                child.process.kill()
                child.process.wait()
            child.log_handle.close()

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
