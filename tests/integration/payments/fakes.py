"""In-memory invoicing and charging behind payments' ports, for tests that do not run them.

They keep the rules that matter to payments: an allocation never exceeds what is
due, and a request id is applied once (a repeat is a no-op), as the real services do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from services.common.money import Money
from services.payments.service_layer.ports import OpenInvoice


@dataclass
class FakeInvoicing:
    invoices: dict[str, OpenInvoice] = field(default_factory=dict)
    credit: dict[str, Money] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    recorded: list[tuple[str, str, Money]] = field(default_factory=list)
    reversed: list[tuple[str, Money]] = field(default_factory=list)

    def issue(
        self, invoice_id: str, account_id: str, amount: str, *, days_ago: int = 0, ref: str = ""
    ) -> OpenInvoice:
        issued = datetime(2026, 3, 1, tzinfo=UTC) - timedelta(days=days_ago)
        invoice = OpenInvoice(
            invoice_id,
            account_id,
            f"INV-{invoice_id}",
            issued,
            date(2026, 3, 15),
            Money.of(amount, "EUR"),
            ref,
        )
        self.invoices[invoice_id] = invoice
        return invoice

    def due(self, invoice_id: str) -> Money:
        return self.invoices[invoice_id].amount_due

    def get_invoice(self, invoice_id: str) -> OpenInvoice | None:
        return self.invoices.get(invoice_id)

    def open_invoices(self, account_id: str) -> Sequence[OpenInvoice]:
        found = [
            i
            for i in self.invoices.values()
            if i.account_id == account_id and i.amount_due.is_positive()
        ]
        return sorted(found, key=lambda i: i.issued_at)

    def find_by_reference(self, reference: str) -> OpenInvoice | None:
        for invoice in self.invoices.values():
            if invoice.payment_reference and invoice.payment_reference == reference:
                return invoice
        return None

    def record_payment(
        self, *, request_id: str, payment_id: str, allocations: Sequence[tuple[str, Money]]
    ) -> None:
        if request_id in self.seen:
            return
        for invoice_id, amount in allocations:
            invoice = self.invoices[invoice_id]
            assert amount <= invoice.amount_due, "allocation beyond what is due"
        for invoice_id, amount in allocations:
            invoice = self.invoices[invoice_id]
            self.invoices[invoice_id] = replace(invoice, amount_due=invoice.amount_due - amount)
            self.recorded.append((payment_id, invoice_id, amount))
        self.seen.add(request_id)

    def add_account_credit(
        self, *, request_id: str, account_id: str, amount: Money, payment_id: str
    ) -> None:
        if request_id in self.seen:
            return
        self.credit[account_id] = self.credit.get(account_id, Money.zero(amount.currency)) + amount
        self.seen.add(request_id)

    def reverse_payment(
        self, *, request_id: str, payment_id: str, invoice_id: str, amount: Money, kind: str
    ) -> None:
        if request_id in self.seen:
            return
        invoice = self.invoices[invoice_id]
        self.invoices[invoice_id] = replace(invoice, amount_due=invoice.amount_due + amount)
        self.reversed.append((invoice_id, amount))
        self.seen.add(request_id)


@dataclass
class FakeCharging:
    balances: dict[str, Money] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    def top_up(self, *, request_id: str, account_id: str, amount: Money) -> None:
        if request_id in self.seen:
            return
        self.balances[account_id] = (
            self.balances.get(account_id, Money.zero(amount.currency)) + amount
        )
        self.seen.add(request_id)


@dataclass
class FileInvoicing:
    """Invoicing whose recorded payments outlive a killed process (a JSON-lines file).

    Each ``record_payment`` request id counts once, as in invoicing; a line cut short
    by a kill is ignored, as invoicing's rolled-back transaction would be.
    """

    path: Path
    invoices: dict[str, OpenInvoice] = field(default_factory=dict)

    def recorded(self) -> dict[str, tuple[str, str, Money]]:
        """Request id -> (payment id, invoice id, amount) of every allocation recorded."""
        found: dict[str, tuple[str, str, Money]] = {}
        if not self.path.exists():
            return found
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            found.setdefault(
                record["request_id"],
                (record["payment_id"], record["invoice_id"], Money.of(record["amount"], "EUR")),
            )
        return found

    def due(self, invoice_id: str) -> Money:
        paid = [m for _, i, m in self.recorded().values() if i == invoice_id]
        return self.invoices[invoice_id].amount_due - sum(paid, Money.zero("EUR"))

    def get_invoice(self, invoice_id: str) -> OpenInvoice | None:
        invoice = self.invoices.get(invoice_id)
        return replace(invoice, amount_due=self.due(invoice_id)) if invoice else None

    def open_invoices(self, account_id: str) -> Sequence[OpenInvoice]:
        return []

    def record_payment(
        self, *, request_id: str, payment_id: str, allocations: Sequence[tuple[str, Money]]
    ) -> None:
        seen = self.recorded()
        lines = [
            json.dumps(
                {
                    "request_id": f"{request_id}:{invoice_id}",
                    "payment_id": payment_id,
                    "invoice_id": invoice_id,
                    "amount": str(amount.amount),
                }
            )
            + "\n"
            for invoice_id, amount in allocations
            if f"{request_id}:{invoice_id}" not in seen
        ]
        with self.path.open("a", encoding="utf-8") as out:
            out.write("".join(lines))

    def add_account_credit(
        self, *, request_id: str, account_id: str, amount: Money, payment_id: str
    ) -> None:
        raise AssertionError("a collection never makes account credit")

    def reverse_payment(
        self, *, request_id: str, payment_id: str, invoice_id: str, amount: Money, kind: str
    ) -> None:
        raise AssertionError("nothing is reversed in a collection run")
