"""Credit notes: full, per line or by amount; never more than was invoiced.

A credit note has its own gapless series (``CN-<year>``), references the
invoice, reduces what is due on it, and what the invoice no longer owes goes
to the account's credit (consumed by the next invoice).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.ids import new_id
from services.common.money import Money
from services.invoicing.domain import events
from services.invoicing.domain.cycles import local_date
from services.invoicing.domain.model import CreditNote, CreditNoteLine, Invoice, InvoiceStatus
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork

EXCEEDS = "CREDIT_EXCEEDS_INVOICED"


@dataclass(frozen=True)
class LineCredit:
    line_id: str
    amount: Money | None  # None: what is left of the line


def _credited(
    uow: InvoicingUnitOfWork, invoice: Invoice
) -> tuple[dict[str, Money], dict[tuple[str, Decimal], Money]]:
    """What earlier credit notes took, per invoice line and per VAT group."""
    per_line: dict[str, Money] = {}
    per_group: dict[tuple[str, Decimal], Money] = {}
    zero = Money.zero(invoice.currency)
    for note in uow.credit_notes.of_invoice(invoice.invoice_id):
        for line in note.lines:
            if line.invoice_line_id:
                per_line[line.invoice_line_id] = (
                    per_line.get(line.invoice_line_id, zero) + line.net_amount
                )
            key = (line.tax_category, line.tax_rate.normalize())
            per_group[key] = per_group.get(key, zero) + line.net_amount
    return per_line, per_group


def _check_creditable(invoice: Invoice) -> None:
    if invoice.status in (InvoiceStatus.DRAFT, InvoiceStatus.VOID):
        raise FailedPrecondition(
            f"invoice {invoice.invoice_id} is {invoice.status.value}: only a finalised invoice "
            "that is not void can be credited",
            reason="INVALID_INVOICE_STATUS",
        )


def plan_lines(
    uow: InvoicingUnitOfWork,
    invoice: Invoice,
    *,
    full: bool,
    lines: list[LineCredit],
    amount: Money | None,
    tax_category: str,
    tax_rate: Decimal | None,
) -> list[CreditNoteLine]:
    """The credit note's lines, checked against what is left to credit."""
    _check_creditable(invoice)
    per_line, per_group = _credited(uow, invoice)
    zero = Money.zero(invoice.currency)
    groups = {(g.tax_category, g.tax_rate.normalize()): g.taxable_amount for g in invoice.breakdown}
    by_id = {line.line_id: line for line in invoice.lines}
    out: list[CreditNoteLine] = []
    if full:
        for (category, rate), taxable in sorted(groups.items()):
            left = taxable - per_group.get((category, rate), zero)
            if left.is_positive():
                out.append(
                    CreditNoteLine(
                        str(len(out) + 1),
                        f"Credit of invoice {invoice.number}",
                        left,
                        category,
                        rate,
                    )
                )
        if not out:
            raise FailedPrecondition(
                f"invoice {invoice.number} is already fully credited", reason=EXCEEDS
            )
        return out
    if lines:
        for index, request in enumerate(lines):
            line = by_id.get(request.line_id)
            if line is None:
                raise InvalidArgument.field(
                    f"lines[{index}].line_id", f"invoice has no line {request.line_id!r}"
                )
            left = line.net_amount - per_line.get(line.line_id, zero)
            wanted = request.amount if request.amount is not None else left
            if wanted.currency != invoice.currency:
                raise InvalidArgument.field(
                    f"lines[{index}].amount", f"must be in {invoice.currency}"
                )
            if not wanted.is_positive() or wanted > left:
                raise FailedPrecondition(
                    f"line {line.line_id} has {left} left to credit; {wanted} asked", reason=EXCEEDS
                )
            out.append(
                CreditNoteLine(
                    str(len(out) + 1),
                    line.description,
                    wanted,
                    line.tax_category,
                    line.tax_rate,
                    line.line_id,
                )
            )
        _check_groups(out, groups, per_group, zero)
        return out
    assert amount is not None
    if amount.currency != invoice.currency:
        raise InvalidArgument.field("amount", f"must be in {invoice.currency}")
    key = _group_of(groups, tax_category, tax_rate)
    out.append(CreditNoteLine("1", f"Credit on invoice {invoice.number}", amount, key[0], key[1]))
    _check_groups(out, groups, per_group, zero)
    return out


def _group_of(
    groups: dict[tuple[str, Decimal], Money], category: str, rate: Decimal | None
) -> tuple[str, Decimal]:
    if not category and rate is None:
        positive = [k for k, v in groups.items() if v.is_positive()]
        if len(positive) != 1:
            raise InvalidArgument.field(
                "tax_category", "the invoice has several VAT categories or rates: name one"
            )
        return positive[0]
    for key in groups:
        if key[0] == category and (rate is None or key[1] == rate.normalize()):
            return key
    raise InvalidArgument.field("tax_category", f"the invoice has no VAT group {category} {rate}")


def _check_groups(
    out: list[CreditNoteLine],
    groups: dict[tuple[str, Decimal], Money],
    per_group: dict[tuple[str, Decimal], Money],
    zero: Money,
) -> None:
    asked: dict[tuple[str, Decimal], Money] = {}
    for line in out:
        key = (line.tax_category, line.tax_rate.normalize())
        asked[key] = asked.get(key, zero) + line.net_amount
    for key, wanted in asked.items():
        left = groups.get(key, zero) - per_group.get(key, zero)
        if wanted > left:
            raise FailedPrecondition(
                f"only {left} is left to credit at {key[0]} {key[1]} %; {wanted} asked",
                reason=EXCEEDS,
            )


def issue(
    uow: InvoicingUnitOfWork,
    invoice: Invoice,
    lines: list[CreditNoteLine],
    *,
    reason: str,
    now: datetime,
) -> CreditNote:
    """Number the credit note, apply it to the invoice and the account; announce it."""
    issue_date = local_date(now, invoice.time_zone)
    series = f"CN-{issue_date.year}"
    note = CreditNote(
        credit_note_id=new_id("cn"),
        number="",
        series=series,
        invoice_id=invoice.invoice_id,
        invoice_number=invoice.number,
        account_id=invoice.account_id,
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        issue_date=issue_date,
        reason=reason,
        lines=lines,
        language_code=invoice.language_code,
        create_time=now,
    )
    if not note.gross.is_positive():
        raise FailedPrecondition("a credit note must credit a positive total", reason=EXCEEDS)
    note.number = f"{series}-{uow.numbers.next(series):06d}"
    before = invoice.status
    to_account = invoice.apply_credit_note(note.number, note.gross, now)
    note.credited_to_account = to_account
    if to_account.is_positive():
        uow.credit.add(invoice.account_id, to_account, "credit_note", note.credit_note_id, now)
    uow.credit_notes.add(note)
    uow.invoices.save(invoice)
    uow.publish(events.CreditNoteIssued(**events.facts(invoice), **events.credit_note_facts(note)))
    if before != InvoiceStatus.PAID and invoice.status == InvoiceStatus.PAID:
        uow.publish(events.InvoicePaid(**events.facts(invoice), payment_id=""))
    return note


def issue_amount(
    uow: InvoicingUnitOfWork,
    invoice: Invoice,
    amount: Money,
    category: str,
    rate: Decimal | None,
    *,
    reason: str,
    now: datetime,
) -> CreditNote:
    lines = plan_lines(
        uow, invoice, full=False, lines=[], amount=amount, tax_category=category, tax_rate=rate
    )
    return issue(uow, invoice, lines, reason=reason, now=now)
