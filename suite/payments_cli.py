"""``reckon payments ...``: the operator's side of the payments service.

* ``history ACCOUNT`` (or ``--customer``): every payment with its attempts;
* ``show PAYMENT``: one payment, its attempts and allocations;
* ``pay ACCOUNT AMOUNT``: record money received at a desk, terminal or by transfer,
  or charge the method on file (``--channel online_card``);
* ``refund PAYMENT [AMOUNT]``;
* ``import-statement FILE``: a camt.053 bank statement, with what matched and why not;
* ``report DAY``: the reconciliation report per channel.

The service is found at ``--addr`` / ``PAYMENTS_ADDR`` with ``RECKON_SERVICE_TOKEN``,
else at the address and token of the suite running from ``--data-dir``.
Exit status: 0 done, 1 refused by the service, 2 unreachable or misused.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import grpc
import typer
from google.type import date_pb2, money_pb2
from rich.console import Console
from rich.table import Table

from services.common.grpc_client import open_channel
from services.common.grpc_errors import details_of
from suite.rating_cli import Target, _fail, _money, _print_error
from suite.service_token import TOKEN_ENV
from suite.state import SuiteStateError, read_state

T = TypeVar("T")
ADDRESS_ENV: Final = "PAYMENTS_ADDR"

payments_app = typer.Typer(
    help="Payments: history, manual payments, refunds, bank statements, reconciliation.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(highlight=False)

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="RECKON_DATA_DIR", help="Data directory of the suite."),
]
Address = Annotated[
    str | None,
    typer.Option("--addr", envvar=ADDRESS_ENV, help="host:port of the payments service."),
]


def _target(data_dir: Path, address: str | None) -> Target:
    token = os.environ.get(TOKEN_ENV, "")
    if address and token:
        return Target(address, token)
    try:
        state = read_state(data_dir)
        found = address or state.address_of("payments")
        if not found:
            raise _fail("the running suite has no payments service")
        return Target(found, token or state.token())
    except (SuiteStateError, OSError) as exc:
        raise _fail(f"{exc}; start it with `reckon up` or set {ADDRESS_ENV}") from None


def _call(target: Target, work: Callable[[Any], Awaitable[T]]) -> T:
    from reckon.payments.v1 import payments_pb2_grpc

    async def conversation() -> T:
        async with open_channel(target.address, target.token, traced=False) as channel:
            return await work(payments_pb2_grpc.PaymentsServiceStub(channel))

    try:
        return asyncio.run(conversation())
    except grpc.aio.AioRpcError as exc:
        details = details_of(exc)
        if details.code == grpc.StatusCode.UNAVAILABLE:
            raise _fail(f"payments service at {target.address} is unavailable") from None
        _print_error(details)
        raise typer.Exit(1) from None


def _amount(text: str, currency: str) -> money_pb2.Money:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _fail(f"{text!r} is not an amount") from None
    units = int(value)
    return money_pb2.Money(
        currency_code=currency, units=units, nanos=int((value - units) * 1_000_000_000)
    )


def _payments_table(payments: list[Any]) -> Table:
    from reckon.payments.v1 import payments_pb2 as pb

    table = Table("payment", "kind", "channel", "amount", "state", "decline", "attempts", "when")
    for p in payments:
        table.add_row(
            p.payment_id,
            pb.TransactionKind.Name(p.kind).removeprefix("TRANSACTION_KIND_").lower(),
            pb.Channel.Name(p.channel).removeprefix("CHANNEL_").lower(),
            _money(p.amount),
            pb.PaymentState.Name(p.state).removeprefix("PAYMENT_STATE_").lower(),
            p.decline_code or "",
            str(len(p.attempts)),
            p.create_time.ToDatetime().isoformat(timespec="seconds"),
        )
    return table


@payments_app.command("history")
def history(
    account: Annotated[str, typer.Argument(help="Account id (or use --customer).")] = "",
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")] = "",
    data_dir: DataDir = Path("data"),
    address: Address = None,
) -> None:
    """Payment history of an account or a customer."""
    from reckon.payments.v1 import payments_pb2 as pb

    async def work(stub: Any) -> list[Any]:
        found: list[Any] = []
        token = ""
        while True:
            reply = await stub.ListPayments(
                pb.ListPaymentsRequest(
                    account_id=account, customer_id=customer, page_size=500, page_token=token
                )
            )
            found.extend(reply.payments)
            token = reply.next_page_token
            if not token:
                return found

    console.print(_payments_table(_call(_target(data_dir, address), work)))


@payments_app.command("show")
def show(payment_id: str, data_dir: DataDir = Path("data"), address: Address = None) -> None:
    """One payment with every attempt and allocation."""
    from reckon.payments.v1 import payments_pb2 as pb

    async def work(stub: Any) -> Any:
        return (await stub.GetPayment(pb.GetPaymentRequest(payment_id=payment_id))).payment

    payment = _call(_target(data_dir, address), work)
    console.print(_payments_table([payment]))
    attempts = Table("attempt", "sent", "state", "decline", "provider reference")
    for a in payment.attempts:
        attempts.add_row(
            str(a.number),
            a.send_time.ToDatetime().isoformat(timespec="seconds"),
            pb.PaymentState.Name(a.state).removeprefix("PAYMENT_STATE_").lower(),
            a.decline_code,
            a.provider_reference,
        )
    console.print(attempts)
    for allocation in payment.allocations:
        console.print(f"allocated {_money(allocation.amount)} to {allocation.invoice_id}")
    if payment.credit.units or payment.credit.nanos:
        console.print(f"account credit {_money(payment.credit)}")


@payments_app.command("pay")
def pay(
    account: str,
    amount: str,
    currency: Annotated[str, typer.Option("--currency")] = "EUR",
    channel: Annotated[str, typer.Option("--channel", help="cash_desk, terminal, ...")] = (
        "cash_desk"
    ),
    invoice: Annotated[
        list[str] | None, typer.Option("--invoice", help="Invoice to settle.")
    ] = None,
    top_up: Annotated[bool, typer.Option("--top-up", help="Credit the prepaid balance.")] = False,
    reference: Annotated[str, typer.Option("--reference", help="Receipt or slip.")] = "",
    request_id: Annotated[str, typer.Option("--request-id")] = "",
    data_dir: DataDir = Path("data"),
    address: Address = None,
) -> None:
    """Record or take a payment (oldest invoices first; the rest becomes account credit)."""
    from reckon.payments.v1 import payments_pb2 as pb

    try:
        channel_value = pb.Channel.Value(f"CHANNEL_{channel.upper()}")
    except ValueError:
        raise _fail(f"unknown channel {channel!r}") from None
    request = pb.CreatePaymentRequest(
        account_id=account,
        amount=_amount(amount, currency),
        channel=channel_value,
        purpose=pb.PAYMENT_PURPOSE_TOP_UP if top_up else pb.PAYMENT_PURPOSE_INVOICE,
        invoice_ids=invoice or [],
        external_reference=reference,
        request_id=request_id or f"cli-{uuid.uuid4()}",
    )

    async def work(stub: Any) -> Any:
        return (await stub.CreatePayment(request)).payment

    console.print(_payments_table([_call(_target(data_dir, address), work)]))


@payments_app.command("refund")
def refund(
    payment_id: str,
    amount: Annotated[str, typer.Argument(help="Amount; all that is left when omitted.")] = "",
    currency: Annotated[str, typer.Option("--currency")] = "EUR",
    reason: Annotated[str, typer.Option("--reason")] = "",
    request_id: Annotated[str, typer.Option("--request-id")] = "",
    data_dir: DataDir = Path("data"),
    address: Address = None,
) -> None:
    """Refund all or part of a payment; the invoice it paid is reopened."""
    from reckon.payments.v1 import payments_pb2 as pb

    request = pb.RefundPaymentRequest(
        payment_id=payment_id, reason=reason, request_id=request_id or f"cli-{uuid.uuid4()}"
    )
    if amount:
        request.amount.CopyFrom(_amount(amount, currency))

    async def work(stub: Any) -> Any:
        return (await stub.RefundPayment(request)).refund

    console.print(_payments_table([_call(_target(data_dir, address), work)]))


@payments_app.command("import-statement")
def import_statement(path: Path, data_dir: DataDir = Path("data"), address: Address = None) -> None:
    """Import a camt.053 or MT940 statement: matched transfers are allocated, the rest listed."""
    from reckon.payments.v1 import payments_pb2 as pb
    from services.payments.service_layer.statement_files import looks_like_mt940

    try:
        document = path.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc}") from None
    request = (
        pb.ImportBankStatementRequest(mt940=document)
        if looks_like_mt940(document)
        else pb.ImportBankStatementRequest(camt053=document)
    )

    async def work(stub: Any) -> Any:
        return await stub.ImportBankStatement(request)

    reply = _call(_target(data_dir, address), work)
    table = Table("entry", "booked", "amount", "reference", "outcome", "reason", "payment")
    for line in reply.lines:
        booked = (
            date(line.booking_date.year, line.booking_date.month, line.booking_date.day)
            if line.HasField("booking_date")
            else None
        )
        table.add_row(
            line.entry_reference,
            booked.isoformat() if booked else "",
            _money(line.amount) if line.HasField("amount") else "",
            line.reference,
            line.outcome,
            line.reason,
            line.payment_id,
        )
    console.print(f"statement {reply.statement_id}")
    console.print(table)


@payments_app.command("report")
def report(
    day: Annotated[str, typer.Argument(help="YYYY-MM-DD (UTC).")],
    data_dir: DataDir = Path("data"),
    address: Address = None,
) -> None:
    """Reconciliation report of a day per channel, against the provider's settlement and payouts."""
    from reckon.payments.v1 import payments_pb2 as pb

    try:
        when = date.fromisoformat(day)
    except ValueError:
        raise _fail(f"{day!r} is not a date (YYYY-MM-DD)") from None

    async def work(stub: Any) -> Any:
        return await stub.GetReconciliationReport(
            pb.GetReconciliationReportRequest(
                date=date_pb2.Date(year=when.year, month=when.month, day=when.day)
            )
        )

    reply = _call(_target(data_dir, address), work)
    table = Table(
        "channel",
        "payments",
        "collected",
        "reversals",
        "reversed",
        "net",
        "open",
        "provider gross",
        "fees",
        "provider net",
        "difference",
    )
    differences = Table("channel", "kind", "payment", "provider reference", "recorded", "settled")
    for t in reply.totals:
        channel = pb.Channel.Name(t.channel).removeprefix("CHANNEL_").lower()
        table.add_row(
            channel,
            str(t.payments),
            _money(t.collected),
            str(t.reversals),
            _money(t.reversed),
            _money(t.net),
            str(t.unresolved),
            *(
                _money(m) if t.HasField(name) else ""
                for name, m in (
                    ("provider_gross", t.provider_gross),
                    ("provider_fees", t.provider_fees),
                    ("provider_net", t.provider_net),
                    ("difference", t.difference),
                )
            ),
        )
        for d in t.differences:
            differences.add_row(
                channel,
                d.kind,
                d.payment_id,
                d.provider_reference,
                _money(d.recorded) if d.HasField("recorded") else "",
                _money(d.settled) if d.HasField("settled") else "",
            )
    console.print(table)
    if reply.provider_error:
        console.print(f"provider {reply.provider}: {reply.provider_error}")
    if differences.row_count:
        console.print(differences)
    for payout in reply.payouts:
        console.print(
            f"payout {payout.payout_id} from {reply.provider}: {_money(payout.amount)} "
            f"({payout.status})"
        )
