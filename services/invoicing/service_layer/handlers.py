"""Use cases of invoices: lifecycle, payments, account credit, pending items, credit
notes, disputes and search. Each runs in one unit of work: all or nothing.

Mutations take the caller's ``request_id`` and the request's fingerprint: a
repeat answers with the resource the first request produced, as it is now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, ReckonError
from services.common.ids import new_id
from services.common.money import Money
from services.invoicing.domain import events
from services.invoicing.domain.arithmetic import net_from_inclusive
from services.invoicing.domain.model import (
    CreditNote,
    CreditNoteLine,
    Dispute,
    DisputeStatus,
    HistoryEntry,
    Invoice,
    InvoiceStatus,
    LineKind,
    PendingItem,
)
from services.invoicing.domain.notifications import InvoiceNotification
from services.invoicing.service_layer import credit_notes, drafting
from services.invoicing.service_layer.credit_notes import LineCredit
from services.invoicing.service_layer.unit_of_work import InvoiceFilter, InvoicingUnitOfWork

UowFactory = Callable[[], InvoicingUnitOfWork]


@dataclass(frozen=True)
class Idem:
    """A mutation's idempotency key and request fingerprint (both may be empty)."""

    request_id: str = ""
    fingerprint: str = ""


@dataclass(frozen=True)
class InvoiceDetails:
    invoice: Invoice
    history: list[HistoryEntry]
    payments: list[tuple[str, Money, str, datetime]]
    credit_notes: list[CreditNote]
    disputes: list[Dispute]
    # As notifications announced them (ADR 0063), oldest first.
    notifications: list[InvoiceNotification] = field(default_factory=list)


def _invoice(uow: InvoicingUnitOfWork, invoice_id: str, *, lines: bool = True) -> Invoice:
    invoice = uow.invoices.get(invoice_id, lines=lines)
    if invoice is None:
        raise NotFound(f"no invoice {invoice_id}", reason="INVOICE_NOT_FOUND")
    return invoice


def _currency(invoice_currency: str, amount: Money, field: str) -> None:
    if amount.currency != invoice_currency:
        raise FailedPrecondition(
            f"{field} is in {amount.currency}, the invoice in {invoice_currency}",
            reason="CURRENCY_MISMATCH",
        )


def get_invoice(uow_factory: UowFactory, invoice_id: str) -> InvoiceDetails:
    with uow_factory() as uow:
        invoice = _invoice(uow, invoice_id)
        return InvoiceDetails(
            invoice,
            uow.invoices.history(invoice_id),
            uow.invoices.payments(invoice_id),
            uow.credit_notes.of_invoice(invoice_id),
            uow.disputes.of_invoice(invoice_id),
            uow.notifications.of_invoice(invoice_id),
        )


def search_invoices(
    uow_factory: UowFactory, where: InvoiceFilter, *, after: str, limit: int
) -> list[Invoice]:
    with uow_factory() as uow:
        today = uow.clock.now().date()
        return uow.invoices.search(where, today=today, after=after, limit=limit)


def _mutate_invoice(
    uow_factory: UowFactory,
    scope: str,
    invoice_id: str,
    idem: Idem,
    change: Callable[[InvoicingUnitOfWork, Invoice, datetime], None],
) -> Invoice:
    with uow_factory() as uow:
        replayed = uow.replayed_resource(scope, idem.request_id, idem.fingerprint)
        if replayed is not None:
            return _invoice(uow, replayed)
        invoice = _invoice(uow, invoice_id)
        change(uow, invoice, uow.clock.now())
        uow.remember_request(scope, idem.request_id, idem.fingerprint, invoice_id)
        uow.commit()
        return invoice


def finalize_invoice(uow_factory: UowFactory, invoice_id: str, idem: Idem) -> Invoice:
    def change(uow: InvoicingUnitOfWork, invoice: Invoice, now: datetime) -> None:
        drafting.finalize(uow, invoice, now)

    return _mutate_invoice(uow_factory, "FinalizeInvoice", invoice_id, idem, change)


def void_invoice(uow_factory: UowFactory, invoice_id: str, reason: str, idem: Idem) -> Invoice:
    def change(uow: InvoicingUnitOfWork, invoice: Invoice, now: datetime) -> None:
        if invoice.status == InvoiceStatus.DRAFT:
            # A draft has no number: voiding it deletes it and frees what it took.
            uow.usage.release(invoice.invoice_id)
            uow.pending.release(invoice.invoice_id)
            uow.invoices.delete_draft(invoice.invoice_id)
            invoice.status = InvoiceStatus.VOID
            return
        invoice.void(reason, now)
        uow.invoices.save(invoice)
        uow.publish(events.InvoiceVoided(**events.facts(invoice), reason=reason))

    return _mutate_invoice(uow_factory, "VoidInvoice", invoice_id, idem, change)


def mark_uncollectible(
    uow_factory: UowFactory, invoice_id: str, reason: str, idem: Idem
) -> Invoice:
    def change(uow: InvoicingUnitOfWork, invoice: Invoice, now: datetime) -> None:
        invoice.mark_uncollectible(reason, now)
        uow.invoices.save(invoice)
        uow.publish(events.InvoiceMarkedUncollectible(**events.facts(invoice), reason=reason))

    return _mutate_invoice(uow_factory, "MarkInvoiceUncollectible", invoice_id, idem, change)


def send_invoice(uow_factory: UowFactory, invoice_id: str, idem: Idem) -> Invoice:
    def change(uow: InvoicingUnitOfWork, invoice: Invoice, now: datetime) -> None:
        if not invoice.is_final:
            raise FailedPrecondition(
                f"invoice {invoice_id} is a DRAFT: finalise it first",
                reason="INVALID_INVOICE_STATUS",
            )
        uow.publish(events.InvoiceIssued(**events.facts(invoice), resend=True))

    return _mutate_invoice(uow_factory, "SendInvoice", invoice_id, idem, change)


def record_payment(
    uow_factory: UowFactory,
    invoice_id: str,
    payment_id: str,
    amount: Money,
    *,
    excess_to_account_credit: bool,
    idem: Idem,
    received_at: datetime | None = None,
) -> tuple[Invoice, Money]:
    credited: list[Money] = []

    def change(uow: InvoicingUnitOfWork, invoice: Invoice, now: datetime) -> None:
        _currency(invoice.currency, amount, "amount")
        payable = (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID)
        if invoice.status not in payable and not (
            excess_to_account_credit and invoice.status == InvoiceStatus.PAID
        ):
            invoice.record_payment(payment_id, amount, now)  # refuses with the status
        allocated, excess = amount, Money.zero(invoice.currency)
        if excess_to_account_credit and amount > invoice.amount_due:
            # What the invoice does not owe (all of it, once PAID) is held as account credit.
            allocated, excess = invoice.amount_due, amount - invoice.amount_due
        if allocated.is_positive():
            invoice.record_payment(payment_id, allocated, now)
            uow.invoices.add_payment(
                invoice_id, payment_id, allocated, "ALLOCATION", received_at or now
            )
            uow.invoices.save(invoice)
            facts = events.facts(invoice)
            if invoice.status == InvoiceStatus.PAID:
                uow.publish(events.InvoicePaid(**facts, payment_id=payment_id))
            else:
                uow.publish(
                    events.InvoicePartiallyPaid(**facts, payment_id=payment_id, amount=allocated)
                )
        if excess.is_positive():
            uow.credit.add(invoice.account_id, excess, "overpayment", payment_id, now)
        credited.append(excess)

    invoice = _mutate_invoice(uow_factory, "RecordPayment", invoice_id, idem, change)
    return invoice, credited[0] if credited else Money.zero(invoice.currency)


@dataclass(frozen=True)
class PaymentAllocation:
    """One item of ``RecordPayments``: what ``RecordPayment`` takes."""

    invoice_id: str
    payment_id: str
    amount: Money
    excess_to_account_credit: bool
    idem: Idem
    received_at: datetime | None = None


def record_payments(
    uow_factory: UowFactory, items: list[PaymentAllocation]
) -> list[tuple[Invoice, Money] | ReckonError]:
    """Each item exactly as ``record_payment`` (same checks, own request id and
    transaction); a refused item is its answer and the others go on."""
    results: list[tuple[Invoice, Money] | ReckonError] = []
    for item in items:
        try:
            results.append(
                record_payment(
                    uow_factory,
                    item.invoice_id,
                    item.payment_id,
                    item.amount,
                    excess_to_account_credit=item.excess_to_account_credit,
                    idem=item.idem,
                    received_at=item.received_at,
                )
            )
        except ReckonError as exc:
            results.append(exc)
    return results


def reverse_payment(
    uow_factory: UowFactory, invoice_id: str, payment_id: str, amount: Money, kind: str, idem: Idem
) -> Invoice:
    def change(uow: InvoicingUnitOfWork, invoice: Invoice, now: datetime) -> None:
        _currency(invoice.currency, amount, "amount")
        allocated = Money(uow.invoices.allocated_by(invoice_id, payment_id), invoice.currency)
        invoice.reverse_payment(payment_id, amount, allocated, kind, now)
        uow.invoices.add_payment(invoice_id, payment_id, -amount, kind, now)
        uow.invoices.save(invoice)
        uow.publish(
            events.InvoiceReopened(
                **events.facts(invoice), payment_id=payment_id, amount=amount, kind=kind
            )
        )

    return _mutate_invoice(uow_factory, "ReversePayment", invoice_id, idem, change)


def add_account_credit(
    uow_factory: UowFactory,
    account_id: str,
    amount: Money,
    reason: str,
    reference_id: str,
    idem: Idem,
) -> Money:
    with uow_factory() as uow:
        account = drafting.account_or_404(uow, account_id)
        if uow.replayed_resource("AddAccountCredit", idem.request_id, idem.fingerprint) is None:
            if amount.currency != account.currency:
                raise InvalidArgument.field("amount.currency_code", f"must be {account.currency}")
            uow.credit.add(account_id, amount, reason, reference_id, uow.clock.now())
            uow.remember_request("AddAccountCredit", idem.request_id, idem.fingerprint, account_id)
            uow.commit()
        return uow.credit.balance(account_id, account.currency)


def get_account_credit(
    uow_factory: UowFactory, account_id: str
) -> tuple[Money, list[tuple[Money, str, str, datetime]]]:
    with uow_factory() as uow:
        account = drafting.account_or_404(uow, account_id)
        return uow.credit.balance(account_id, account.currency), uow.credit.entries(account_id)


@dataclass(frozen=True)
class NewPendingItem:
    account_id: str
    description: str
    amount: Money
    kind: LineKind
    service: str
    tax_category: str
    tax_rate: Decimal | None
    reference_invoice_id: str


def add_pending_item(uow_factory: UowFactory, new: NewPendingItem, idem: Idem) -> PendingItem:
    with uow_factory() as uow:
        replayed = uow.replayed_resource("AddPendingItem", idem.request_id, idem.fingerprint)
        if replayed is not None:
            found = uow.pending.get(replayed)
            assert found is not None
            return found
        account = drafting.account_or_404(uow, new.account_id)
        if new.amount.currency != account.currency:
            raise InvalidArgument.field("amount.currency_code", f"must be {account.currency}")
        if (
            new.reference_invoice_id
            and uow.invoices.get(new.reference_invoice_id, lines=False) is None
        ):
            raise InvalidArgument.field("reference_invoice_id", "no such invoice")
        category, rate = new.tax_category, new.tax_rate
        if new.kind == LineKind.TOP_UP and not category:
            # Prepaid credit is taxed when it is used, not when it is bought: the
            # receipt of a top-up carries no VAT (category O, outside the scope).
            category, rate = "O", Decimal(0)
        item = PendingItem(
            pending_item_id=new_id("pit"),
            account_id=new.account_id,
            kind=new.kind,
            description=new.description,
            service=new.service or ("top-up" if new.kind == LineKind.TOP_UP else "other"),
            create_time=uow.clock.now(),
            amount=new.amount,
            tax_category=category,
            tax_rate=rate,
            reference_invoice_id=new.reference_invoice_id,
        )
        uow.pending.add(item, account.currency)
        uow.remember_request(
            "AddPendingItem", idem.request_id, idem.fingerprint, item.pending_item_id
        )
        uow.commit()
        return item


def list_pending_items(
    uow_factory: UowFactory, account_id: str, after: str, limit: int
) -> list[PendingItem]:
    with uow_factory() as uow:
        drafting.account_or_404(uow, account_id)
        return uow.pending.open_of(account_id, after=after, limit=limit)


def create_immediate_invoice(
    uow_factory: UowFactory, pricer: drafting.FeePricer, account_id: str, finalize: bool, idem: Idem
) -> Invoice:
    with uow_factory() as uow:
        replayed = uow.replayed_resource(
            "CreateImmediateInvoice", idem.request_id, idem.fingerprint
        )
        if replayed is not None:
            return _invoice(uow, replayed)
        account = drafting.account_or_404(uow, account_id)
        now = uow.clock.now()
        invoice = drafting.draft(
            uow, pricer, account, boundary=None, bill_run_id="", write=True, now=now
        )
        if invoice is None:
            raise FailedPrecondition(
                f"account {account_id} has no pending items to invoice", reason="NOTHING_TO_INVOICE"
            )
        if finalize:
            drafting.finalize(uow, invoice, now)
        uow.remember_request(
            "CreateImmediateInvoice", idem.request_id, idem.fingerprint, invoice.invoice_id
        )
        uow.commit()
        return invoice


@dataclass(frozen=True)
class CreditRequest:
    invoice_id: str
    reason: str
    full: bool
    lines: list[LineCredit]
    amount: Money | None
    tax_category: str
    tax_rate: Decimal | None


def create_credit_note(
    uow_factory: UowFactory, request: CreditRequest, idem: Idem
) -> tuple[CreditNote, Invoice]:
    with uow_factory() as uow:
        replayed = uow.replayed_resource("CreateCreditNote", idem.request_id, idem.fingerprint)
        if replayed is not None:
            note = uow.credit_notes.get(replayed)
            assert note is not None
            return note, _invoice(uow, note.invoice_id)
        invoice = _invoice(uow, request.invoice_id)
        lines = credit_notes.plan_lines(
            uow,
            invoice,
            full=request.full,
            lines=request.lines,
            amount=request.amount,
            tax_category=request.tax_category,
            tax_rate=request.tax_rate,
        )
        note = credit_notes.issue(uow, invoice, lines, reason=request.reason, now=uow.clock.now())
        uow.remember_request(
            "CreateCreditNote", idem.request_id, idem.fingerprint, note.credit_note_id
        )
        uow.commit()
        return note, invoice


def get_credit_note(uow_factory: UowFactory, credit_note_id: str) -> CreditNote:
    with uow_factory() as uow:
        note = uow.credit_notes.get(credit_note_id)
        if note is None:
            raise NotFound(f"no credit note {credit_note_id}", reason="CREDIT_NOTE_NOT_FOUND")
        return note


def list_credit_notes(
    uow_factory: UowFactory, *, invoice_id: str, account_id: str, after: str, limit: int
) -> list[CreditNote]:
    with uow_factory() as uow:
        return uow.credit_notes.page(
            invoice_id=invoice_id, account_id=account_id, after=after, limit=limit
        )


def open_dispute(
    uow_factory: UowFactory, invoice_id: str, amount: Money, reason: str, idem: Idem
) -> tuple[Dispute, Invoice]:
    with uow_factory() as uow:
        replayed = uow.replayed_resource("OpenDispute", idem.request_id, idem.fingerprint)
        if replayed is not None:
            dispute = uow.disputes.get(replayed)
            assert dispute is not None
            return dispute, _invoice(uow, dispute.invoice_id)
        invoice = _invoice(uow, invoice_id)
        _currency(invoice.currency, amount, "amount")
        now = uow.clock.now()
        dispute = Dispute(new_id("dsp"), invoice_id, amount, reason, now)
        invoice.open_dispute(dispute.dispute_id, amount, now)
        uow.disputes.add(dispute)
        uow.invoices.save(invoice)
        uow.publish(
            events.DisputeOpened(
                **events.facts(invoice),
                dispute_id=dispute.dispute_id,
                dispute_amount=amount,
                reason=reason,
            )
        )
        uow.remember_request("OpenDispute", idem.request_id, idem.fingerprint, dispute.dispute_id)
        uow.commit()
        return dispute, invoice


def resolve_dispute(
    uow_factory: UowFactory, dispute_id: str, customer_wins: bool, note: str, idem: Idem
) -> tuple[Dispute, Invoice]:
    with uow_factory() as uow:
        replayed = uow.replayed_resource("ResolveDispute", idem.request_id, idem.fingerprint)
        dispute = uow.disputes.get(replayed or dispute_id)
        if dispute is None:
            raise NotFound(f"no dispute {dispute_id}", reason="DISPUTE_NOT_FOUND")
        if replayed is not None:
            return dispute, _invoice(uow, dispute.invoice_id)
        invoice = _invoice(uow, dispute.invoice_id)
        now = uow.clock.now()
        dispute.resolve(customer_wins, note, now)
        outcome = "CUSTOMER_WINS" if customer_wins else "CUSTOMER_LOSES"
        invoice.close_dispute(dispute.dispute_id, dispute.amount, outcome, now)
        if customer_wins:
            lines = _dispute_credit_lines(uow, invoice, dispute.amount)
            credit = credit_notes.issue(
                uow, invoice, lines, reason=f"dispute {dispute_id}: {note}", now=now
            )
            dispute.credit_note_id = credit.credit_note_id
        else:
            uow.invoices.save(invoice)
        uow.disputes.save(dispute)
        uow.publish(
            events.DisputeResolved(
                **events.facts(invoice),
                dispute_id=dispute.dispute_id,
                dispute_amount=dispute.amount,
                outcome=outcome,
                credit_note_id=dispute.credit_note_id,
            )
        )
        uow.remember_request(
            "ResolveDispute", idem.request_id, idem.fingerprint, dispute.dispute_id
        )
        uow.commit()
        return dispute, invoice


def _dispute_credit_lines(
    uow: InvoicingUnitOfWork, invoice: Invoice, gross: Money
) -> list[CreditNoteLine]:
    """A disputed gross amount credited in the invoice's largest VAT group, net of its VAT."""
    group = max(invoice.breakdown, key=lambda g: g.taxable_amount.amount)
    net = net_from_inclusive(gross, group.tax_rate)
    return credit_notes.plan_lines(
        uow,
        invoice,
        full=False,
        lines=[],
        amount=net,
        tax_category=group.tax_category,
        tax_rate=group.tax_rate,
    )


def record_dunning_level(
    uow_factory: UowFactory, invoice_id: str, level: int, idem: Idem
) -> Invoice:
    def change(uow: InvoicingUnitOfWork, invoice: Invoice, now: datetime) -> None:
        invoice.record_dunning_level(level, now)
        uow.invoices.save(invoice)

    return _mutate_invoice(uow_factory, "RecordDunningLevel", invoice_id, idem, change)


__all__ = ["DisputeStatus", "Idem", "InvoiceDetails"]
