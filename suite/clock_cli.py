"""``reckon clock show|advance|set``: move the suite's shared test clock (ADR 0037).

Only for a suite started with ``reckon up --test-clock``: every service then reads
"now" from the clock kept in the suite's Redis, and its schedulers wake up when
the clock moves. Refused for any other suite, so production time cannot be moved.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from services.common.clock import SharedTestClock, parse_duration, parse_instant
from suite.state import SuiteState, SuiteStateError, read_state

clock_app = typer.Typer(
    help="Show or move the test clock of a suite started with `reckon up --test-clock`.",
    no_args_is_help=True,
)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", envvar="RECKON_DATA_DIR", help="The running suite's data directory."
    ),
]
DEFAULT_DATA_DIR = Path("data")


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(1)


def test_clock_of(data_dir: Path) -> tuple[SuiteState, SharedTestClock]:
    """The shared clock of the suite running from ``data_dir``; refused outside test-clock mode."""
    try:
        state = read_state(data_dir)
    except SuiteStateError as exc:
        raise _fail(str(exc)) from None
    if not state.test_clock:
        raise _fail(
            f"the suite running from {state.data_dir} was not started in test-clock mode: "
            "its services read the machine's clock, which `reckon clock` never moves; "
            "restart it with `reckon up --test-clock`"
        )
    clock = SharedTestClock(state.redis_url)
    try:
        clock.refresh()
    except Exception as exc:  # noqa: BLE001 - any Redis failure is reported the same way
        clock.close()
        raise _fail(f"cannot read the test clock from {state.redis_url}: {exc}") from None
    return state, clock


def _show(clock: SharedTestClock, verb: str) -> None:
    now = clock.now()
    offset = clock.offset
    console.print(
        f"{verb} [bold]{now.isoformat(timespec='seconds').replace('+00:00', 'Z')}[/] "
        f"({now:%A}; {offset.days}d {offset.seconds // 3600}h "
        f"{offset.seconds % 3600 // 60}m ahead of the machine)"
    )


@clock_app.command()
def show(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Print the suite's current test-clock time."""
    _, clock = test_clock_of(data_dir)
    try:
        _show(clock, "test clock:")
    finally:
        clock.close()


@clock_app.command()
def advance(
    duration: Annotated[str, typer.Argument(help="How far: 3d, 12h, 30m, 1w, 1d12h.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Move the suite's time forward; every service's schedulers wake up."""
    try:
        delta = parse_duration(duration)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _, clock = test_clock_of(data_dir)
    try:
        clock.advance(delta)
        _show(clock, "test clock moved to")
    finally:
        clock.close()


@clock_app.command("set")
def set_(
    instant: Annotated[str, typer.Argument(help="An instant with a zone: 2027-01-01T00:00Z.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Move the suite's time to INSTANT (never backwards)."""
    try:
        target: datetime = parse_instant(instant)
    except ValueError as exc:
        raise _fail(f"{instant!r}: {exc}") from None
    _, clock = test_clock_of(data_dir)
    try:
        clock.set(target)
        _show(clock, "test clock set to")
    except ValueError as exc:
        raise _fail(str(exc)) from None
    finally:
        clock.close()
