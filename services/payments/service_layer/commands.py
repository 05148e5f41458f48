"""Commands of the payments use cases: validated input, free of any transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from services.common.money import Money
from services.payments.domain.model import Channel, MethodKind, Purpose
from services.payments.domain.provider import CardDetails


@dataclass(frozen=True)
class AddPaymentMethod:
    account_id: str
    customer_id: str
    currency: str
    kind: MethodKind
    request_id: str = ""
    card: CardDetails | None = None
    iban: str = ""
    mandate_reference: str = ""
    mandate_signed_on: date | None = None
    wallet_name: str = ""
    make_default: bool = True

    def fingerprint_fields(self) -> tuple[object, ...]:
        """Every parameter that makes the request what it is, the card number and IBAN whole.

        Only a keyed digest of this is stored with the request id (``MethodsService``): a
        replay with another card sharing the last four and expiry is not the same request.
        The CVC is left out: it is never kept in any form.
        """
        card = self.card
        return (
            self.account_id,
            self.customer_id,
            self.currency,
            self.kind.value,
            card.number.replace(" ", "") if card else "",
            card.exp_month if card else 0,
            card.exp_year if card else 0,
            self.iban.replace(" ", "").upper(),
            self.mandate_reference,
            self.mandate_signed_on.isoformat() if self.mandate_signed_on else "",
            self.wallet_name,
            self.make_default,
        )


@dataclass(frozen=True)
class UpdateSettings:
    account_id: str
    auto_collect: bool | None = None
    default_method_id: str = ""
    group_id: str | None = None


@dataclass(frozen=True)
class CreatePayment:
    """A payment taken now: from a method on file, or received at a desk or by transfer."""

    account_id: str
    amount: Money
    channel: Channel
    request_id: str
    purpose: Purpose = Purpose.INVOICE
    method_id: str = ""
    # Invoices to settle, oldest first by default; with amounts, exactly those amounts.
    invoice_ids: tuple[str, ...] = ()
    invoice_amounts: tuple[Money, ...] = ()
    external_reference: str = ""


@dataclass(frozen=True)
class CollectInvoice:
    """Automatic collection of an issued invoice (PAY-2), from InvoiceIssued."""

    invoice_id: str
    account_id: str
    amount: Money
    due_date: date | None = None


@dataclass(frozen=True)
class Refund:
    payment_id: str
    amount: Money | None
    request_id: str
    reason: str = ""


@dataclass(frozen=True)
class RecordChargeback:
    payment_id: str
    amount: Money | None
    request_id: str
    reason: str = ""


@dataclass(frozen=True)
class HistoryQuery:
    account_id: str = ""
    customer_id: str = ""
    after: str = ""
    limit: int = 50


@dataclass
class StatementResult:
    statement_id: str
    matched: list[dict[str, object]] = field(default_factory=list)
    partial: list[dict[str, object]] = field(default_factory=list)
    unmatched: list[dict[str, object]] = field(default_factory=list)
