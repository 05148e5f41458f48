"""``reckon billrun ...``: the operator's side of invoicing's bill runs (INV-2).

* ``billrun preview``: what a run would invoice (dry run: nothing is written).
* ``billrun start``: start a run and follow it with a progress bar to the end
  (``--no-wait`` returns at once); ``--accept`` finalises each draft as it is made.
* ``billrun show RUN``: a run's state, counts and errors (``--watch``: follow it).
* ``billrun list``, ``billrun accept RUN``, ``billrun cancel RUN``, ``billrun send RUN``.

The scope is ``--bcd N``, ``--group G``, ``--reseller R`` and/or ``--account ACC``.
The service is found at ``--addr`` / ``INVOICING_ADDR`` with ``RECKON_SERVICE_TOKEN``,
else at the address and with the token of the suite running from ``--data-dir``.
Exit status: 0 done, 1 refused or a run with failed accounts, 2 unreachable or misused.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final

import grpc
import typer
from google.type import date_pb2
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reckon.invoicing.v1 import invoicing_pb2 as pb
from reckon.invoicing.v1 import invoicing_pb2_grpc
from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from suite.service_token import TOKEN_ENV
from suite.state import SuiteStateError, read_state

ADDRESS_ENV: Final = "INVOICING_ADDR"
FINAL_STATES: Final = {
    pb.BILL_RUN_STATE_DRAFTED,
    pb.BILL_RUN_STATE_ACCEPTED,
    pb.BILL_RUN_STATE_CANCELLED,
}

billrun_app = typer.Typer(
    help="Bill runs: preview, start, follow, accept, cancel and send (invoicing).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

DataDir = Annotated[
    Path, typer.Option("--data-dir", envvar="RECKON_DATA_DIR", help="Data directory of the suite.")
]
Address = Annotated[
    str | None, typer.Option("--addr", envvar=ADDRESS_ENV, help="host:port of invoicing.")
]
Bcd = Annotated[int, typer.Option("--bcd", help="Accounts with this bill cycle day (1-31).")]
Group = Annotated[str, typer.Option("--group", help="Accounts of customers in this group.")]
Reseller = Annotated[
    str, typer.Option("--reseller", help="Accounts of customers of this reseller.")
]
Account = Annotated[str, typer.Option("--account", help="Only this account.")]
BillingDate = Annotated[
    str | None,
    typer.Option("--date", help="Invoice cycles ended on or before this date (YYYY-MM-DD)."),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _target(data_dir: Path, address: str | None) -> tuple[str, str]:
    token = os.environ.get(TOKEN_ENV, "")
    if address and token:
        return address, token
    try:
        state = read_state(data_dir)
    except SuiteStateError as exc:
        raise _fail(
            f"{exc}; start it with `reckon up` or set {ADDRESS_ENV} and {TOKEN_ENV}"
        ) from None
    found = address or state.address_of("invoicing")
    if not found:
        raise _fail("the running suite has no invoicing service")
    return found, token or state.token()


def _call(data_dir: Path, address: str | None, method: str, request: Any) -> Any:
    target, token = _target(data_dir, address)

    async def go() -> Any:
        channel = open_channel(target, token, traced=False)
        try:
            return await getattr(invoicing_pb2_grpc.InvoicingServiceStub(channel), method)(
                request, timeout=60
            )
        finally:
            await channel.close()

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as exc:
        details = details_of(exc)
        where = f" ({', '.join(sorted(details.fields))})" if details.fields else ""
        code = (
            2
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            else 1
        )
        raise _fail(f"{details.reason or exc.code().name}: {exc.details()}{where}", code) from None


def _scope(bcd: int, group: str, reseller: str, account: str) -> pb.BillRunScope:
    return pb.BillRunScope(
        bill_cycle_day=bcd, group_id=group, reseller_id=reseller, account_id=account
    )


def _date(text: str | None) -> date_pb2.Date | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise _fail(f"--date {text!r} is not YYYY-MM-DD") from None
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def _money(money: Any) -> str:
    return f"{Decimal(money.units) + Decimal(money.nanos) / 10**9:.2f} {money.currency_code}"


STATE_NAMES = {
    value: name.removeprefix("BILL_RUN_STATE_") for name, value in pb.BillRunState.items()
}


def _print_run(run: pb.BillRun) -> None:
    table = Table(show_header=False, box=None)
    table.add_row("run", run.bill_run_id or "(preview)")
    table.add_row("state", STATE_NAMES.get(run.state, "?"))
    table.add_row("accounts", str(run.accounts_total))
    table.add_row("done", str(run.accounts_done))
    table.add_row("invoices", f"{run.invoices_drafted} drafted, {run.invoices_finalized} finalised")
    table.add_row("skipped", str(run.accounts_skipped))
    table.add_row("failed", str(run.accounts_failed))
    if run.totals:
        table.add_row("totals", ", ".join(_money(total) for total in run.totals))
    console.print(table)
    for error in run.errors:
        errors.print(f"  [red]{error.account_id}[/] {error.reason}: {error.message}")


def _follow(data_dir: Path, address: str | None, run_id: str) -> pb.BillRun:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(run_id, total=None, detail="")
        while True:
            reply: pb.GetBillRunResponse = _call(
                data_dir, address, "GetBillRun", pb.GetBillRunRequest(bill_run_id=run_id)
            )
            run = reply.bill_run
            accepting = run.state in (pb.BILL_RUN_STATE_ACCEPTING, pb.BILL_RUN_STATE_ACCEPTED)
            done = (
                run.invoices_finalized + run.accounts_skipped + run.accounts_failed
                if accepting
                else run.accounts_done
            )
            progress.update(
                task,
                total=run.accounts_total or 1,
                completed=done if run.accounts_total else 1,
                detail=f"{STATE_NAMES.get(run.state, '?')}  failed {run.accounts_failed}",
            )
            if run.state in FINAL_STATES:
                return run
            time.sleep(0.5)


@billrun_app.command()
def preview(
    bcd: Bcd = 0,
    group: Group = "",
    reseller: Reseller = "",
    account: Account = "",
    billing_date: BillingDate = None,
    data_dir: DataDir = Path("data"),
    address: Address = None,
) -> None:
    """Show what a bill run would invoice, without writing anything."""
    request = pb.StartBillRunRequest(scope=_scope(bcd, group, reseller, account), dry_run=True)
    when = _date(billing_date)
    if when is not None:
        request.billing_date.CopyFrom(when)
    reply = _call(data_dir, address, "StartBillRun", request)
    table = Table("account", "lines", "net", "VAT", "total")
    for invoice in reply.preview:
        table.add_row(
            invoice.account_id,
            str(len(invoice.lines)),
            _money(invoice.total_net),
            _money(invoice.total_tax),
            _money(invoice.total_gross),
        )
    console.print(table)
    _print_run(reply.bill_run)


@billrun_app.command()
def start(
    bcd: Bcd = 0,
    group: Group = "",
    reseller: Reseller = "",
    account: Account = "",
    billing_date: BillingDate = None,
    accept: Annotated[
        bool, typer.Option("--accept", help="Finalise each draft as it is made.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the run to its end.")
    ] = True,
    data_dir: DataDir = Path("data"),
    address: Address = None,
) -> None:
    """Start a bill run and follow it with a progress bar."""
    request = pb.StartBillRunRequest(
        scope=_scope(bcd, group, reseller, account),
        auto_accept=accept,
        request_id=str(uuid.uuid4()),
    )
    when = _date(billing_date)
    if when is not None:
        request.billing_date.CopyFrom(when)
    run = _call(data_dir, address, "StartBillRun", request).bill_run
    console.print(f"started bill run [bold]{run.bill_run_id}[/] over {run.accounts_total} accounts")
    if wait:
        run = _follow(data_dir, address, run.bill_run_id)
    _print_run(run)
    if run.accounts_failed:
        raise typer.Exit(1)


@billrun_app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="The bill run (run_...).")],
    watch: Annotated[bool, typer.Option("--watch", help="Follow the run to its end.")] = False,
    data_dir: DataDir = Path("data"),
    address: Address = None,
) -> None:
    """A bill run's state, counts and errors."""
    if watch:
        run = _follow(data_dir, address, run_id)
    else:
        run = _call(
            data_dir, address, "GetBillRun", pb.GetBillRunRequest(bill_run_id=run_id)
        ).bill_run
    _print_run(run)


@billrun_app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 20,
    data_dir: DataDir = Path("data"),
    address: Address = None,
) -> None:
    """Bill runs, newest first."""
    reply = _call(data_dir, address, "ListBillRuns", pb.ListBillRunsRequest(page_size=limit))
    table = Table("state", "date", "accounts", "invoices", "failed", "scheduled")
    table.add_column("run", no_wrap=True, min_width=30)
    for run in reply.bill_runs:
        table.add_row(
            STATE_NAMES.get(run.state, "?"),
            f"{run.billing_date.year:04d}-{run.billing_date.month:02d}-{run.billing_date.day:02d}",
            str(run.accounts_total),
            str(run.invoices_drafted),
            str(run.accounts_failed),
            "yes" if run.scheduled else "",
            run.bill_run_id,
        )
    console.print(table)


def _transition(
    method: str, request: Any, data_dir: Path, address: str | None, follow: bool
) -> None:
    run = _call(data_dir, address, method, request).bill_run
    if follow and run.state not in FINAL_STATES:
        run = _follow(data_dir, address, run.bill_run_id)
    _print_run(run)


@billrun_app.command()
def accept(
    run_id: Annotated[str, typer.Argument(help="The bill run (run_...).")],
    data_dir: DataDir = Path("data"),
    address: Address = None,
) -> None:
    """Finalise every draft of a DRAFTED run (numbers, dates; InvoiceIssued)."""
    request = pb.AcceptBillRunRequest(bill_run_id=run_id, request_id=str(uuid.uuid4()))
    _transition("AcceptBillRun", request, data_dir, address, True)


@billrun_app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="The bill run (run_...).")],
    data_dir: DataDir = Path("data"),
    address: Address = None,
) -> None:
    """Delete a run's drafts; their usage and pending items wait for the next run."""
    request = pb.CancelBillRunRequest(bill_run_id=run_id, request_id=str(uuid.uuid4()))
    _transition("CancelBillRun", request, data_dir, address, False)


@billrun_app.command()
def send(
    run_id: Annotated[str, typer.Argument(help="The bill run (run_...).")],
    data_dir: DataDir = Path("data"),
    address: Address = None,
) -> None:
    """Announce every issued invoice of an accepted run again (InvoiceIssued)."""
    reply = _call(
        data_dir,
        address,
        "SendBillRun",
        pb.SendBillRunRequest(bill_run_id=run_id, request_id=str(uuid.uuid4())),
    )
    console.print(f"announced {reply.invoices_sent} invoices again")
