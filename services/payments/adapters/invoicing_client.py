"""Invoicing over gRPC behind payments' ``InvoicingPort`` (``INVOICING_ADDR``).

Blocking stubs: the payments use cases run in worker threads. Every mutation
carries a request id derived from the payment, so a repeated effect (a retry
after a timeout, the effects runner after a crash) is applied once by invoicing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import grpc

from reckon.invoicing.v1 import invoicing_pb2 as pb
from reckon.invoicing.v1 import invoicing_pb2_grpc
from services.common.errors import Violations
from services.common.grpc_client import open_sync_channel
from services.common.money import Money
from services.common.proto_convert import money_from_proto, money_to_proto
from services.payments.service_layer.ports import OpenInvoice, PaymentToAllocate

_OPEN = [pb.INVOICE_STATUS_OPEN, pb.INVOICE_STATUS_PARTIALLY_PAID]
_BATCH = 1000  # allocations per RecordPayments call (invoicing's limit)


def _date(message: object) -> date | None:
    year, month, day = (getattr(message, f) for f in ("year", "month", "day"))
    return date(year, month, day) if year and month and day else None


def _money(message: object) -> Money:
    found = money_from_proto(message, "amount", Violations())  # type: ignore[arg-type]
    if found is None:
        raise ValueError("invoicing returned an invalid amount")
    return found


def _invoice(invoice: pb.Invoice) -> OpenInvoice:
    issued = _date(invoice.issue_date)
    issued_at = (
        datetime(issued.year, issued.month, issued.day, tzinfo=UTC)
        if issued
        else invoice.finalize_time.ToDatetime(tzinfo=UTC)
    )
    return OpenInvoice(
        invoice_id=invoice.invoice_id,
        account_id=invoice.account_id,
        number=invoice.number,
        issued_at=issued_at,
        due_date=_date(invoice.due_date),
        amount_due=_money(invoice.amount_due)
        if invoice.HasField("amount_due")
        else Money.zero(invoice.currency_code),
    )


class GrpcInvoicing:
    def __init__(self, address: str, token: str, *, timeout_seconds: float = 5.0) -> None:
        self._channel = open_sync_channel(address, token)
        self._stub = invoicing_pb2_grpc.InvoicingServiceStub(self._channel)
        self._timeout = timeout_seconds

    def close(self) -> None:
        self._channel.close()

    def get_invoice(self, invoice_id: str) -> OpenInvoice | None:
        try:
            reply = self._stub.GetInvoice(
                pb.GetInvoiceRequest(invoice_id=invoice_id), timeout=self._timeout
            )
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise
        return _invoice(reply.invoice)

    def open_invoices(self, account_id: str) -> Sequence[OpenInvoice]:
        found: list[OpenInvoice] = []
        token = ""
        while True:
            reply = self._stub.SearchInvoices(
                pb.SearchInvoicesRequest(
                    account_id=account_id, statuses=_OPEN, page_size=500, page_token=token
                ),
                timeout=self._timeout,
            )
            found.extend(_invoice(i) for i in reply.invoices)
            token = reply.next_page_token
            if not token:
                break
        return sorted(found, key=lambda i: (i.issued_at, i.number, i.invoice_id))

    def record_payment(
        self, *, request_id: str, payment_id: str, allocations: Sequence[tuple[str, Money]]
    ) -> None:
        for invoice_id, amount in allocations:
            self._stub.RecordPayment(
                pb.RecordPaymentRequest(
                    invoice_id=invoice_id,
                    payment_id=payment_id,
                    amount=money_to_proto(amount),
                    # Paid meanwhile (a desk payment beside the card on file): the excess
                    # becomes account credit instead of a refusal that would strand it.
                    excess_to_account_credit=True,
                    request_id=f"{request_id}:{invoice_id}",
                ),
                timeout=self._timeout,
            )

    def record_payments(self, payments: Sequence[PaymentToAllocate]) -> list[Exception | None]:
        """Many payments' allocations in ``RecordPayments`` calls of up to 1,000 items.

        Request ids are the ones ``record_payment`` sends, so either call may repeat
        the other. An invoicing without the batch RPC gets one call per payment.
        """
        items = [
            (
                index,
                pb.RecordPaymentRequest(
                    invoice_id=invoice_id,
                    payment_id=payment.payment_id,
                    amount=money_to_proto(amount),
                    excess_to_account_credit=True,
                    request_id=f"{payment.request_id}:{invoice_id}",
                ),
            )
            for index, payment in enumerate(payments)
            for invoice_id, amount in payment.allocations
        ]
        outcomes: list[Exception | None] = [None] * len(payments)
        for first in range(0, len(items), _BATCH):
            chunk = items[first : first + _BATCH]
            try:
                reply = self._stub.RecordPayments(
                    pb.RecordPaymentsRequest(payments=[item for _, item in chunk]),
                    timeout=self._timeout,
                )
            except grpc.RpcError as exc:
                if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                    return _one_by_one(self, payments)
                raise
            for (index, _), result in zip(chunk, reply.results, strict=True):
                if result.error_code:
                    outcomes[index] = RuntimeError(
                        f"invoicing refused {result.invoice_id}: {result.error_code} "
                        f"{result.error_reason}: {result.error_message}"
                    )
        return outcomes

    def add_account_credit(
        self, *, request_id: str, account_id: str, amount: Money, payment_id: str
    ) -> None:
        self._stub.AddAccountCredit(
            pb.AddAccountCreditRequest(
                account_id=account_id,
                amount=money_to_proto(amount),
                reason="overpayment",
                reference_id=payment_id,
                request_id=request_id,
            ),
            timeout=self._timeout,
        )

    def reverse_payment(
        self, *, request_id: str, payment_id: str, invoice_id: str, amount: Money, kind: str
    ) -> None:
        self._stub.ReversePayment(
            pb.ReversePaymentRequest(
                invoice_id=invoice_id,
                payment_id=payment_id,
                amount=money_to_proto(amount),
                kind=pb.REVERSAL_KIND_CHARGEBACK
                if kind == "CHARGEBACK"
                else pb.REVERSAL_KIND_REFUND,
                request_id=request_id,
            ),
            timeout=self._timeout,
        )


def _one_by_one(
    invoicing: GrpcInvoicing, payments: Sequence[PaymentToAllocate]
) -> list[Exception | None]:
    outcomes: list[Exception | None] = []
    for payment in payments:
        try:
            invoicing.record_payment(
                request_id=payment.request_id,
                payment_id=payment.payment_id,
                allocations=payment.allocations,
            )
        except grpc.RpcError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)
    return outcomes


class NoInvoicing:
    """Used when ``INVOICING_ADDR`` is unset: no invoices exist; payments become credit-free
    top-ups or are refused where an invoice is named."""

    def get_invoice(self, invoice_id: str) -> OpenInvoice | None:
        return None

    def open_invoices(self, account_id: str) -> Sequence[OpenInvoice]:
        return []

    def record_payment(
        self, *, request_id: str, payment_id: str, allocations: Sequence[tuple[str, Money]]
    ) -> None:
        raise RuntimeError("INVOICING_ADDR is not set: cannot allocate payments to invoices")

    def add_account_credit(
        self, *, request_id: str, account_id: str, amount: Money, payment_id: str
    ) -> None:
        raise RuntimeError("INVOICING_ADDR is not set: cannot hold account credit")

    def reverse_payment(
        self, *, request_id: str, payment_id: str, invoice_id: str, amount: Money, kind: str
    ) -> None:
        raise RuntimeError("INVOICING_ADDR is not set: cannot reopen invoices")
