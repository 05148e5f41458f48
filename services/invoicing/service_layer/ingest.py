"""What invoicing learns from other services' events (accounts, rating, notifications).

Each handler runs in one unit of work that also records the event id
(``mark_processed``): a redelivered event changes nothing.

Subscription changes become *segments* (which plan or add-on ran when) and,
when they fall inside a cycle, *pending items* for the next invoice: a credit
for the unused part of the old price and a charge for the new one, prorated by
the days left in the cycle (the change day included). They are priced from the
plans' in-advance fees when the invoice is made; fees in arrears are billed
from the segments instead.

Re-rating of usage already invoiced never edits that invoice: a lower amount
becomes a credit note against it, a higher one a correction on the next invoice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from services.common.ids import new_id
from services.common.money import Money
from services.invoicing.domain.arithmetic import round_money
from services.invoicing.domain.builder import RatedUsage, Segment
from services.invoicing.domain.cycles import cycle_containing
from services.invoicing.domain.model import InvoiceStatus, LineKind, PendingItem
from services.invoicing.domain.notifications import InvoiceNotification
from services.invoicing.domain.parties import AccountFacts, CustomerFacts
from services.invoicing.service_layer import credit_notes
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork

UowFactory = Callable[[], InvoicingUnitOfWork]
Payload = Mapping[str, Any]
CONSUMER = "invoicing"


def handle(uow_factory: UowFactory, event_id: str, event_type: str, payload: Payload) -> bool:
    """Apply one event once; False when it was already applied (or is not ours)."""
    handler = HANDLERS.get(event_type)
    if handler is None:
        return False
    with uow_factory() as uow:
        if not uow.mark_processed(CONSUMER, event_id):
            return False
        handler(uow, payload)
        uow.commit()
    return True


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _customer(uow: InvoicingUnitOfWork, p: Payload) -> None:
    existing = uow.parties.customer(p["customer_id"])
    customer = CustomerFacts(
        customer_id=p["customer_id"],
        display_name=p.get("display_name", existing.display_name if existing else ""),
        email=p.get("email", existing.email if existing else ""),
        language_code=p.get("language_code") or "en",
        reseller_id=p.get("reseller_id", ""),
        group_id=p.get("group_id", ""),
        vat_id=str(p.get("vat_id", existing.vat_id if existing else ""))[:64],
    )
    uow.parties.put_customer(customer)
    uow.parties.update_customer_of_accounts(customer)


def _account(uow: InvoicingUnitOfWork, p: Payload) -> None:
    existing = uow.parties.account(p["account_id"])
    created = str(p.get("create_time") or p.get("update_time"))
    uow.parties.put_account(
        AccountFacts(
            account_id=p["account_id"],
            customer_id=p["customer_id"],
            currency=p["currency_code"],
            time_zone=p["time_zone"],
            bill_cycle_day=int(p["bill_cycle_day"]),
            tax_region=p.get("tax_region", ""),
            payment_terms_days=int(p.get("payment_terms_days", 0)),
            payment_mode=p.get("payment_mode", ""),
            parent_account_id=p.get("parent_account_id", "") or "",
            state=p.get("state", "ACTIVE"),
            reseller_id=p.get("reseller_id", ""),
            group_id=p.get("group_id", ""),
            create_time=existing.create_time if existing else _instant(created),
        )
    )


def _account_state(uow: InvoicingUnitOfWork, p: Payload) -> None:
    uow.parties.set_account_state(p["account_id"], p["to_state"])


def _pending_fee(
    p: Payload,
    plan_code: str,
    *,
    credit: bool,
    quantity: int,
    days: int,
    cycle_days: int,
    at: datetime,
    period_end: datetime,
    kind: LineKind = LineKind.PRORATION,
) -> PendingItem:
    return PendingItem(
        pending_item_id=new_id("pit"),
        account_id=p["account_id"],
        kind=kind,
        description=f"{'Credit' if credit else 'Charge'} {plan_code}",
        service=plan_code,
        create_time=at,
        period_start=at,
        period_end=period_end,
        fee_plan_code=plan_code,
        subscription_id=p["subscription_id"],
        quantity=quantity,
        days_used=days,
        days_in_cycle=cycle_days,
        credit=credit,
    )


def _subscription(uow: InvoicingUnitOfWork, p: Payload) -> None:
    kind = p["kind"]
    sub, account_id = p["subscription_id"], p["account_id"]
    at = _instant(p["effective_time"])
    cycle = cycle_containing(at, int(p["bill_cycle_day"]), p["time_zone"])
    mid = at > cycle.start
    days = cycle.days_from(at)
    currency = p["currency_code"]
    items: list[PendingItem] = []

    def prorated(code: str, *, credit: bool, quantity: int = 1) -> None:
        if mid and days > 0:
            items.append(
                _pending_fee(
                    p,
                    code,
                    credit=credit,
                    quantity=quantity,
                    days=days,
                    cycle_days=cycle.days,
                    at=at,
                    period_end=cycle.end,
                )
            )

    if kind == "CREATED":
        uow.subscriptions.start(Segment(sub, p["plan_code"], False, 1, at, None), account_id)
        items.append(
            _pending_fee(
                p,
                p["plan_code"],
                credit=False,
                quantity=1,
                days=1,
                cycle_days=1,
                at=at,
                period_end=at,
                kind=LineKind.ONE_TIME,
            )
        )
        prorated(p["plan_code"], credit=False)
    elif kind in ("PLAN_CHANGED", "PLAN_CHANGE_SCHEDULED"):
        ended = uow.subscriptions.end(sub, p["old_plan_code"], at, add_ons=False)
        uow.subscriptions.start(Segment(sub, p["new_plan_code"], False, 1, at, None), account_id)
        if kind == "PLAN_CHANGED" and ended:
            prorated(p["old_plan_code"], credit=True)
            prorated(p["new_plan_code"], credit=False)
    elif kind == "ADDON_ADDED":
        quantity = int(p.get("add_on_quantity") or 1)
        uow.subscriptions.start(
            Segment(sub, p["add_on_code"], True, quantity, at, None), account_id
        )
        prorated(p["add_on_code"], credit=False, quantity=quantity)
    elif kind == "ADDON_REMOVED":
        for segment in uow.subscriptions.end(sub, p["add_on_code"], at, add_ons=True):
            prorated(segment.item_code, credit=True, quantity=segment.quantity)
    elif kind in ("CANCELLED", "CANCEL_SCHEDULED"):
        ended = uow.subscriptions.end(sub, None, at, add_ons=False)
        ended += uow.subscriptions.end(sub, None, at, add_ons=True)
        if kind == "CANCELLED":
            for segment in ended:
                prorated(segment.item_code, credit=True, quantity=segment.quantity)
    for item in items:
        uow.pending.add(item, currency)


def _usage_rated(uow: InvoicingUnitOfWork, p: Payload) -> None:
    records: list[tuple[RatedUsage, str]] = []
    for r in p.get("records", ()):
        net = r.get("net") or r["amount"]
        records.append(
            (
                RatedUsage(
                    record_id=str(r["record_id"]),
                    account_id=r["account_id"],
                    service=r.get("service", ""),
                    destination=r.get("destination") or "",
                    quantity=Decimal(str(r.get("quantity", 0))),
                    unit=r.get("unit", ""),
                    net=Decimal(net["amount"]),
                    event_time=_instant(r["event_time"]),
                ),
                net["currency"],
            )
        )
    uow.usage.add_many(records)


def _usage_rerated(uow: InvoicingUnitOfWork, p: Payload) -> None:
    """Corrections: unbilled records change; billed ones give a credit note or a debit."""
    now = uow.clock.now()
    per_invoice: dict[str, Decimal] = {}
    for correction in p.get("corrections", ()):
        found = uow.usage.get(str(correction["record_id"]))
        if found is None:
            continue
        old_net, _, invoice_id = found
        old_gross = Decimal(correction["old"]["amount"])
        new_gross = Decimal(correction["new"]["amount"])
        with localcontext() as context:
            context.prec = 60
            # Events carry gross amounts; the record's net changes in the same ratio.
            new_net = new_gross if old_gross == 0 else old_net * new_gross / old_gross
            new_net = new_net.quantize(Decimal("0.000000001"))
        if invoice_id is None:
            uow.usage.set_net(str(correction["record_id"]), new_net)
        else:
            per_invoice[invoice_id] = per_invoice.get(invoice_id, Decimal(0)) + (new_net - old_net)
    for invoice_id, difference in sorted(per_invoice.items()):
        invoice = uow.invoices.get(invoice_id)
        if invoice is None or difference == 0:
            continue
        amount = round_money(difference, invoice.currency)
        if amount.is_zero():
            continue
        usage_line = next((ln for ln in invoice.lines if ln.kind == LineKind.USAGE), None)
        category = usage_line.tax_category if usage_line else ""
        rate = usage_line.tax_rate if usage_line else None
        reason = f"re-rating {p.get('rerate_id', '')} of {invoice.number or invoice_id}"
        if amount.is_negative() and invoice.status not in (InvoiceStatus.DRAFT, InvoiceStatus.VOID):
            credit_notes.issue_amount(uow, invoice, -amount, category, rate, reason=reason, now=now)
            continue
        uow.pending.add(
            PendingItem(
                pending_item_id=new_id("pit"),
                account_id=invoice.account_id,
                kind=LineKind.CORRECTION,
                description=f"Correction: {reason}",
                service=usage_line.service if usage_line else "usage",
                create_time=now,
                amount=amount,
                tax_category=category,
                tax_rate=rate,
                reference_invoice_id=invoice_id,
            ),
            invoice.currency,
        )


def _message_status(uow: InvoicingUnitOfWork, p: Payload) -> None:
    """Notifications' ``MessageStatusChanged``: the invoice's copy of that message, kept at
    its latest status (events of one message may arrive out of order)."""
    notification = InvoiceNotification(
        message_id=str(p["message_id"]),
        invoice_id=str(p["invoice_id"]),
        customer_id=str(p.get("customer_id", "")),
        channel=str(p.get("channel", "")),
        recipient=str(p.get("recipient_masked", ""))[:500],
        template=str(p.get("template", ""))[:64],
        source_event_type=str(p.get("source_event_type", ""))[:64],
        status=str(p.get("status", "")),
        attempts=int(p.get("attempts", 0)),
        last_error=str(p.get("last_error", ""))[:500],
        create_time=_instant(str(p["created_at"])),
        status_time=_instant(str(p["status_time"])),
    )
    if not notification.invoice_id:
        return
    known = uow.notifications.get(notification.message_id)
    if known is None or notification.is_newer_than(known):
        uow.notifications.put(notification, exists=known is not None)


HANDLERS: dict[str, Callable[[InvoicingUnitOfWork, Payload], None]] = {
    "CustomerCreated": _customer,
    "CustomerUpdated": _customer,
    "AccountCreated": _account,
    "AccountUpdated": _account,
    "AccountStateChanged": _account_state,
    "SubscriptionChanged": _subscription,
    "UsageRated": _usage_rated,
    "UsageRerated": _usage_rerated,
    "MessageStatusChanged": _message_status,
}

__all__ = ["CONSUMER", "HANDLERS", "Money", "handle"]
