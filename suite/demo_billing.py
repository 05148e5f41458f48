"""The postpaid half of ``reckon demo``: the cycle ends, the bill run invoices, the card pays.

Played on the suite's test clock (``reckon up --test-clock``; the temporary suite of
``reckon demo`` is started that way). After the conference call's CDRs are rated
with the customer's own price package and a card is on file, the story moves the
test clock past the account's cycle end. Invoicing's daily bill run notices the
move and invoices the account; because the clock move carries the story's trace
context (ADR 0054), that run, the invoice it issues, the card payment on
``InvoiceIssued``, ``PaymentSucceeded`` and the e-mails are all in the story's
one trace. The invoice's lines, totals and number are printed, its PDF and UBL
fetched with ``GetInvoiceDocument`` into the data directory, and the two e-mails
shown as they arrived at the mail catcher (issue 10 item 9, 11 item 9, 12 item 7).

Then a second account whose card declines with a retryable ``processing_error``
(the sandbox's recovering card): the story moves the clock to each planned retry
until the last try succeeds.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.type import money_pb2
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table

from reckon.invoicing.v1 import invoicing_pb2
from reckon.payments.v1 import payments_pb2
from services.common.clock import SharedTestClock
from services.common.proto_convert import timestamp_from_proto
from suite.demo_payments import (
    CALL_TIMEOUT_SECONDS,
    _card,
    _invoicing,
    _issue_invoice,
    _payments_of,
    _until,
    money_text,
)
from suite.mail_catcher import mail_dir

if TYPE_CHECKING:
    from suite.demo_story import Story
    from suite.state import SuiteState

# The sandbox card that declines ``processing_error`` four times, then succeeds.
RECOVERING_CARD = "4000000000005118"
MAIL_WAIT_SECONDS = 30.0


def _suite(story: Story) -> SuiteState:
    state: SuiteState = story.fact("suite")
    return state


def move_clock_to(story: Story, instant: datetime) -> datetime:
    """Move the suite's test clock (inside the current step's span: ADR 0054)."""
    clock = SharedTestClock(_suite(story).redis_url)
    try:
        clock.refresh()
        if instant > clock.now():
            clock.set(instant)
        return clock.now()
    finally:
        clock.close()


def _status(invoice: Any) -> str:
    return invoicing_pb2.InvoiceStatus.Name(invoice.status).removeprefix("INVOICE_STATUS_")


async def _invoices_of(story: Story, account_id: str) -> list[Any]:
    reply = await _invoicing(story).SearchInvoices(
        invoicing_pb2.SearchInvoicesRequest(account_id=account_id, page_size=50),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return list(reply.invoices)


async def cycle_ends(story: Story) -> RenderableType:
    subscription = story.fact("subscription")
    end = timestamp_from_proto(subscription.current_period_end_time)
    # The daily run starts once per UTC date: the first minute of the UTC day after
    # the cycle's end is a new date in any zone, so it is sure to bill the account.
    target = (end + timedelta(days=1)).replace(hour=0, minute=1, second=0, microsecond=0)
    moved = move_clock_to(story, target)
    story.facts["cycle_end"] = end
    return (
        f"cycle ends {end.isoformat(timespec='minutes')}; test clock moved to "
        f"[bold]{moved.isoformat(timespec='minutes')}[/] (`reckon clock show`)"
    )


async def bill_run_invoice(story: Story) -> RenderableType:
    account = story.fact("account")

    async def issued() -> Any:
        found = [
            i
            for i in await _invoices_of(story, account.account_id)
            if i.status != invoicing_pb2.INVOICE_STATUS_DRAFT and i.number and i.bill_run_id
        ]
        return found[0] if found else None

    found = await _until("the daily bill run to invoice the account", issued)
    # Search answers summaries; the invoice itself has the lines.
    invoice = (
        await _invoicing(story).GetInvoice(
            invoicing_pb2.GetInvoiceRequest(invoice_id=found.invoice_id),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    ).invoice
    story.facts["invoice"] = invoice
    issued_on, due_on = (
        f"{d.year:04d}-{d.month:02d}-{d.day:02d}" for d in (invoice.issue_date, invoice.due_date)
    )
    heading = (
        f"    invoice [bold]{invoice.number}[/] by bill run {invoice.bill_run_id}\n"
        f"    issued {issued_on}, due {due_on}, {invoice.currency_code}"
    )
    table = Table("line", "quantity", "unit price", "net", "VAT")
    for line in invoice.lines:
        priced = line.HasField("unit_price") and (line.unit_price.units or line.unit_price.nanos)
        unit = money_text(line.unit_price) if priced else "-"
        table.add_row(
            escape(line.description),
            f"{line.quantity} {line.unit_code}".strip(),
            unit,
            money_text(line.net_amount),
            f"{line.tax_rate}% {money_text(line.tax_amount)}",
        )
    totals = (
        f"    net {money_text(invoice.total_net)} + VAT {money_text(invoice.total_tax)} = "
        f"[bold]{money_text(invoice.total_gross)}[/], status {_status(invoice)}"
    )
    return Group(heading, table, totals)


async def invoice_documents(story: Story) -> RenderableType:
    invoice = story.fact("invoice")
    folder = Path(_suite(story).data_dir) / "invoices"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in (invoicing_pb2.DOCUMENT_FORMAT_PDF, invoicing_pb2.DOCUMENT_FORMAT_UBL):
        reply = await _invoicing(story).GetInvoiceDocument(
            invoicing_pb2.GetInvoiceDocumentRequest(invoice_id=invoice.invoice_id, format=kind),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        path = folder / Path(reply.file_name).name
        path.write_bytes(reply.content)
        written.append(f"    {reply.media_type:<22} {len(reply.content):>7} bytes  {path}")
    return "\n".join(written)


async def invoice_paid(story: Story) -> RenderableType:
    account = story.fact("account")
    invoice = story.fact("invoice")

    async def paid() -> Any:
        found = await _invoicing(story).GetInvoice(
            invoicing_pb2.GetInvoiceRequest(invoice_id=invoice.invoice_id),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return found.invoice if found.invoice.status == invoicing_pb2.INVOICE_STATUS_PAID else None

    settled = await _until(f"invoice {invoice.number} to be paid", paid)
    payments = [
        p
        for p in await _payments_of(story, account.account_id)
        if any(a.invoice_id == invoice.invoice_id for a in p.allocations)
    ]
    paid_by = ", ".join(
        f"{p.payment_id} ({payments_pb2.PaymentState.Name(p.state).removeprefix('PAYMENT_STATE_')})"
        for p in payments
    )
    return (
        f"    payments charged the card on file on InvoiceIssued: {paid_by}; invoice "
        f"{settled.number} is [bold green]{_status(settled)}[/], "
        f"{money_text(settled.amount_due)} due"
    )


def _mail_to(data_dir: Path, address: str) -> list[tuple[Path, EmailMessage]]:
    found = []
    for path in sorted(mail_dir(data_dir).glob("*.eml")):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        if address in str(message.get("To", "")):
            found.append((path, message))  # type: ignore[arg-type]
    return found


def _mail_text(path: Path, message: EmailMessage) -> RenderableType:
    attachments = [
        f"{part.get_filename()} ({len(part.get_payload(decode=True) or b'')} bytes)"
        for part in message.iter_attachments()
    ]
    body = message.get_body(preferencelist=("plain", "html"))
    text = body.get_content() if body is not None else ""
    lines = [line for line in str(text).splitlines() if line.strip()][:8]
    head = Table.grid(padding=(0, 1))
    head.add_row("[dim]file[/]", str(path.name))
    for name in ("From", "To", "Subject", "Date"):
        head.add_row(f"[dim]{name}[/]", escape(str(message.get(name, ""))))
    head.add_row("[dim]attached[/]", escape(", ".join(attachments) or "-"))
    return Group(head, *(f"      [italic]{escape(line)}[/]" for line in lines), "")


async def mails_arrived(story: Story) -> RenderableType:
    customer = story.fact("customer")
    invoice = story.fact("invoice")
    data_dir = Path(_suite(story).data_dir)
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while True:
        mails = [
            (path, message)
            for path, message in _mail_to(data_dir, customer.email)
            if invoice.number in str(message.get("Subject", ""))
            or invoice.number in str(message.get_body(("plain", "html")) or "")
        ]
        if len(mails) >= 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    if not mails:
        from suite.demo_story import StoryError

        raise StoryError(f"no e-mail about {invoice.number} reached {mail_dir(data_dir)}")
    return Group(
        f"    {len(mails)} e-mails for {invoice.number} at the mail catcher "
        f"({mail_dir(data_dir)}):",
        *(_mail_text(path, message) for path, message in mails),
    )


async def declined_then_retried(story: Story) -> RenderableType:
    from reckon.accounts.v1 import accounts_pb2
    from suite.demo_payments import request_id

    customer = story.fact("customer")
    reply = await story.accounts.CreateAccount(
        accounts_pb2.CreateAccountRequest(
            account=accounts_pb2.Account(
                customer_id=customer.customer_id,
                display_name="Second line",
                currency_code="EUR",
                time_zone="Europe/Amsterdam",
                bill_cycle_day=1,
                tax_region="NL",
                payment_terms_days=14,
                payment_mode=accounts_pb2.PAYMENT_MODE_POSTPAID,
                credit_limit=money_pb2.Money(currency_code="EUR", units=100),
            ),
            request_id=request_id(),
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    account = reply.account
    await _card(story, account, RECOVERING_CARD)
    invoice = await _issue_invoice(story, account.account_id, "Second line", "15.00")
    table = Table("try", "test clock", "outcome", "next retry", title_justify="left",
                  title=f"invoice {invoice.number} ({money_text(invoice.total_gross)}) "
                  f"collected from card **** {RECOVERING_CARD[-4:]}")  # fmt: skip
    seen = 0
    while True:

        async def answered(after: int = seen) -> Any:
            # Decided by the newest attempt's own outcome: a payment read while its next
            # attempt starts can show the new attempt beside the payment's state before
            # it (two statements at READ COMMITTED), so the payment's state alone could
            # call a try that is still in flight declined.
            for p in await _payments_of(story, account.account_id):
                if len(p.attempts) <= after:
                    continue
                last = p.attempts[-1]
                if last.state == payments_pb2.PAYMENT_STATE_SUCCEEDED:
                    return p
                if (
                    last.state == payments_pb2.PAYMENT_STATE_FAILED
                    and p.state == payments_pb2.PAYMENT_STATE_FAILED
                    and (
                        not p.HasField("next_retry_time")
                        or p.next_retry_time.ToDatetime() > last.send_time.ToDatetime()
                    )
                ):
                    return p
            return None

        payment = await _until(f"try {seen + 1} of the collection", answered)
        seen = len(payment.attempts)
        attempt = payment.attempts[-1]
        at = timestamp_from_proto(attempt.send_time) if attempt.HasField("send_time") else None
        if attempt.state == payments_pb2.PAYMENT_STATE_SUCCEEDED:
            table.add_row(str(seen), f"{at:%Y-%m-%d %H:%M}" if at else "-",
                          "[bold green]SUCCEEDED[/]", "-")  # fmt: skip
            break
        retry = (
            timestamp_from_proto(payment.next_retry_time)
            if payment.HasField("next_retry_time")
            else None
        )
        table.add_row(str(seen), f"{at:%Y-%m-%d %H:%M}" if at else "-",
                      f"[yellow]declined[/] {attempt.decline_code or payment.decline_code}",
                      f"{retry:%Y-%m-%d %H:%M}" if retry else "none")  # fmt: skip
        if retry is None:
            from suite.demo_story import StoryError

            raise StoryError(f"{payment.payment_id}: declined and no retry is planned")
        move_clock_to(story, retry.astimezone(UTC) + timedelta(seconds=1))
    settled = await _invoicing(story).GetInvoice(
        invoicing_pb2.GetInvoiceRequest(invoice_id=invoice.invoice_id),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return Group(
        table,
        f"    {payment.payment_id}: the last try succeeded, invoice {settled.invoice.number} "
        f"is [bold green]{_status(settled.invoice)}[/]",
    )


BILLING_STEPS = [
    (
        "The cycle ends: the test clock moves past the account's cycle end",
        ("accounts", "invoicing"),
        cycle_ends,
    ),
    (
        "The daily bill run invoices the customer with their own price package",
        ("accounts", "invoicing"),
        bill_run_invoice,
    ),
    ("The invoice's PDF and UBL (GetInvoiceDocument)", ("invoicing",), invoice_documents),
    (
        "The card on file is charged: the invoice is paid",
        ("accounts", "invoicing", "payments"),
        invoice_paid,
    ),
    (
        "The invoice e-mail (PDF attached) and the payment confirmation, as they arrived",
        ("invoicing", "payments", "notifications"),
        mails_arrived,
    ),
    (
        "A second account: its card declines (processing error), retried on the test clock",
        ("accounts", "invoicing", "payments"),
        declined_then_retried,
    ),
]
