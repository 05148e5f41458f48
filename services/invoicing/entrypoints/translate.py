"""Wire <-> domain translation for the invoicing servicer, with input validation.

Request parsing collects every bad field in ``Violations`` and raises one
INVALID_ARGUMENT naming them all; nothing reaches a handler unchecked.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from decimal import Decimal, InvalidOperation

from google.protobuf.message import Message
from google.type import date_pb2

from reckon.invoicing.v1 import invoicing_pb2 as pb
from services.common.errors import Violations
from services.common.money import Money
from services.common.proto_convert import money_from_proto, money_to_proto, timestamp_to_proto
from services.invoicing.domain.arithmetic import CATEGORIES, VatBreakdown
from services.invoicing.domain.model import (
    CreditNote,
    Dispute,
    HistoryEntry,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    PendingItem,
)
from services.invoicing.domain.notifications import InvoiceNotification
from services.invoicing.domain.parties import BillRun, BillRunScope, BillRunState
from services.invoicing.service_layer.handlers import Idem

_ID = re.compile(r"^[a-z]{2,4}_[0-9a-z]{26}$")
_PRINTABLE = re.compile(r"^[\x21-\x7e]{1,128}$")
_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_TEXT = 500


def resource_id(v: Violations, value: str, path: str, prefix: str, *, required: bool = True) -> str:
    if not value:
        if required:
            v.add(path, "is required")
        return ""
    if not _ID.match(value) or not value.startswith(prefix + "_"):
        v.add(path, f"must be an id like {prefix}_ followed by 26 characters")
    return value


def text(
    v: Violations, value: str, path: str, *, required: bool = True, max_length: int = MAX_TEXT
) -> str:
    stripped = value.strip()
    if required and not stripped:
        v.add(path, "is required")
    elif len(stripped) > max_length:
        v.add(path, f"must be at most {max_length} characters")
    return stripped


def code(v: Violations, value: str, path: str) -> str:
    if value and not _CODE.match(value):
        v.add(path, "must be 1-64 letters, digits, '_', '.' or '-'")
    return value


def idem(v: Violations, request: Message, request_id: str) -> Idem:
    if request_id and not _PRINTABLE.match(request_id):
        v.add("request_id", "must be 1-128 printable ASCII characters (a UUID is best)")
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("request_id")  # type: ignore[arg-type]
    return Idem(request_id, hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest())


def positive_money(
    v: Violations, message: object, path: str, *, required: bool = True
) -> Money | None:
    if not isinstance(message, Message) or not message.ByteSize():
        if required:
            v.add(path, "is required")
        return None
    money = money_from_proto(message, path, v, allow_negative=False)  # type: ignore[arg-type]
    if money is not None and not money.is_positive():
        v.add(path, "must be more than zero")
        return None
    return money


def rate(v: Violations, value: str, path: str) -> Decimal | None:
    if not value:
        return None
    try:
        parsed = Decimal(value)
    except InvalidOperation:
        v.add(path, "must be a decimal percentage, e.g. 21 or 5.5")
        return None
    if not parsed.is_finite() or not Decimal(0) <= parsed <= Decimal(100):
        v.add(path, "must be between 0 and 100")
        return None
    return parsed


def category(v: Violations, value: str, path: str) -> str:
    if value and value not in CATEGORIES:
        v.add(path, f"must be one of {', '.join(sorted(CATEGORIES))}")
    return value


def date_from_proto(v: Violations, message: date_pb2.Date, path: str) -> date | None:
    if not message.ByteSize():
        return None
    try:
        return date(message.year, message.month, message.day)
    except ValueError:
        v.add(path, "is not a valid calendar date")
        return None


def date_to_proto(value: date | None) -> date_pb2.Date | None:
    if value is None:
        return None
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def scope_from_proto(v: Violations, scope: pb.BillRunScope) -> BillRunScope:
    if not 0 <= scope.bill_cycle_day <= 31:
        v.add("scope.bill_cycle_day", "must be 1 to 31")
    result = BillRunScope(
        bill_cycle_day=scope.bill_cycle_day,
        reseller_id=code(v, scope.reseller_id, "scope.reseller_id"),
        group_id=code(v, scope.group_id, "scope.group_id"),
        account_id=resource_id(v, scope.account_id, "scope.account_id", "acc", required=False),
    )
    if result.is_empty:
        v.add("scope", "set at least one of bill_cycle_day, reseller_id, group_id, account_id")
    return result


# -- domain -> wire -------------------------------------------------------------------------
def _money(value: Money | None, currency: str) -> object:
    return money_to_proto(value if value is not None else Money.zero(currency))


def _rate(value: Decimal) -> str:
    text_value = format(value.normalize(), "f")
    return text_value


def line_to_proto(line: InvoiceLine) -> pb.InvoiceLine:
    cur = line.net_amount.currency
    message = pb.InvoiceLine(
        line_id=line.line_id,
        kind=pb.LineKind.Value(f"LINE_KIND_{line.kind.value}"),
        description=line.description,
        service=line.service,
        destination_group=line.destination_group,
        time_band=line.time_band,
        quantity=format(line.quantity.normalize(), "f"),
        unit_code=line.unit_code,
        unit_price=money_to_proto(line.unit_price),
        net_amount=money_to_proto(line.net_amount),
        tax_category=line.tax_category,
        tax_rate=_rate(line.tax_rate),
        subscription_id=line.subscription_id,
        plan_code=line.plan_code,
        source_account_id=line.source_account_id,
        detail_count=line.detail_count,
        unrounded_amount=format(line.unrounded_amount, "f")
        if line.unrounded_amount is not None
        else "",
    )
    from services.invoicing.domain.arithmetic import tax_of

    message.tax_amount.CopyFrom(money_to_proto(tax_of(line.net_amount, line.tax_rate)))
    if line.allowance is not None:
        message.allowance.CopyFrom(money_to_proto(line.allowance))
    for name, instant in (
        ("period_start_time", line.period_start),
        ("period_end_time", line.period_end),
    ):
        stamp = timestamp_to_proto(instant)
        if stamp is not None:
            getattr(message, name).CopyFrom(stamp)
    del cur
    return message


def breakdown_to_proto(group: VatBreakdown) -> pb.VatBreakdown:
    return pb.VatBreakdown(
        tax_category=group.tax_category,
        tax_rate=_rate(group.tax_rate),
        taxable_amount=money_to_proto(group.taxable_amount),
        tax_amount=money_to_proto(group.tax_amount),
        exemption_reason=group.exemption_reason,
    )


def status_to_proto(status: InvoiceStatus) -> int:
    return int(pb.InvoiceStatus.Value(f"INVOICE_STATUS_{status.value}"))


def status_from_proto(value: int) -> InvoiceStatus | None:
    name = pb.InvoiceStatus.Name(pb.InvoiceStatus.ValueType(value)).removeprefix("INVOICE_STATUS_")
    return None if name == "UNSPECIFIED" else InvoiceStatus(name)


def invoice_to_proto(invoice: Invoice) -> pb.Invoice:
    cur = invoice.currency
    message = pb.Invoice(
        invoice_id=invoice.invoice_id,
        number=invoice.number,
        series=invoice.series,
        account_id=invoice.account_id,
        customer_id=invoice.customer_id,
        status=status_to_proto(invoice.status),  # type: ignore[arg-type]
        currency_code=cur,
        lines=[line_to_proto(line) for line in invoice.lines],
        vat_breakdown=[breakdown_to_proto(g) for g in invoice.breakdown],
        language_code=invoice.language_code,
        bill_run_id=invoice.bill_run_id,
        reseller_id=invoice.reseller_id,
        group_id=invoice.group_id,
        tax_region=invoice.tax_region,
        bill_cycle_day=invoice.bill_cycle_day,
        dunning_level=invoice.dunning_level,
    )
    for name, value in (
        ("total_net", invoice.total_net),
        ("total_tax", invoice.total_tax),
        ("total_gross", invoice.total_gross),
        ("amount_paid", invoice.amount_paid),
        ("amount_due", invoice.amount_due),
        ("disputed_amount", invoice.disputed_amount),
        ("credit_applied", invoice.credit_applied),
        ("credited_amount", invoice.credited_amount),
    ):
        getattr(message, name).CopyFrom(_money(value, cur))
    for name, instant in (
        ("period_start_time", invoice.period_start),
        ("period_end_time", invoice.period_end),
        ("create_time", invoice.create_time),
        ("finalize_time", invoice.finalize_time),
        ("update_time", invoice.update_time),
    ):
        stamp = timestamp_to_proto(instant)
        if stamp is not None:
            getattr(message, name).CopyFrom(stamp)
    for name, day in (("issue_date", invoice.issue_date), ("due_date", invoice.due_date)):
        converted = date_to_proto(day)
        if converted is not None:
            getattr(message, name).CopyFrom(converted)
    return message


def history_to_proto(entry: HistoryEntry) -> pb.InvoiceEvent:
    message = pb.InvoiceEvent(
        from_status=status_to_proto(entry.from_status) if entry.from_status else 0,  # type: ignore[arg-type]
        to_status=status_to_proto(entry.to_status),  # type: ignore[arg-type]
        action=entry.action,
        detail=entry.detail,
    )
    stamp = timestamp_to_proto(entry.at)
    if stamp is not None:
        message.event_time.CopyFrom(stamp)
    return message


def notification_to_proto(notification: InvoiceNotification) -> pb.InvoiceNotification:
    message = pb.InvoiceNotification(
        message_id=notification.message_id,
        channel=notification.channel,
        recipient=notification.recipient,
        template=notification.template,
        source_event_type=notification.source_event_type,
        status=notification.status,
        attempts=notification.attempts,
        last_error=notification.last_error,
    )
    for name, at in (
        ("create_time", notification.create_time),
        ("status_time", notification.status_time),
    ):
        stamp = timestamp_to_proto(at)
        if stamp is not None:
            getattr(message, name).CopyFrom(stamp)
    return message


def credit_note_to_proto(note: CreditNote) -> pb.CreditNote:
    cur = note.currency
    message = pb.CreditNote(
        credit_note_id=note.credit_note_id,
        number=note.number,
        series=note.series,
        invoice_id=note.invoice_id,
        invoice_number=note.invoice_number,
        account_id=note.account_id,
        customer_id=note.customer_id,
        currency_code=cur,
        reason=note.reason,
        lines=[
            pb.InvoiceLine(
                line_id=line.line_id,
                description=line.description,
                net_amount=money_to_proto(line.net_amount),
                tax_category=line.tax_category,
                tax_rate=_rate(line.tax_rate),
                quantity="1",
                unit_code="C62",
                unit_price=money_to_proto(line.net_amount),
            )
            for line in note.lines
        ],
        vat_breakdown=[breakdown_to_proto(g) for g in note.breakdown],
        language_code=note.language_code,
    )
    for name, value in (
        ("total_net", note.total_net),
        ("total_tax", note.total_tax),
        ("total_gross", note.total_gross),
        ("credited_to_account", note.credited_to_account),
    ):
        getattr(message, name).CopyFrom(_money(value, cur))
    converted = date_to_proto(note.issue_date)
    if converted is not None:
        message.issue_date.CopyFrom(converted)
    stamp = timestamp_to_proto(note.create_time)
    if stamp is not None:
        message.create_time.CopyFrom(stamp)
    return message


def dispute_to_proto(dispute: Dispute) -> pb.Dispute:
    message = pb.Dispute(
        dispute_id=dispute.dispute_id,
        invoice_id=dispute.invoice_id,
        amount=money_to_proto(dispute.amount),
        reason=dispute.reason,
        status=pb.DisputeStatus.Value(f"DISPUTE_STATUS_{dispute.status.value}"),
        resolution_note=dispute.resolution_note,
        credit_note_id=dispute.credit_note_id,
    )
    for name, instant in (("open_time", dispute.open_time), ("resolve_time", dispute.resolve_time)):
        stamp = timestamp_to_proto(instant)
        if stamp is not None:
            getattr(message, name).CopyFrom(stamp)
    return message


def pending_item_to_proto(item: PendingItem, currency: str) -> pb.PendingItem:
    message = pb.PendingItem(
        pending_item_id=item.pending_item_id,
        account_id=item.account_id,
        kind=pb.LineKind.Value(f"LINE_KIND_{item.kind.value}"),
        description=item.description,
        service=item.service,
        tax_category=item.tax_category,
        tax_rate=_rate(item.tax_rate) if item.tax_rate is not None else "",
        invoice_id=item.invoice_id,
        reference_invoice_id=item.reference_invoice_id,
    )
    if item.amount is not None:
        message.amount.CopyFrom(money_to_proto(item.amount))
    for name, instant in (
        ("period_start_time", item.period_start),
        ("period_end_time", item.period_end),
        ("create_time", item.create_time),
    ):
        stamp = timestamp_to_proto(instant)
        if stamp is not None:
            getattr(message, name).CopyFrom(stamp)
    del currency
    return message


def line_kind_from_proto(v: Violations, value: int, path: str) -> LineKind:
    if value not in pb.LineKind.values():
        v.add(path, "is not a line kind")
        return LineKind.PENDING_ITEM
    name = pb.LineKind.Name(pb.LineKind.ValueType(value)).removeprefix("LINE_KIND_")
    if name == "UNSPECIFIED":
        return LineKind.PENDING_ITEM
    kind = LineKind(name)
    allowed = (
        LineKind.PENDING_ITEM,
        LineKind.LATE_FEE,
        LineKind.ONE_TIME,
        LineKind.CORRECTION,
        LineKind.TOP_UP,
    )
    if kind not in allowed:
        v.add(path, "must be PENDING_ITEM, LATE_FEE, ONE_TIME, CORRECTION or TOP_UP")
    return kind


def bill_run_state_from_proto(value: int) -> BillRunState | None:
    name = pb.BillRunState.Name(pb.BillRunState.ValueType(value)).removeprefix("BILL_RUN_STATE_")
    return None if name == "UNSPECIFIED" else BillRunState(name)


def bill_run_to_proto(run: BillRun) -> pb.BillRun:
    from services.invoicing.domain.parties import ItemStatus

    message = pb.BillRun(
        bill_run_id=run.bill_run_id,
        state=pb.BillRunState.Value(f"BILL_RUN_STATE_{run.state.value}"),
        scope=pb.BillRunScope(
            bill_cycle_day=run.scope.bill_cycle_day,
            reseller_id=run.scope.reseller_id,
            group_id=run.scope.group_id,
            account_id=run.scope.account_id,
        ),
        auto_accept=run.auto_accept,
        scheduled=run.scheduled,
        accounts_total=run.total,
        accounts_done=run.done,
        invoices_drafted=run.count(ItemStatus.DRAFTED) + run.count(ItemStatus.FINALIZED),
        invoices_finalized=run.count(ItemStatus.FINALIZED),
        accounts_skipped=run.count(ItemStatus.SKIPPED),
        accounts_failed=run.count(ItemStatus.FAILED),
        errors=[
            pb.BillRunError(account_id=e.account_id, reason=e.reason, message=e.message)
            for e in run.errors
        ],
        totals=[
            money_to_proto(Money(Decimal(total), currency))
            for currency, total in sorted(run.totals.items())
        ],
    )
    converted = date_to_proto(run.billing_date)
    if converted is not None:
        message.billing_date.CopyFrom(converted)
    for name, instant in (
        ("create_time", run.create_time),
        ("complete_time", run.complete_time),
        ("update_time", run.update_time),
    ):
        stamp = timestamp_to_proto(instant)
        if stamp is not None:
            getattr(message, name).CopyFrom(stamp)
    return message
