"""The ``reckon`` command: run the suite, check it, play the demo story, show a trace.

``reckon up`` starts every built service in the foreground (Ctrl-C stops them),
``reckon status`` checks their health, ``reckon demo`` plays the end-to-end story
and ``reckon trace TRACE_ID`` prints a trace the embedded receiver stored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import redis
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from suite import gateway_cli
from suite.billrun_cli import billrun_app
from suite.clock_cli import clock_app
from suite.dunning_cli import dunning_app
from suite.environment import AddressError
from suite.health import Health, check_service
from suite.mail_cli import mail_app
from suite.payments_cli import payments_app
from suite.rating_cli import catalog_app, usage_app
from suite.service_token import TokenError
from suite.services import UnknownServiceError
from suite.sms_cli import sms_app
from suite.state import SuiteState, SuiteStateError, read_state
from suite.supervisor import StopRequested, SuiteConfig, SuiteError, Supervisor
from suite.trace_receiver import read_spans
from suite.trace_view import TraceSummary, summarise_traces, trace_tree
from suite.version import print_version

app = typer.Typer(
    help="Reckon: run, inspect and demo the charging and billing suite.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
# Operator commands of the services, each defined next to its service's client code.
app.add_typer(catalog_app, name="catalog")
app.add_typer(usage_app, name="usage")
app.add_typer(dunning_app, name="dunning")
app.add_typer(clock_app, name="clock")
app.add_typer(billrun_app, name="billrun")


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=print_version,
            is_eager=True,
            help="Print the version and the gRPC contracts installed, then exit.",
        ),
    ] = False,
) -> None:
    """Reckon: run, inspect and demo the charging and billing suite."""


app.add_typer(mail_app, name="mail")
app.add_typer(sms_app, name="sms")
gateway_cli.register(app)  # reckon gateway key|user ..., reckon report NAME
app.add_typer(payments_app, name="payments")

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="RECKON_DATA_DIR",
        help="Where the suite keeps SQLite files, Redis data, logs, traces and suite.json.",
    ),
]
DEFAULT_DATA_DIR = Path("data")
# What a failed start can raise; anything else is a bug and keeps its traceback.
START_ERRORS = (SuiteError, UnknownServiceError, TokenError, AddressError, OSError, RuntimeError)


def _progress(message: str) -> None:
    console.print(f"[dim]{datetime.now():%H:%M:%S}[/] {escape(message)}")


def _fail(message: str, code: int = 1) -> typer.Exit:
    # Escaped: messages quote service logs, which must not be read as Rich markup.
    errors.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _stop_on_signals(stop: threading.Event) -> None:
    """Ctrl-C and SIGTERM ask the supervisor to stop instead of killing it mid-way.

    The handler only writes bytes to fd 2 and sets an event: a handler runs between
    two bytecodes of whatever the main thread is doing, so a second signal can arrive
    while the first one's message is being printed. Rich's console is not re-entrant
    (a second signal within a millisecond crashed it), and os.write needs no state.
    """

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            stop.set()
            name = signal.Signals(signum).name
            with contextlib.suppress(OSError):
                os.write(2, f"\n{name}: stopping the suite…\n".encode())

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def suite_table(state: SuiteState) -> Table:
    table = Table(title="Reckon suite", title_justify="left")
    table.add_column("service", style="bold cyan")
    table.add_column("address")
    table.add_column("pid", justify="right")
    table.add_column("log file", style="dim")
    for record in state.services:
        table.add_row(record.name, record.address, str(record.pid), record.log_file)
    return table


def print_suite(state: SuiteState) -> None:
    console.print(suite_table(state))
    redis_note = f"embedded, pid {state.redis_pid}" if state.redis_pid else "external"
    console.print(f"[bold]redis[/]        {state.redis_url} ({redis_note})")
    if state.trace_receiver:
        console.print(
            f"[bold]traces[/]       OTLP receiver on {state.trace_receiver} -> {state.traces_file}"
        )
    else:
        console.print(f"[bold]traces[/]       exported to {state.otlp_endpoint}")
    console.print(f"[bold]token[/]        {state.token_file or 'from RECKON_SERVICE_TOKEN'}")
    console.print(f"[bold]data dir[/]     {state.data_dir}")
    if state.test_clock:
        console.print("[bold]test clock[/]   on: [bold]reckon clock show|advance 3d|set …[/]")
    first = state.services[0].address if state.services else "127.0.0.1:50051"
    console.print(
        f"\nTry: [bold]reckon demo[/]   [bold]reckon status[/]   "
        f"[bold]grpcurl -plaintext {first} list[/]\nCtrl-C stops everything."
    )


def _parse_services(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


@app.command()
def up(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    services: Annotated[
        str | None,
        typer.Option(help="Comma-separated services to start (default: every built one)."),
    ] = None,
    test_clock: Annotated[
        bool,
        typer.Option(
            "--test-clock",
            help="Run every service on one shared clock that `reckon clock` moves (not in "
            "production).",
        ),
    ] = False,
) -> None:
    """Start every built service in the foreground, with embedded Redis and trace receiver."""
    stop = threading.Event()
    _stop_on_signals(stop)
    supervisor = Supervisor(
        SuiteConfig(data_dir=data_dir, services=_parse_services(services), test_clock=test_clock),
        stop_requested=stop,
        report=_progress,
    )
    problem: str | None = None
    try:
        try:
            state = supervisor.start()
        except StopRequested:
            raise typer.Exit(130) from None
        except START_ERRORS as exc:
            raise _fail(str(exc)) from None
        print_suite(state)
        problem = supervisor.watch()
    finally:
        supervisor.stop()
    if problem is not None:
        raise _fail(f"{problem}\nthe suite was stopped")
    console.print("suite stopped")


@app.command()
def status(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Show the health of each service of the suite running from DATA_DIR."""
    try:
        state = read_state(data_dir)
    except SuiteStateError as exc:
        raise _fail(str(exc)) from None
    table = Table(title=f"Reckon suite in {state.data_dir}", title_justify="left")
    table.add_column("service", style="bold cyan")
    table.add_column("address")
    table.add_column("pid", justify="right")
    table.add_column("health")
    healthy = True
    for record in state.services:
        health = check_service(record.name, record.address)
        healthy &= health is Health.SERVING
        style = "green" if health is Health.SERVING else "bold red"
        table.add_row(record.name, record.address, str(record.pid), f"[{style}]{health}[/]")
    redis_health = _redis_health(state.redis_url)
    healthy &= redis_health == "PONG"
    style = "green" if redis_health == "PONG" else "bold red"
    table.add_row(
        "redis", state.redis_url, str(state.redis_pid or "-"), f"[{style}]{redis_health}[/]"
    )
    console.print(table)
    if not healthy:
        raise typer.Exit(1)


def _redis_health(url: str) -> str:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return "PONG" if client.ping() else "no answer"
    except redis.RedisError:
        return "unreachable"
    finally:
        client.close()


def running_suite(data_dir: Path) -> SuiteState | None:
    """The suite described by DATA_DIR/suite.json, if every service of it is serving."""
    try:
        state = read_state(data_dir)
    except SuiteStateError:
        return None
    if state.services and all(
        check_service(record.name, record.address, timeout=1.0) is Health.SERVING
        for record in state.services
    ):
        return state
    return None


@app.command()
def demo(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Play the end-to-end story against the running suite, or a temporary one."""
    from suite.demo import play_demo  # the story imports generated stubs: load them only here

    state = running_suite(data_dir)
    if state is not None:
        if not state.test_clock:
            # The story moves time to the cycle end and to payment retries (ADR 0054).
            raise _fail(
                f"the suite running from {state.data_dir} was not started in test-clock "
                "mode, and the story moves time to the cycle end; stop it and run "
                "`reckon up --test-clock`, or stop it and run `reckon demo` alone (it "
                "starts a temporary suite on the test clock)"
            )
        console.print(f"Using the suite running from {state.data_dir} (test clock)")
        raise typer.Exit(play_demo(state, console))

    scratch = Path(tempfile.mkdtemp(prefix="reckon-demo-"))
    console.print(
        f"No suite is running from {data_dir}; starting one in {scratch} on the test "
        "clock (the story moves time to the cycle end and to payment retries)"
    )
    # Ctrl-C interrupts the story wherever it is; SIGTERM is made to do the same, so
    # the `finally` below stops the temporary suite either way.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    supervisor = Supervisor(
        # Free ports: a throw-away suite must not collide with one started by `reckon up`.
        SuiteConfig(data_dir=scratch, free_ports=True, test_clock=True),
        report=_progress,
    )
    try:
        try:
            state = supervisor.start()
        except START_ERRORS as exc:
            raise _fail(str(exc)) from None
        code = play_demo(state, console)
    except KeyboardInterrupt:
        code = 130
    finally:
        supervisor.stop()
    console.print(
        f"\nThe temporary suite is stopped; its data, logs and traces stay in {scratch} "
        f"([bold]reckon trace <id> --data-dir {scratch}[/])."
    )
    raise typer.Exit(code)


@app.command()
def trace(
    trace_id: Annotated[
        str | None,
        typer.Argument(help="32 hex digits, as printed by `reckon demo`; omit to list traces."),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    limit: Annotated[int, typer.Option(help="How many recent traces to list.")] = 20,
    show_all: Annotated[
        bool,
        typer.Option("--all", help="Also list background polls (lone SQL/Redis spans)."),
    ] = False,
) -> None:
    """Print one trace as a tree, or list recent traces, from the embedded receiver's file."""
    traces_file = data_dir / "traces.jsonl"
    if not traces_file.exists():
        raise _fail(
            f"no {traces_file}: traces are kept there only when `reckon up` runs its "
            "embedded receiver (OTEL_EXPORTER_OTLP_ENDPOINT unset)"
        )
    if trace_id is None:
        summaries = summarise_traces(read_spans(traces_file))
        shown = [s for s in summaries if show_all or not s.background][:limit]
        console.print(traces_table(shown))
        return
    trace_id = trace_id.strip().lower()
    spans = list(read_spans(traces_file, trace_id))
    if not spans:
        raise _fail(f"no spans of trace {trace_id} in {traces_file}")
    console.print(trace_tree(trace_id, spans))


def traces_table(summaries: list[TraceSummary]) -> Table:
    table = Table(
        title="Recent traces, newest first (reckon trace ID shows one)", title_justify="left"
    )
    table.add_column("trace id", style="bold", no_wrap=True, min_width=32)
    table.add_column("UTC", no_wrap=True)
    table.add_column("spans", justify="right")
    table.add_column("ms", justify="right")
    table.add_column("first span")
    for summary in summaries:
        started = datetime.fromtimestamp(summary.start_unix_nano / 1e9, UTC)
        table.add_row(
            summary.trace_id,
            f"{started:%H:%M:%S}",
            str(summary.span_count),
            f"{summary.duration_ms:.0f}",
            f"[cyan]{summary.root_service}[/] {summary.root_name}",
        )
    return table


def main() -> None:
    app()


if __name__ == "__main__":
    main()
