"""SQL repositories of credit notes, disputes and bill runs with their work items."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.orm import Session

from services.common.money import Money
from services.invoicing.adapters.orm import (
    bill_run_items,
    bill_runs,
    credit_note_lines,
    credit_notes,
    disputes,
)
from services.invoicing.domain.model import CreditNote, CreditNoteLine, Dispute, DisputeStatus
from services.invoicing.domain.parties import (
    BillRun,
    BillRunError,
    BillRunScope,
    BillRunState,
    ItemStatus,
)


class SqlCreditNotes:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, note: CreditNote) -> None:
        assert note.credited_to_account is not None
        self._s.execute(
            insert(credit_notes).values(
                credit_note_id=note.credit_note_id,
                number=note.number,
                series=note.series,
                invoice_id=note.invoice_id,
                invoice_number=note.invoice_number,
                account_id=note.account_id,
                customer_id=note.customer_id,
                currency=note.currency,
                issue_date=note.issue_date,
                reason=note.reason[:500],
                language_code=note.language_code,
                credited_to_account=note.credited_to_account.amount,
                create_time=note.create_time,
            )
        )
        self._s.execute(
            insert(credit_note_lines),
            [
                {
                    "credit_note_id": note.credit_note_id,
                    "line_no": index,
                    "description": line.description[:500],
                    "net_amount": line.net_amount.amount,
                    "tax_category": line.tax_category,
                    "tax_rate": line.tax_rate,
                    "invoice_line_id": line.invoice_line_id,
                }
                for index, line in enumerate(note.lines, start=1)
            ],
        )

    def get(self, credit_note_id: str) -> CreditNote | None:
        row = self._s.execute(
            select(credit_notes).where(credit_notes.c.credit_note_id == credit_note_id)
        ).first()
        return self._note(row) if row else None

    def of_invoice(self, invoice_id: str) -> list[CreditNote]:
        rows = self._s.execute(
            select(credit_notes)
            .where(credit_notes.c.invoice_id == invoice_id)
            .order_by(credit_notes.c.credit_note_id)
        )
        return [self._note(row) for row in rows]

    def page(self, *, invoice_id: str, account_id: str, after: str, limit: int) -> list[CreditNote]:
        query = select(credit_notes).where(credit_notes.c.credit_note_id > after)
        if invoice_id:
            query = query.where(credit_notes.c.invoice_id == invoice_id)
        if account_id:
            query = query.where(credit_notes.c.account_id == account_id)
        rows = self._s.execute(query.order_by(credit_notes.c.credit_note_id).limit(limit))
        return [self._note(row) for row in rows]

    def _note(self, row: Row[Any]) -> CreditNote:
        currency = row.currency
        lines = [
            CreditNoteLine(
                line_id=str(r.line_no),
                description=r.description,
                net_amount=Money(r.net_amount, currency),
                tax_category=r.tax_category,
                tax_rate=r.tax_rate,
                invoice_line_id=r.invoice_line_id,
            )
            for r in self._s.execute(
                select(credit_note_lines)
                .where(credit_note_lines.c.credit_note_id == row.credit_note_id)
                .order_by(credit_note_lines.c.line_no)
            )
        ]
        return CreditNote(
            credit_note_id=row.credit_note_id,
            number=row.number,
            series=row.series,
            invoice_id=row.invoice_id,
            invoice_number=row.invoice_number,
            account_id=row.account_id,
            customer_id=row.customer_id,
            currency=currency,
            issue_date=row.issue_date,
            reason=row.reason,
            lines=lines,
            language_code=row.language_code,
            create_time=row.create_time,
            credited_to_account=Money(row.credited_to_account, currency),
        )


class SqlDisputes:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, dispute: Dispute) -> None:
        self._s.execute(insert(disputes).values(**_dispute_values(dispute)))

    def save(self, dispute: Dispute) -> None:
        self._s.execute(
            update(disputes)
            .where(disputes.c.dispute_id == dispute.dispute_id)
            .values(**_dispute_values(dispute))
        )

    def get(self, dispute_id: str) -> Dispute | None:
        row = self._s.execute(select(disputes).where(disputes.c.dispute_id == dispute_id)).first()
        return _dispute(row) if row else None

    def of_invoice(self, invoice_id: str) -> list[Dispute]:
        rows = self._s.execute(
            select(disputes)
            .where(disputes.c.invoice_id == invoice_id)
            .order_by(disputes.c.dispute_id)
        )
        return [_dispute(r) for r in rows]


def _dispute_values(d: Dispute) -> dict[str, Any]:
    return {
        "dispute_id": d.dispute_id,
        "invoice_id": d.invoice_id,
        "amount": d.amount.amount,
        "currency": d.amount.currency,
        "reason": d.reason[:500],
        "status": d.status.value,
        "resolution_note": d.resolution_note[:500],
        "credit_note_id": d.credit_note_id,
        "open_time": d.open_time,
        "resolve_time": d.resolve_time,
    }


def _dispute(r: Row[Any]) -> Dispute:
    return Dispute(
        dispute_id=r.dispute_id,
        invoice_id=r.invoice_id,
        amount=Money(r.amount, r.currency),
        reason=r.reason,
        open_time=r.open_time,
        status=DisputeStatus(r.status),
        resolution_note=r.resolution_note,
        credit_note_id=r.credit_note_id,
        resolve_time=r.resolve_time,
    )


class SqlBillRuns:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, run: BillRun, account_ids: Sequence[str]) -> None:
        self._s.execute(
            insert(bill_runs).values(
                bill_run_id=run.bill_run_id,
                state=run.state.value,
                bill_cycle_day=run.scope.bill_cycle_day,
                reseller_id=run.scope.reseller_id,
                group_id=run.scope.group_id,
                account_id=run.scope.account_id,
                billing_date=run.billing_date,
                auto_accept=run.auto_accept,
                scheduled=run.scheduled,
                create_time=run.create_time,
                complete_time=None,
                update_time=run.update_time,
            )
        )
        rows = [
            {
                "bill_run_id": run.bill_run_id,
                "account_id": account_id,
                "status": ItemStatus.PENDING.value,
                "invoice_id": "",
                "error_reason": "",
                "error_message": "",
                "update_time": run.create_time,
            }
            for account_id in account_ids
        ]
        for start in range(0, len(rows), 5000):
            self._s.execute(insert(bill_run_items), rows[start : start + 5000])

    def get(self, bill_run_id: str, *, details: bool = True) -> BillRun | None:
        row = self._s.execute(
            select(bill_runs).where(bill_runs.c.bill_run_id == bill_run_id)
        ).first()
        return self._run(row, details) if row else None

    def header(self, bill_run_id: str) -> BillRun | None:
        """The run without its counts (one primary-key read: what a work item needs)."""
        row = self._s.execute(
            select(bill_runs).where(bill_runs.c.bill_run_id == bill_run_id)
        ).first()
        return self._run(row, False, counts_too=False) if row else None

    def has_items(self, bill_run_id: str, status: ItemStatus) -> bool:
        found = self._s.execute(
            select(bill_run_items.c.account_id)
            .where(
                bill_run_items.c.bill_run_id == bill_run_id,
                bill_run_items.c.status == status.value,
            )
            .limit(1)
        ).first()
        return found is not None

    def lock(self, bill_run_id: str) -> BillRun | None:
        row = self._s.execute(
            select(bill_runs).where(bill_runs.c.bill_run_id == bill_run_id).with_for_update()
        ).first()
        return self._run(row, False, counts_too=False) if row else None

    def _run(self, row: Row[Any], details: bool, counts_too: bool = True) -> BillRun:
        counts = {}
        if counts_too:
            counts = {
                status: int(count)
                for status, count in self._s.execute(
                    select(bill_run_items.c.status, func.count())
                    .where(bill_run_items.c.bill_run_id == row.bill_run_id)
                    .group_by(bill_run_items.c.status)
                )
            }
        errors: list[BillRunError] = []
        if details:
            errors = [
                BillRunError(r.account_id, r.error_reason, r.error_message)
                for r in self._s.execute(
                    select(bill_run_items)
                    .where(
                        bill_run_items.c.bill_run_id == row.bill_run_id,
                        bill_run_items.c.status == ItemStatus.FAILED.value,
                    )
                    .order_by(bill_run_items.c.account_id)
                    .limit(100)
                )
            ]
        return BillRun(
            bill_run_id=row.bill_run_id,
            state=BillRunState(row.state),
            scope=BillRunScope(row.bill_cycle_day, row.reseller_id, row.group_id, row.account_id),
            billing_date=row.billing_date,
            auto_accept=row.auto_accept,
            scheduled=row.scheduled,
            create_time=row.create_time,
            update_time=row.update_time,
            complete_time=row.complete_time,
            counts=counts,
            errors=errors,
        )

    def set_state(
        self, bill_run_id: str, state: BillRunState, at: datetime, *, complete: bool = False
    ) -> None:
        values: dict[str, Any] = {"state": state.value, "update_time": at}
        if complete:
            values["complete_time"] = at
        self._s.execute(
            update(bill_runs).where(bill_runs.c.bill_run_id == bill_run_id).values(**values)
        )

    def page(self, *, state: BillRunState | None, before: str, limit: int) -> list[BillRun]:
        query = select(bill_runs)
        if state is not None:
            query = query.where(bill_runs.c.state == state.value)
        if before:
            query = query.where(bill_runs.c.bill_run_id < before)
        rows = self._s.execute(query.order_by(bill_runs.c.bill_run_id.desc()).limit(limit)).all()
        return [self._run(r, False) for r in rows]

    def running(self) -> list[str]:
        return list(
            self._s.scalars(
                select(bill_runs.c.bill_run_id).where(
                    bill_runs.c.state.in_(
                        [BillRunState.RUNNING.value, BillRunState.ACCEPTING.value]
                    )
                )
            )
        )

    def item_status(self, bill_run_id: str, account_id: str) -> ItemStatus | None:
        status = self._s.scalar(
            select(bill_run_items.c.status).where(
                bill_run_items.c.bill_run_id == bill_run_id,
                bill_run_items.c.account_id == account_id,
            )
        )
        return ItemStatus(status) if status else None

    def set_item(
        self,
        bill_run_id: str,
        account_id: str,
        status: ItemStatus,
        at: datetime,
        *,
        invoice_id: str = "",
        reason: str = "",
        message: str = "",
        only_from: ItemStatus | None = None,
    ) -> None:
        """Set a work item's outcome; with ``only_from``, only if it still has that status
        (a duplicate delivery must not overwrite what the first one decided)."""
        query = update(bill_run_items).where(
            bill_run_items.c.bill_run_id == bill_run_id,
            bill_run_items.c.account_id == account_id,
        )
        if only_from is not None:
            query = query.where(bill_run_items.c.status == only_from.value)
        self._s.execute(
            query.values(
                status=status.value,
                invoice_id=invoice_id,
                error_reason=reason,
                error_message=message[:500],
                update_time=at,
            )
        )

    def item_invoice(self, bill_run_id: str, account_id: str) -> str:
        found = self._s.scalar(
            select(bill_run_items.c.invoice_id).where(
                bill_run_items.c.bill_run_id == bill_run_id,
                bill_run_items.c.account_id == account_id,
            )
        )
        return found or ""

    def accounts_with(
        self, bill_run_id: str, status: ItemStatus, limit: int = 1_000_000
    ) -> list[str]:
        return list(
            self._s.scalars(
                select(bill_run_items.c.account_id)
                .where(
                    bill_run_items.c.bill_run_id == bill_run_id,
                    bill_run_items.c.status == status.value,
                )
                .order_by(bill_run_items.c.account_id)
                .limit(limit)
            )
        )

    def last_progress(self, bill_run_id: str) -> datetime | None:
        found: datetime | None = self._s.scalar(
            select(func.max(bill_run_items.c.update_time)).where(
                bill_run_items.c.bill_run_id == bill_run_id
            )
        )
        return found
