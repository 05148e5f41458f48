"""The gRPC face of invoicing: proto in, validated, handler in a thread, proto out.

Handlers are synchronous (ADR 0002) and run in worker threads; ``ReckonError``s
raised anywhere are mapped to rich statuses by the kit's interceptor.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from reckon.invoicing.v1 import invoicing_pb2 as pb
from reckon.invoicing.v1 import invoicing_pb2_grpc
from services.common.customer_scope import check_owner, customer_scope
from services.common.errors import FailedPrecondition, ReckonError, Violations
from services.common.proto_convert import (
    decode_page_token,
    encode_page_token,
    money_from_proto,
    money_to_proto,
    page_size_from_proto,
    timestamp_from_proto,
    timestamp_to_proto,
)
from services.invoicing.entrypoints import translate as tr
from services.invoicing.entrypoints.billrun_rpcs import BillRunRpcs
from services.invoicing.service_layer import handlers
from services.invoicing.service_layer.credit_notes import LineCredit
from services.invoicing.service_layer.drafting import FeePricer
from services.invoicing.service_layer.unit_of_work import InvoiceFilter, InvoicingUnitOfWork

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InvoicingService"].full_name
R = TypeVar("R")
# Allocations one RecordPayments call may carry (a collection run's batch).
MAX_PAYMENTS_PER_BATCH = 1000


class DocumentRenderer(Protocol):
    """Renders an invoice or credit note (services/invoicing/documents, wired in bootstrap)."""

    def render(
        self,
        uow_factory: Callable[[], InvoicingUnitOfWork],
        invoice_id: str,
        credit_note_id: str,
        fmt: str,
    ) -> tuple[bytes, str, str]: ...


class InvoicingServicer(BillRunRpcs, invoicing_pb2_grpc.InvoicingServiceServicer):
    def __init__(
        self,
        uow_factory: Callable[[], InvoicingUnitOfWork],
        pricer: FeePricer,
        renderer: DocumentRenderer | None = None,
    ) -> None:
        self._uf = uow_factory
        self._pricer = pricer
        self._renderer = renderer

    async def _run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # -- invoices -----------------------------------------------------------------------
    async def GetInvoice(
        self, request: pb.GetInvoiceRequest, context: Any
    ) -> pb.GetInvoiceResponse:
        v = Violations()
        invoice_id = tr.resource_id(v, request.invoice_id, "invoice_id", "inv")
        v.raise_if_any()
        details = await self._run(handlers.get_invoice, self._uf, invoice_id)
        # A customer's call (via the gateway) sees only that customer's invoices.
        check_owner(
            customer_scope(context),
            details.invoice.customer_id,
            reason="INVOICE_NOT_FOUND",
            what="invoice",
        )
        response = pb.GetInvoiceResponse(
            invoice=tr.invoice_to_proto(details.invoice),
            history=[tr.history_to_proto(e) for e in details.history],
            credit_notes=[tr.credit_note_to_proto(n) for n in details.credit_notes],
            disputes=[tr.dispute_to_proto(d) for d in details.disputes],
            notifications=[tr.notification_to_proto(n) for n in details.notifications],
        )
        for payment_id, amount, kind, at in details.payments:
            allocation = response.payments.add(payment_id=payment_id, kind=kind)
            allocation.amount.CopyFrom(money_to_proto(amount))
            stamp = timestamp_to_proto(at)
            if stamp is not None:
                allocation.record_time.CopyFrom(stamp)
        return response

    async def SearchInvoices(
        self, request: pb.SearchInvoicesRequest, context: Any
    ) -> pb.SearchInvoicesResponse:
        scope = customer_scope(context)
        if scope is not None:
            check_owner(scope, request.customer_id, reason="CUSTOMER_NOT_FOUND", what="customer")
        v = Violations()
        limit = page_size_from_proto(request.page_size, v)
        cursor = decode_page_token(request.page_token, v)
        min_total = (
            money_from_proto(request.min_total, "min_total", v)
            if request.HasField("min_total")
            else None
        )
        max_total = (
            money_from_proto(request.max_total, "max_total", v)
            if request.HasField("max_total")
            else None
        )
        currency = ""
        if min_total and max_total and min_total.currency != max_total.currency:
            v.add("max_total.currency_code", "must be the currency of min_total")
        if (
            min_total
            and max_total
            and min_total.currency == max_total.currency
            and min_total > max_total
        ):
            v.add("max_total", "must not be less than min_total")
        for bound in (min_total, max_total):
            if bound is not None:
                currency = bound.currency
        if not 0 <= request.bill_cycle_day <= 31:
            v.add("bill_cycle_day", "must be 1 to 31")
        if not 0 <= request.min_dunning_level <= 10:
            v.add("min_dunning_level", "must be 0 to 10")
        date_from = tr.date_from_proto(v, request.issue_date_from, "issue_date_from")
        date_to = tr.date_from_proto(v, request.issue_date_to, "issue_date_to")
        if date_from and date_to and date_from > date_to:
            v.add("issue_date_to", "must not be before issue_date_from")
        statuses = []
        for index, value in enumerate(request.statuses):
            if value not in pb.InvoiceStatus.values():
                v.add(f"statuses[{index}]", "is not an invoice status")
                continue
            status = tr.status_from_proto(value)
            if status is not None:
                statuses.append(status)
        where = InvoiceFilter(
            customer_id=tr.resource_id(
                v, request.customer_id, "customer_id", "cus", required=False
            ),
            account_id=tr.resource_id(v, request.account_id, "account_id", "acc", required=False),
            statuses=tuple(statuses),
            reseller_id=tr.code(v, request.reseller_id, "reseller_id"),
            group_id=tr.code(v, request.group_id, "group_id"),
            currency=currency,
            min_total=min_total.amount if min_total else None,
            max_total=max_total.amount if max_total else None,
            issue_date_from=date_from,
            issue_date_to=date_to,
            period_start_date=tr.date_from_proto(v, request.period_start_date, "period_start_date"),
            bill_cycle_day=request.bill_cycle_day,
            bill_run_id=tr.resource_id(
                v, request.bill_run_id, "bill_run_id", "run", required=False
            ),
            min_dunning_level=request.min_dunning_level,
            overdue_only=request.overdue_only,
            disputed_only=request.disputed_only,
            number=tr.text(v, request.number, "number", required=False, max_length=64),
        )
        page_free = pb.SearchInvoicesRequest()
        page_free.CopyFrom(request)
        page_free.ClearField("page_token")
        page_free.ClearField("page_size")
        filters = page_free.SerializeToString(deterministic=True).hex()
        after = ""
        if cursor is not None:
            if cursor.get("f") != _digest(filters):
                v.add("page_token", "was issued for other filters")
            after = cursor.get("after", "")
        v.raise_if_any()
        found = await self._run(
            handlers.search_invoices, self._uf, where, after=after, limit=limit + 1
        )
        token = ""
        if len(found) > limit:
            found = found[:limit]
            token = encode_page_token({"after": found[-1].invoice_id, "f": _digest(filters)})
        return pb.SearchInvoicesResponse(
            invoices=[tr.invoice_to_proto(i) for i in found], next_page_token=token
        )

    async def _simple(self, request: Any, fn: Callable[..., Any], *, reason: bool = False) -> Any:
        v = Violations()
        invoice_id = tr.resource_id(v, request.invoice_id, "invoice_id", "inv")
        args: list[Any] = [self._uf, invoice_id]
        if reason:
            args.append(tr.text(v, request.reason, "reason"))
        idem = tr.idem(v, request, request.request_id)
        v.raise_if_any()
        return await self._run(fn, *args, idem)

    async def FinalizeInvoice(
        self, request: pb.FinalizeInvoiceRequest, context: Any
    ) -> pb.FinalizeInvoiceResponse:
        invoice = await self._simple(request, handlers.finalize_invoice)
        return pb.FinalizeInvoiceResponse(invoice=tr.invoice_to_proto(invoice))

    async def VoidInvoice(
        self, request: pb.VoidInvoiceRequest, context: Any
    ) -> pb.VoidInvoiceResponse:
        invoice = await self._simple(request, handlers.void_invoice, reason=True)
        return pb.VoidInvoiceResponse(invoice=tr.invoice_to_proto(invoice))

    async def MarkInvoiceUncollectible(
        self, request: pb.MarkInvoiceUncollectibleRequest, context: Any
    ) -> pb.MarkInvoiceUncollectibleResponse:
        invoice = await self._simple(request, handlers.mark_uncollectible, reason=True)
        return pb.MarkInvoiceUncollectibleResponse(invoice=tr.invoice_to_proto(invoice))

    async def SendInvoice(
        self, request: pb.SendInvoiceRequest, context: Any
    ) -> pb.SendInvoiceResponse:
        invoice = await self._simple(request, handlers.send_invoice)
        return pb.SendInvoiceResponse(invoice=tr.invoice_to_proto(invoice))

    async def RecordDunningLevel(
        self, request: pb.RecordDunningLevelRequest, context: Any
    ) -> pb.RecordDunningLevelResponse:
        v = Violations()
        invoice_id = tr.resource_id(v, request.invoice_id, "invoice_id", "inv")
        if not 0 <= request.level <= 10:
            v.add("level", "must be 0 to 10")
        idem = tr.idem(v, request, request.request_id)
        v.raise_if_any()
        invoice = await self._run(
            handlers.record_dunning_level, self._uf, invoice_id, request.level, idem
        )
        return pb.RecordDunningLevelResponse(invoice=tr.invoice_to_proto(invoice))

    # -- payments and credit --------------------------------------------------------------
    async def RecordPayment(
        self, request: pb.RecordPaymentRequest, context: Any
    ) -> pb.RecordPaymentResponse:
        v = Violations()
        invoice_id = tr.resource_id(v, request.invoice_id, "invoice_id", "inv")
        payment_id = tr.text(v, request.payment_id, "payment_id", max_length=128)
        amount = tr.positive_money(v, request.amount, "amount")
        idem = tr.idem(v, request, request.request_id)
        v.raise_if_any()
        assert amount is not None
        invoice, credited = await self._run(
            handlers.record_payment,
            self._uf,
            invoice_id,
            payment_id,
            amount,
            excess_to_account_credit=request.excess_to_account_credit,
            received_at=timestamp_from_proto(request.receive_time)
            if request.HasField("receive_time")
            else None,
            idem=idem,
        )
        return pb.RecordPaymentResponse(
            amount_paid=tr._money(invoice.amount_paid, invoice.currency),  # type: ignore[arg-type]
            amount_due=money_to_proto(invoice.amount_due),
            status=tr.status_to_proto(invoice.status),  # type: ignore[arg-type]
            credited_to_account=money_to_proto(credited),
            invoice=tr.invoice_to_proto(invoice),
        )

    async def RecordPayments(
        self, request: pb.RecordPaymentsRequest, context: Any
    ) -> pb.RecordPaymentsResponse:
        v = Violations()
        if not 1 <= len(request.payments) <= MAX_PAYMENTS_PER_BATCH:
            v.add("payments", f"must hold 1 to {MAX_PAYMENTS_PER_BATCH} allocations")
        items: list[handlers.PaymentAllocation] = []
        for index, item in enumerate(request.payments):
            path = f"payments[{index}]"
            invoice_id = tr.resource_id(v, item.invoice_id, f"{path}.invoice_id", "inv")
            payment_id = tr.text(v, item.payment_id, f"{path}.payment_id", max_length=128)
            amount = tr.positive_money(v, item.amount, f"{path}.amount")
            if not item.request_id:
                # A batch may be sent again whole: each item must be safe to repeat.
                v.add(f"{path}.request_id", "is required")
            idem = tr.idem(v, item, item.request_id)
            if amount is not None:
                items.append(
                    handlers.PaymentAllocation(
                        invoice_id,
                        payment_id,
                        amount,
                        item.excess_to_account_credit,
                        idem,
                        timestamp_from_proto(item.receive_time)
                        if item.HasField("receive_time")
                        else None,
                    )
                )
        v.raise_if_any()
        answers = await self._run(handlers.record_payments, self._uf, items)
        results = []
        for item, answer in zip(request.payments, answers, strict=True):
            result = pb.RecordPaymentResult(invoice_id=item.invoice_id, request_id=item.request_id)
            if isinstance(answer, ReckonError):
                result.error_code = answer.kind.value
                result.error_reason = answer.reason
                result.error_message = answer.message
            else:
                invoice, credited = answer
                result.recorded.CopyFrom(
                    pb.RecordPaymentResponse(
                        amount_paid=tr._money(invoice.amount_paid, invoice.currency),  # type: ignore[arg-type]
                        amount_due=money_to_proto(invoice.amount_due),
                        status=tr.status_to_proto(invoice.status),  # type: ignore[arg-type]
                        credited_to_account=money_to_proto(credited),
                    )
                )
            results.append(result)
        return pb.RecordPaymentsResponse(results=results)

    async def ReversePayment(
        self, request: pb.ReversePaymentRequest, context: Any
    ) -> pb.ReversePaymentResponse:
        v = Violations()
        invoice_id = tr.resource_id(v, request.invoice_id, "invoice_id", "inv")
        payment_id = tr.text(v, request.payment_id, "payment_id", max_length=128)
        amount = tr.positive_money(v, request.amount, "amount")
        if (
            request.kind == pb.REVERSAL_KIND_UNSPECIFIED
            or request.kind not in pb.ReversalKind.values()
        ):
            v.add("kind", "must be REFUND or CHARGEBACK")
        idem = tr.idem(v, request, request.request_id)
        v.raise_if_any()
        assert amount is not None
        kind = pb.ReversalKind.Name(request.kind).removeprefix("REVERSAL_KIND_")
        invoice = await self._run(
            handlers.reverse_payment, self._uf, invoice_id, payment_id, amount, kind, idem
        )
        return pb.ReversePaymentResponse(
            amount_paid=tr._money(invoice.amount_paid, invoice.currency),  # type: ignore[arg-type]
            amount_due=money_to_proto(invoice.amount_due),
            status=tr.status_to_proto(invoice.status),  # type: ignore[arg-type]
            invoice=tr.invoice_to_proto(invoice),
        )

    async def AddAccountCredit(
        self, request: pb.AddAccountCreditRequest, context: Any
    ) -> pb.AddAccountCreditResponse:
        v = Violations()
        account_id = tr.resource_id(v, request.account_id, "account_id", "acc")
        amount = tr.positive_money(v, request.amount, "amount")
        reason = tr.text(v, request.reason, "reason")
        reference = tr.text(v, request.reference_id, "reference_id", required=False, max_length=128)
        idem = tr.idem(v, request, request.request_id)
        v.raise_if_any()
        assert amount is not None
        balance = await self._run(
            handlers.add_account_credit, self._uf, account_id, amount, reason, reference, idem
        )
        return pb.AddAccountCreditResponse(balance=money_to_proto(balance))

    async def GetAccountCredit(
        self, request: pb.GetAccountCreditRequest, context: Any
    ) -> pb.GetAccountCreditResponse:
        v = Violations()
        account_id = tr.resource_id(v, request.account_id, "account_id", "acc")
        v.raise_if_any()
        balance, entries = await self._run(handlers.get_account_credit, self._uf, account_id)
        response = pb.GetAccountCreditResponse(balance=money_to_proto(balance))
        for amount, reason, reference, at in entries:
            entry = response.entries.add(reason=reason, reference_id=reference)
            entry.amount.CopyFrom(money_to_proto(amount))
            stamp = timestamp_to_proto(at)
            if stamp is not None:
                entry.create_time.CopyFrom(stamp)
        return response

    # -- pending items ----------------------------------------------------------------------
    async def AddPendingItem(
        self, request: pb.AddPendingItemRequest, context: Any
    ) -> pb.AddPendingItemResponse:
        v = Violations()
        account_id = tr.resource_id(v, request.account_id, "account_id", "acc")
        description = tr.text(v, request.description, "description")
        amount = None
        if not request.HasField("amount"):
            v.add("amount", "is required")
        else:
            amount = money_from_proto(request.amount, "amount", v, allow_negative=True)
            if amount is not None and amount.is_zero():
                v.add("amount", "must not be zero")
        kind = tr.line_kind_from_proto(v, request.kind, "kind")
        category = tr.category(v, request.tax_category, "tax_category")
        rate = tr.rate(v, request.tax_rate, "tax_rate")
        if category and rate is None:
            v.add("tax_rate", "is required with tax_category")
        if rate is not None and not category:
            v.add("tax_category", "is required with tax_rate")
        reference = tr.resource_id(
            v, request.reference_invoice_id, "reference_invoice_id", "inv", required=False
        )
        idem = tr.idem(v, request, request.request_id)
        v.raise_if_any()
        assert amount is not None
        item = await self._run(
            handlers.add_pending_item,
            self._uf,
            handlers.NewPendingItem(
                account_id,
                description,
                amount,
                kind,
                tr.code(v, request.service, "service"),
                category,
                rate,
                reference,
            ),
            idem,
        )
        return pb.AddPendingItemResponse(
            pending_item=tr.pending_item_to_proto(item, amount.currency)
        )

    async def ListPendingItems(
        self, request: pb.ListPendingItemsRequest, context: Any
    ) -> pb.ListPendingItemsResponse:
        v = Violations()
        account_id = tr.resource_id(v, request.account_id, "account_id", "acc")
        limit = page_size_from_proto(request.page_size, v)
        cursor = decode_page_token(request.page_token, v) or {}
        v.raise_if_any()
        items = await self._run(
            handlers.list_pending_items, self._uf, account_id, cursor.get("after", ""), limit + 1
        )
        token = ""
        if len(items) > limit:
            items = items[:limit]
            token = encode_page_token({"after": items[-1].pending_item_id})
        return pb.ListPendingItemsResponse(
            pending_items=[tr.pending_item_to_proto(i, "") for i in items], next_page_token=token
        )

    async def CreateImmediateInvoice(
        self, request: pb.CreateImmediateInvoiceRequest, context: Any
    ) -> pb.CreateImmediateInvoiceResponse:
        v = Violations()
        account_id = tr.resource_id(v, request.account_id, "account_id", "acc")
        idem = tr.idem(v, request, request.request_id)
        v.raise_if_any()
        invoice = await self._run(
            handlers.create_immediate_invoice,
            self._uf,
            self._pricer,
            account_id,
            request.finalize,
            idem,
        )
        return pb.CreateImmediateInvoiceResponse(invoice=tr.invoice_to_proto(invoice))

    # -- credit notes and disputes ----------------------------------------------------------
    async def CreateCreditNote(
        self, request: pb.CreateCreditNoteRequest, context: Any
    ) -> pb.CreateCreditNoteResponse:
        v = Violations()
        invoice_id = tr.resource_id(v, request.invoice_id, "invoice_id", "inv")
        reason = tr.text(v, request.reason, "reason")
        chosen = sum([request.full, bool(request.lines), request.HasField("amount")])
        if chosen != 1:
            v.add("full", "set exactly one of full, lines or amount")
        lines = []
        for index, line in enumerate(request.lines):
            if not line.line_id.isdigit():
                v.add(f"lines[{index}].line_id", "must be a line id of the invoice")
            amount = (
                tr.positive_money(v, line.amount, f"lines[{index}].amount")
                if line.HasField("amount")
                else None
            )
            lines.append(LineCredit(line.line_id, amount))
        amount = (
            tr.positive_money(v, request.amount, "amount") if request.HasField("amount") else None
        )
        category = tr.category(v, request.tax_category, "tax_category")
        rate = tr.rate(v, request.tax_rate, "tax_rate")
        idem = tr.idem(v, request, request.request_id)
        v.raise_if_any()
        note, invoice = await self._run(
            handlers.create_credit_note,
            self._uf,
            handlers.CreditRequest(invoice_id, reason, request.full, lines, amount, category, rate),
            idem,
        )
        return pb.CreateCreditNoteResponse(
            credit_note=tr.credit_note_to_proto(note), invoice=tr.invoice_to_proto(invoice)
        )

    async def GetCreditNote(
        self, request: pb.GetCreditNoteRequest, context: Any
    ) -> pb.GetCreditNoteResponse:
        v = Violations()
        note_id = tr.resource_id(v, request.credit_note_id, "credit_note_id", "cn")
        v.raise_if_any()
        note = await self._run(handlers.get_credit_note, self._uf, note_id)
        return pb.GetCreditNoteResponse(credit_note=tr.credit_note_to_proto(note))

    async def ListCreditNotes(
        self, request: pb.ListCreditNotesRequest, context: Any
    ) -> pb.ListCreditNotesResponse:
        v = Violations()
        invoice_id = tr.resource_id(v, request.invoice_id, "invoice_id", "inv", required=False)
        account_id = tr.resource_id(v, request.account_id, "account_id", "acc", required=False)
        if not invoice_id and not account_id:
            v.add("invoice_id", "set invoice_id or account_id")
        limit = page_size_from_proto(request.page_size, v)
        cursor = decode_page_token(request.page_token, v) or {}
        v.raise_if_any()
        notes = await self._run(
            handlers.list_credit_notes,
            self._uf,
            invoice_id=invoice_id,
            account_id=account_id,
            after=cursor.get("after", ""),
            limit=limit + 1,
        )
        token = ""
        if len(notes) > limit:
            notes = notes[:limit]
            token = encode_page_token({"after": notes[-1].credit_note_id})
        return pb.ListCreditNotesResponse(
            credit_notes=[tr.credit_note_to_proto(n) for n in notes], next_page_token=token
        )

    async def OpenDispute(
        self, request: pb.OpenDisputeRequest, context: Any
    ) -> pb.OpenDisputeResponse:
        v = Violations()
        invoice_id = tr.resource_id(v, request.invoice_id, "invoice_id", "inv")
        amount = tr.positive_money(v, request.amount, "amount")
        reason = tr.text(v, request.reason, "reason")
        idem = tr.idem(v, request, request.request_id)
        v.raise_if_any()
        assert amount is not None
        dispute, invoice = await self._run(
            handlers.open_dispute, self._uf, invoice_id, amount, reason, idem
        )
        return pb.OpenDisputeResponse(
            dispute=tr.dispute_to_proto(dispute), invoice=tr.invoice_to_proto(invoice)
        )

    async def ResolveDispute(
        self, request: pb.ResolveDisputeRequest, context: Any
    ) -> pb.ResolveDisputeResponse:
        v = Violations()
        dispute_id = tr.resource_id(v, request.dispute_id, "dispute_id", "dsp")
        if request.outcome not in (
            pb.DISPUTE_OUTCOME_CUSTOMER_WINS,
            pb.DISPUTE_OUTCOME_CUSTOMER_LOSES,
        ):
            v.add("outcome", "must be CUSTOMER_WINS or CUSTOMER_LOSES")
        note = tr.text(v, request.note, "note", required=False)
        idem = tr.idem(v, request, request.request_id)
        v.raise_if_any()
        wins = request.outcome == pb.DISPUTE_OUTCOME_CUSTOMER_WINS
        dispute, invoice = await self._run(
            handlers.resolve_dispute, self._uf, dispute_id, wins, note, idem
        )
        return pb.ResolveDisputeResponse(
            dispute=tr.dispute_to_proto(dispute), invoice=tr.invoice_to_proto(invoice)
        )

    async def GetInvoiceDocument(
        self, request: pb.GetInvoiceDocumentRequest, context: Any
    ) -> pb.GetInvoiceDocumentResponse:
        v = Violations()
        invoice_id = tr.resource_id(v, request.invoice_id, "invoice_id", "inv", required=False)
        note_id = tr.resource_id(v, request.credit_note_id, "credit_note_id", "cn", required=False)
        if bool(invoice_id) == bool(note_id):
            v.add("invoice_id", "set exactly one of invoice_id or credit_note_id")
        if (
            request.format == pb.DOCUMENT_FORMAT_UNSPECIFIED
            or request.format not in pb.DocumentFormat.values()
        ):
            v.add("format", "must be PDF, HTML, UBL, CII or FACTURX")
        v.raise_if_any()
        if self._renderer is None:
            raise FailedPrecondition(
                "documents are not available in this build", reason="DOCUMENTS_UNAVAILABLE"
            )
        fmt = pb.DocumentFormat.Name(request.format).removeprefix("DOCUMENT_FORMAT_")
        content, media_type, file_name = await self._run(
            self._renderer.render, self._uf, invoice_id, note_id, fmt
        )
        return pb.GetInvoiceDocumentResponse(
            content=content, media_type=media_type, file_name=file_name
        )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
