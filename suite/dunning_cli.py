"""``reckon dunning ...``: the operator's side of the dunning service.

* ``check FILE``: validate a policy document on this machine with the dunning
  service's own reader, no suite needed; problems print as ``FILE:LINE: field: what``.
* ``apply FILE``: store it as the next version of its code in the running service.
* ``run [--date D]``: run (or resume) the daily run of a date now and wait for it.
* ``list``: the accounts in dunning with level, amount, days and next step (filters;
  ``--csv FILE`` writes every page as CSV).
* ``behaviour CUSTOMER`` / ``behaviour --all``: payment behaviour records (``--csv``).
* ``exempt ACCOUNT --reason R --until D`` (or ``--clear``).

All but ``check`` talk to the running service over gRPC: at ``--addr`` /
``DUNNING_ADDR`` with ``RECKON_SERVICE_TOKEN``, else at the address and with the token
of the suite running from ``--data-dir``. Exit status: 0 done, 1 invalid or refused,
2 the file or the service cannot be reached, or the command was misused.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import grpc
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from suite.service_token import TOKEN_ENV
from suite.state import SuiteStateError, read_state

T = TypeVar("T")
ADDRESS_ENV: Final = "DUNNING_ADDR"
_LINE: Final = re.compile(r"^line (\d+): (.*)$", re.DOTALL)

dunning_app = typer.Typer(
    help="Dunning policies, the daily run, accounts in dunning, payment behaviour.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="RECKON_DATA_DIR", help="Data directory of the suite."),
]
Address = Annotated[
    str | None,
    typer.Option("--addr", envvar=ADDRESS_ENV, help="host:port of the dunning service."),
]
CsvOut = Annotated[Path | None, typer.Option("--csv", help="Write the rows to this CSV file.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {escape(message)}")
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
    found = address or state.address_of("dunning")
    if not found:
        raise _fail("the running suite has no dunning service")
    try:
        return found, token or state.token()
    except (SuiteStateError, OSError) as exc:
        raise _fail(str(exc)) from None


def _call(data_dir: Path, address: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    from reckon.dunning.v1 import dunning_pb2_grpc

    target, token = _target(data_dir, address)

    async def conversation() -> T:
        async with open_channel(target, token, traced=False) as channel:
            return await work(dunning_pb2_grpc.DunningServiceStub(channel))

    try:
        return asyncio.run(conversation())
    except grpc.aio.AioRpcError as exc:
        details = details_of(exc)
        if details.code == grpc.StatusCode.UNAVAILABLE:
            raise _fail(f"dunning service at {target} is unavailable: {details.message}") from None
        reason = f" ({details.reason})" if details.reason else ""
        errors.print(f"[bold red]{details.code.name}{reason}:[/] {escape(details.message[:300])}")
        for violation in details.violations:
            errors.print(f"  {escape(violation.field)}: {escape(violation.description)}")
        raise typer.Exit(1) from None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {path}: {exc}") from None


def render_problem(source: str, field: str, description: str) -> str:
    """``FILE:LINE: field: what`` (the field without its ``document.`` prefix)."""
    path = field.removeprefix("document").removeprefix(".")
    match = _LINE.match(description)
    where, what = (f"{source}:{match.group(1)}", match.group(2)) if match else (source, description)
    return f"{where}: {path}: {what}" if path else f"{where}: {what}"


def _print_problems(source: str, problems: list[tuple[str, str]]) -> None:
    for field, description in problems:
        errors.print(escape(render_problem(source, field, description)), soft_wrap=True)


@dunning_app.command("check")
def check(file: Path) -> None:
    """Check a policy document offline; prints FILE:LINE: field: problem for each problem."""
    from services.dunning.service_layer.policy_document import problems_of

    problems = problems_of(_read(file))
    if problems:
        _print_problems(str(file), [(p.field, p.description) for p in problems])
        errors.print(f"{len(problems)} problem(s): the policy is not valid")
        raise typer.Exit(1)
    console.print(f"{file}: valid dunning policy")


@dunning_app.command("apply")
def apply(file: Path, data_dir: DataDir = Path("data"), addr: Address = None) -> None:
    """Store a policy document in the running service as the next version of its code."""
    from reckon.dunning.v1 import dunning_pb2 as pb
    from services.dunning.service_layer.policy_document import problems_of

    document = _read(file)
    problems = problems_of(document)
    if problems:
        _print_problems(str(file), [(p.field, p.description) for p in problems])
        raise typer.Exit(1)
    reply = _call(
        data_dir, addr, lambda stub: stub.ApplyPolicy(pb.ApplyPolicyRequest(document=document))
    )
    console.print(
        f"policy {reply.policy.code} version {reply.policy.version} applied "
        f"({reply.policy.level_count} levels)"
    )


def _parse_date(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _fail(f"{option}: expected a date like 2027-03-15, got {text!r}") from None


@dunning_app.command("run")
def run(
    run_date: Annotated[
        str | None, typer.Option("--date", help="Business date (default: today).")
    ] = None,
    data_dir: DataDir = Path("data"),
    addr: Address = None,
) -> None:
    """Run (or resume) the daily run of a date now and wait until it is done."""
    from google.type import date_pb2

    from reckon.dunning.v1 import dunning_pb2 as pb

    day = _parse_date(run_date, "--date")
    request = pb.RunDunningRequest(wait=True)
    if day is not None:
        request.run_date.CopyFrom(date_pb2.Date(year=day.year, month=day.month, day=day.day))
    reply = _call(data_dir, addr, lambda stub: stub.RunDunning(request))
    r = reply.run
    console.print(
        f"run {r.run_id} of {r.run_date.year:04d}-{r.run_date.month:02d}-{r.run_date.day:02d}: "
        f"{r.accounts_done}/{r.accounts_total} accounts judged, {r.accounts_escalated} escalated"
    )


def _money(value: Any) -> str:
    """A google.type.Money as ``12.50 EUR`` (exact: units and nanos as decimals)."""
    if not value.currency_code:
        return ""
    amount = Decimal(value.units) + Decimal(value.nanos) / Decimal(10**9)
    return f"{amount:f} {value.currency_code}"


def _date(value: Any) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}" if value.year else ""


LIST_COLUMNS: Final = (
    "account_id",
    "customer_id",
    "level",
    "level_name",
    "state",
    "amount_overdue",
    "amount_disputed",
    "days_past_due",
    "unpaid_invoices",
    "next_step",
    "next_step_date",
    "policy",
)


def _write_csv(path: Path, header: tuple[str, ...], rows: list[list[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    console.print(f"{len(rows)} row(s) written to {path}")


@dunning_app.command("list")
def list_accounts(
    level: Annotated[int, typer.Option(help="Only this level.")] = 0,
    paused: Annotated[bool, typer.Option("--paused", help="Only paused (disputed) cases.")] = False,
    policy: Annotated[str, typer.Option(help="Only this policy code.")] = "",
    min_days: Annotated[
        int, typer.Option("--min-days", help="Only this many days past due or more.")
    ] = 0,
    group: Annotated[str, typer.Option(help="Only this customer group.")] = "",
    reseller: Annotated[str, typer.Option(help="Only this reseller.")] = "",
    csv_out: CsvOut = None,
    data_dir: DataDir = Path("data"),
    addr: Address = None,
) -> None:
    """The accounts in dunning: level, amount overdue, days past due and next step."""
    from reckon.dunning.v1 import dunning_pb2 as pb

    def fetch_all(stub: Any) -> Awaitable[list[Any]]:
        async def pages() -> list[Any]:
            found: list[Any] = []
            token = ""
            while True:
                reply = await stub.ListDunningAccounts(
                    pb.ListDunningAccountsRequest(
                        level=level,
                        state=pb.CASE_STATE_PAUSED if paused else pb.CASE_STATE_UNSPECIFIED,
                        policy_code=policy,
                        min_days_past_due=min_days,
                        group_id=group,
                        reseller_id=reseller,
                        page_size=1000,
                        page_token=token,
                    )
                )
                found.extend(reply.accounts)
                token = reply.next_page_token
                if not token:
                    return found

        return pages()

    accounts = _call(data_dir, addr, fetch_all)
    rows = [
        [
            a.account_id,
            a.customer_id,
            a.level,
            a.level_name,
            pb.CaseState.Name(a.state).removeprefix("CASE_STATE_"),
            _money(a.amount_overdue),
            _money(a.amount_disputed),
            a.days_past_due,
            a.unpaid_invoices,
            a.next_step,
            _date(a.next_step_date),
            f"{a.policy_code} v{a.policy_version}",
        ]
        for a in accounts
    ]
    if csv_out is not None:
        _write_csv(csv_out, LIST_COLUMNS, rows)
        return
    table = Table(*LIST_COLUMNS)
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    console.print(table)
    console.print(f"{len(rows)} account(s) in dunning")


BEHAVIOUR_COLUMNS: Final = (
    "customer_id",
    "grade",
    "score",
    "invoices",
    "paid_on_time",
    "paid_late",
    "overdue",
    "average_days_late",
    "failed_attempts",
    "highest_level",
)
OUTCOME_COLUMNS: Final = (
    "invoice_id",
    "account_id",
    "total",
    "due_date",
    "paid_date",
    "outcome",
    "days_late",
    "failed_attempts",
    "highest_level",
    "fees_charged",
)


def _behaviour_row(b: Any) -> list[Any]:
    return [
        b.customer_id,
        b.grade,
        b.score,
        b.invoices,
        b.paid_on_time,
        b.paid_late,
        b.overdue,
        b.average_days_late,
        b.failed_attempts,
        b.highest_level,
    ]


@dunning_app.command("behaviour")
def behaviour(
    customer: Annotated[str | None, typer.Argument(help="The customer (omit with --all).")] = None,
    all_customers: Annotated[
        bool, typer.Option("--all", help="Every customer (the base report).")
    ] = False,
    grade: Annotated[str, typer.Option(help="With --all: only this class (A-D).")] = "",
    csv_out: CsvOut = None,
    data_dir: DataDir = Path("data"),
    addr: Address = None,
) -> None:
    """Payment behaviour: one customer's invoices and class, or every customer's summary."""
    from reckon.dunning.v1 import dunning_pb2 as pb

    if (customer is None) == (not all_customers):
        raise _fail("give a CUSTOMER or --all (not both)")
    if customer is not None:
        reply = _call(
            data_dir,
            addr,
            lambda stub: stub.GetPaymentBehaviour(
                pb.GetPaymentBehaviourRequest(customer_id=customer)
            ),
        )
        rows = [
            [
                o.invoice_id,
                o.account_id,
                _money(o.total),
                _date(o.due_date),
                _date(o.paid_date),
                o.outcome,
                o.days_late,
                o.failed_attempts,
                o.highest_level,
                _money(o.fees_charged),
            ]
            for o in reply.outcomes
        ]
        summary = _behaviour_row(reply.behaviour)
        if csv_out is not None:
            _write_csv(csv_out, OUTCOME_COLUMNS, rows)
        else:
            table = Table(*OUTCOME_COLUMNS)
            for row in rows:
                table.add_row(*(escape(str(c)) for c in row))
            console.print(table)
        console.print(
            ", ".join(f"{k}={v}" for k, v in zip(BEHAVIOUR_COLUMNS, summary, strict=True))
        )
        return

    def fetch_all(stub: Any) -> Awaitable[list[Any]]:
        async def pages() -> list[Any]:
            found: list[Any] = []
            token = ""
            while True:
                reply = await stub.ListPaymentBehaviours(
                    pb.ListPaymentBehavioursRequest(grade=grade, page_size=1000, page_token=token)
                )
                found.extend(reply.behaviours)
                token = reply.next_page_token
                if not token:
                    return found

        return pages()

    rows = [_behaviour_row(b) for b in _call(data_dir, addr, fetch_all)]
    if csv_out is not None:
        _write_csv(csv_out, BEHAVIOUR_COLUMNS, rows)
        return
    table = Table(*BEHAVIOUR_COLUMNS)
    for row in rows:
        table.add_row(*(escape(str(c)) for c in row))
    console.print(table)


@dunning_app.command("exempt")
def exempt(
    account: str,
    reason: Annotated[str, typer.Option(help="Why (e.g. key account).")] = "",
    until: Annotated[str | None, typer.Option(help="Last exempt day (YYYY-MM-DD).")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the exemption.")] = False,
    data_dir: DataDir = Path("data"),
    addr: Address = None,
) -> None:
    """Keep an account out of dunning until a date (or end its exemption)."""
    from google.type import date_pb2

    from reckon.dunning.v1 import dunning_pb2 as pb

    day = _parse_date(until, "--until")
    request = pb.SetExemptionRequest(account_id=account, reason=reason, clear=clear)
    if day is not None:
        request.end_date.CopyFrom(date_pb2.Date(year=day.year, month=day.month, day=day.day))
    reply = _call(data_dir, addr, lambda stub: stub.SetExemption(request))
    if clear:
        console.print(f"{reply.account_id}: exemption removed")
    else:
        console.print(f"{reply.account_id}: exempt until {_date(reply.end_date)} ({reply.reason})")
