"""Drafting an account's invoice for a cycle, and finalising invoices (numbers, dates, credit).

Both run inside the caller's unit of work, so a bill run's work item drafts (and
with auto-accept finalises) an invoice, takes its usage and pending items and
marks itself done in one transaction: after a crash it either all happened or
none of it did.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta
from typing import Protocol

from services.common.errors import NotFound
from services.common.ids import new_id
from services.common.money import Money
from services.invoicing.domain import events
from services.invoicing.domain.builder import BuiltLines, Charges, Pricing, build_lines
from services.invoicing.domain.cycles import Cycle, cycle_containing, local_date, local_midnight
from services.invoicing.domain.model import (
    HistoryEntry,
    Invoice,
    InvoiceStatus,
    needs_buyer_vat_id,
    require_buyer_vat_id,
)
from services.invoicing.domain.parties import AccountFacts
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork


class FeePricer(Protocol):
    """Rating's prices of plan fees and VAT rates of services for an account (RAT-3, RAT-5)."""

    def quote(
        self,
        account: AccountFacts,
        plan_codes: Collection[str],
        services: Collection[str],
        at: datetime,
    ) -> Pricing: ...


def boundary_for(account: AccountFacts, billing_date: date, now: datetime) -> Cycle:
    """The cycle whose start is the newest boundary on or before ``billing_date`` (account's
    zone) that has already passed: its invoice bills the cycle that ended there."""
    end_of_day = local_midnight(billing_date + timedelta(days=1), account.time_zone)
    instant = min(end_of_day - timedelta(microseconds=1), now)
    return cycle_containing(instant, account.bill_cycle_day, account.time_zone)


def account_or_404(uow: InvoicingUnitOfWork, account_id: str) -> AccountFacts:
    account = uow.parties.account(account_id)
    if account is None:
        raise NotFound(f"invoicing knows no account {account_id}", reason="ACCOUNT_NOT_FOUND")
    return account


def sources_of(uow: InvoicingUnitOfWork, account: AccountFacts, before: datetime) -> list[Charges]:
    """The account's own charges, then each child's in the same currency (parent billing)."""
    members = [account] + [
        child
        for child in uow.parties.children(account.account_id)
        if child.currency == account.currency
    ]
    return [
        Charges(
            member.account_id,
            segments=uow.subscriptions.of_account(member.account_id),
            usage=uow.usage.unbilled(member.account_id, before),
            pending=uow.pending.open_of(member.account_id),
        )
        for member in members
    ]


def is_billed_by_parent(uow: InvoicingUnitOfWork, account: AccountFacts) -> bool:
    if not account.parent_account_id:
        return False
    parent = uow.parties.account(account.parent_account_id)
    return parent is not None and parent.currency == account.currency


def compose(
    pricer: FeePricer,
    account: AccountFacts,
    sources: list[Charges],
    *,
    boundary: Cycle | None,
    bill_run_id: str,
    now: datetime,
    invoice_id: str = "",
) -> tuple[Invoice, BuiltLines] | None:
    """The draft of ``account`` from its charges (no storage); None when nothing is due.

    Raises FailedPrecondition ``BUYER_VAT_ID_REQUIRED`` when a line is in VAT category
    AE or K and the customer has no VAT identifier (``require_buyer_vat_id``).

    ``invoice_id``: the id to give the draft (a bill run names it before drafting,
    because its storage takes the usage for that id first, ADR 0056); new if empty.
    """
    ended = boundary.previous() if boundary is not None else None
    plans = {seg.item_code for s in sources for seg in s.segments}
    plans |= {item.fee_plan_code for s in sources for item in s.pending if item.fee_plan_code}
    services = {r.service for s in sources for r in s.usage}
    services |= {t.service for s in sources for t in s.usage_totals}
    services |= {item.service for s in sources for item in s.pending}
    at = boundary.start if boundary is not None else now
    pricing = pricer.quote(account, sorted(plans), sorted(services), at)
    built = build_lines(
        boundary=boundary if boundary is not None else _instant_cycle(account, now),
        ended=ended,
        currency=account.currency,
        sources=sources,
        pricing=pricing,
        billing_account_id=account.account_id,
    )
    if not built.lines:
        return None
    period = (ended.start, ended.end) if ended is not None else (now, now)
    invoice = Invoice(
        invoice_id=invoice_id or new_id("inv"),
        account_id=account.account_id,
        customer_id=account.customer_id,
        currency=account.currency,
        period_start=period[0],
        period_end=period[1],
        lines=built.lines,
        language_code=account.language_code or "en",
        reseller_id=account.reseller_id,
        group_id=account.group_id,
        tax_region=account.tax_region,
        bill_cycle_day=account.bill_cycle_day,
        payment_terms_days=account.payment_terms_days,
        time_zone=account.time_zone,
        create_time=now,
        bill_run_id=bill_run_id,
    )
    # Checked on what is in memory (lines and the account's facts): a bill run's message
    # refuses such accounts without a statement of its own (ADR 0056).
    require_buyer_vat_id(invoice, account.customer_vat_id)
    invoice.new_history.append(_created(invoice, now))
    return invoice, built


def cycle_key(boundary: Cycle | None, invoice_id: str) -> str:
    """One invoice per account and cycle: bill-run invoices are keyed by the cycle's start."""
    return (
        boundary.previous().start_date.isoformat() if boundary is not None else f"now:{invoice_id}"
    )


def draft(
    uow: InvoicingUnitOfWork,
    pricer: FeePricer,
    account: AccountFacts,
    *,
    boundary: Cycle | None,
    bill_run_id: str,
    write: bool,
    now: datetime,
) -> Invoice | None:
    """The draft at the start of ``boundary`` (None: an immediate invoice of pending items).

    Returns None when there is nothing to invoice. With ``write`` the draft is
    stored and takes the usage and pending items it carries.
    """
    before = boundary.start if boundary is not None else now
    sources = sources_of(uow, account, before)
    if boundary is None:
        sources = [Charges(s.account_id, pending=s.pending) for s in sources]
    composed = compose(
        pricer, account, sources, boundary=boundary, bill_run_id=bill_run_id, now=now
    )
    if composed is None:
        return None
    invoice, built = composed
    if write:
        uow.invoices.add(invoice, cycle_key(boundary, invoice.invoice_id))
        uow.usage.take(built.usage_record_ids, invoice.invoice_id)
        uow.pending.take(built.pending_item_ids, invoice.invoice_id)
    return invoice


def _created(invoice: Invoice, now: datetime) -> HistoryEntry:
    return HistoryEntry(None, InvoiceStatus.DRAFT, "drafted", invoice.bill_run_id, now)


def _instant_cycle(account: AccountFacts, now: datetime) -> Cycle:
    return cycle_containing(now, account.bill_cycle_day, account.time_zone)


def finalize(uow: InvoicingUnitOfWork, invoice: Invoice, now: datetime) -> None:
    """Number, date and issue a draft; apply account credit; announce it.

    An AE/K draft is refused (BUYER_VAT_ID_REQUIRED) if the customer version its documents
    would show (in force at ``now``, ADR 0075) has no VAT identifier: the VAT id may have
    been removed since drafting (a run accepted later, ``FinalizeInvoice``).
    """
    if needs_buyer_vat_id(invoice):
        customer = uow.parties.customer_as_of(invoice.customer_id, now)
        require_buyer_vat_id(invoice, customer.vat_id if customer else "")
    issue_date = local_date(now, invoice.time_zone)
    due_date = issue_date + timedelta(days=invoice.payment_terms_days)
    uow.credit.lock(invoice.account_id)
    available = uow.credit.balance(invoice.account_id, invoice.currency)
    # The number is taken last: the series row stays locked until commit, so the
    # shorter the rest of the transaction the less concurrent finalisers wait.
    series = f"INV-{issue_date.year}"
    number = f"{series}-{uow.numbers.next(series):06d}"
    used = invoice.finalize(
        number=number,
        series=series,
        issue_date=issue_date,
        due_date=due_date,
        account_credit=available,
        at=now,
    )
    if used.is_positive():
        uow.credit.add(invoice.account_id, -used, "applied", invoice.invoice_id, now)
    if invoice.gross.is_negative():
        uow.credit.add(
            invoice.account_id, -invoice.gross, "credit invoice", invoice.invoice_id, now
        )
    uow.invoices.save(invoice)
    zero = Money.zero(invoice.currency)
    facts = events.facts(invoice)
    uow.publish(
        events.InvoiceFinalized(
            **facts,
            total_net=invoice.total_net or zero,
            total_tax=invoice.total_tax or zero,
            credit_applied=invoice.credit_applied or zero,
        )
    )
    uow.publish(events.InvoiceIssued(**facts, resend=False))
    if invoice.status == InvoiceStatus.PAID:
        uow.publish(events.InvoicePaid(**facts, payment_id=""))
