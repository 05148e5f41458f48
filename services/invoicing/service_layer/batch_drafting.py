"""A bill run's work message done in one transaction: every account of it at once.

The same rules as drafting one account (``drafting.compose`` builds each
invoice), with the reads and writes made set-at-a-time (``uow.batch``). The
transaction also marks the message's work items done, so a crash leaves all of
it or none; the unique (account, cycle) key still stops a second invoice if the
message was delivered twice at the same time. Any conflict makes the caller fall
back to one account per transaction for that message.

Order inside the transaction (ADR 0056): reads; usage taken for invoice ids named
in advance and returned added up per line (one statement); lines, pending items and
work items written; then, last, the number block, the invoice rows (inserted already
finalised) and their history, so the series row is locked only for those few writes
and the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from opentelemetry.metrics import Counter

from services.common.errors import ReckonError
from services.common.ids import new_id
from services.common.money import Money
from services.common.telemetry import meter
from services.invoicing.domain import events
from services.invoicing.domain.builder import Charges
from services.invoicing.domain.cycles import local_date
from services.invoicing.domain.model import Invoice, InvoiceStatus
from services.invoicing.domain.parties import BillRunState, ItemStatus
from services.invoicing.service_layer import drafting
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork

UowFactory = Callable[[], InvoicingUnitOfWork]


def draft_message(
    uow_factory: UowFactory,
    pricer: drafting.FeePricer,
    run_id: str,
    account_ids: Sequence[str],
) -> None:
    with uow_factory() as uow:
        run = uow.runs.header(run_id)
        if run is None or run.state != BillRunState.RUNNING:
            return
        now = uow.clock.now()
        statuses = uow.batch.item_statuses(run_id, account_ids)
        todo = [a for a in account_ids if statuses.get(a) == ItemStatus.PENDING]
        if not todo:
            return
        facts = uow.batch.accounts(todo)
        done: list[tuple[str, ItemStatus, str]] = []
        failed: list[tuple[str, ReckonError]] = []
        boundaries = {
            a: drafting.boundary_for(facts[a], run.billing_date, now) for a in todo if a in facts
        }
        keys = {a: drafting.cycle_key(b, "") for a, b in boundaries.items()}
        existing = uow.batch.existing(list(keys), set(keys.values())) if keys else {}
        work = [a for a in todo if a in facts and (a, keys[a]) not in existing]
        done += [
            (a, ItemStatus.SKIPPED, existing[(a, keys[a])])
            for a in keys
            if (a, keys[a]) in existing
        ]
        children = uow.batch.children(work) if work else {}
        members = {
            a: [facts[a]] + [c for c in children.get(a, []) if c.currency == facts[a].currency]
            for a in work
        }
        everyone = [m.account_id for group in members.values() for m in group]
        segments = uow.batch.segments(everyone) if everyone else {}
        pending = uow.batch.pending(everyone) if everyone else {}
        # Each invoice is named first: storage takes the unbilled usage of its accounts
        # for it and hands it back added up per line (one statement, ADR 0056).
        invoice_ids = {a: new_id("inv") for a in work}
        usage = uow.batch.take_usage_totals(
            [(m.account_id, invoice_ids[a], boundaries[a].start) for a in work for m in members[a]]
        )
        drafted: list[tuple[Invoice, str]] = []
        taken_pending: list[tuple[Sequence[str], str]] = []
        for account_id in work:
            account, boundary = facts[account_id], boundaries[account_id]
            invoice_id = invoice_ids[account_id]
            sources = [
                Charges(
                    m.account_id,
                    segments=segments.get(m.account_id, []),
                    pending=pending.get(m.account_id, []),
                    usage_totals=usage.get((invoice_id, m.account_id), []),
                )
                for m in members[account_id]
            ]
            try:
                composed = drafting.compose(
                    pricer,
                    account,
                    sources,
                    boundary=boundary,
                    bill_run_id=run_id,
                    now=now,
                    invoice_id=invoice_id,
                )
            except ReckonError as exc:
                failed.append((account_id, exc))
                continue
            if composed is None:
                done.append((account_id, ItemStatus.SKIPPED, ""))
                continue
            invoice, built = composed
            drafted.append((invoice, keys[account_id]))
            if built.pending_item_ids:
                taken_pending.append((built.pending_item_ids, invoice.invoice_id))
            status = ItemStatus.FINALIZED if run.auto_accept else ItemStatus.DRAFTED
            done.append((account_id, status, invoice.invoice_id))
        made = {invoice.invoice_id for invoice, _ in drafted}
        unmade = sorted({i for i, _ in usage} - made)
        uow.batch.release_usage(unmade)
        uow.batch.add_lines([invoice for invoice, _ in drafted])
        uow.batch.take_pending(taken_pending)
        uow.batch.set_items(run_id, done, now)
        # Refused accounts (e.g. BUYER_VAT_ID_REQUIRED) in one statement: their usage went
        # back with ``release_usage`` above, nothing else of theirs was written.
        uow.batch.fail_items(
            run_id,
            [(a, "ACCOUNT_NOT_FOUND", "") for a in todo if a not in facts]
            + [(a, error.reason, error.message) for a, error in failed],
            now,
        )
        # Numbers last: the series row stays locked from here to the commit, so what
        # follows is kept short (the invoice rows, their history and the outbox rows).
        if drafted and run.auto_accept:
            finalize_many(uow, [invoice for invoice, _ in drafted], now)
        uow.batch.add_invoices(drafted)
        uow.batch.add_history([invoice for invoice, _ in drafted])
        uow.commit()
    _count_items(
        [status for _, status, _ in done]
        + [ItemStatus.FAILED] * (len(failed) + sum(a not in facts for a in todo))
    )


_items_done: Counter | None = None


def _count_items(statuses: Sequence[ItemStatus]) -> None:
    """Bill-run progress for dashboards: work items settled, by outcome, once committed."""
    global _items_done
    if _items_done is None:
        _items_done = meter().create_counter(
            "reckon.invoicing.billrun.items",
            unit="{account}",
            description="bill-run work items settled, by status",
        )
    for status in set(statuses):
        _items_done.add(sum(s is status for s in statuses), {"status": status.value})


def finalize_many(uow: InvoicingUnitOfWork, drafts: list[Invoice], now: datetime) -> None:
    """``drafting.finalize`` for drafts not stored yet: numbers taken as one block per series.

    The caller inserts the invoices afterwards, already finalised (one write per invoice).
    """
    balances = uow.batch.credit_balances([d.account_id for d in drafts])
    with_credit = [a for (a, _), amount in balances.items() if amount > 0]
    if with_credit:
        uow.batch.lock_accounts(with_credit)
    by_series: dict[str, list[Invoice]] = {}
    for invoice in sorted(drafts, key=lambda i: i.invoice_id):
        issue = local_date(now, invoice.time_zone)
        by_series.setdefault(f"INV-{issue.year}", []).append(invoice)
    credit_rows: list[tuple[str, Money, str, str, datetime]] = []
    for series, members in sorted(by_series.items()):
        first = uow.batch.next_numbers(series, len(members))
        for offset, invoice in enumerate(members):
            issue = local_date(now, invoice.time_zone)
            available = Money(
                balances.get((invoice.account_id, invoice.currency), Decimal(0)), invoice.currency
            )
            used = invoice.finalize(
                number=f"{series}-{first + offset:06d}",
                series=series,
                issue_date=issue,
                due_date=issue + timedelta(days=invoice.payment_terms_days),
                account_credit=available,
                at=now,
            )
            invoice.version += 1  # as if stored as a draft, then saved finalised
            if used.is_positive():
                credit_rows.append((invoice.account_id, -used, "applied", invoice.invoice_id, now))
            if invoice.gross.is_negative():
                credit_rows.append(
                    (invoice.account_id, -invoice.gross, "credit invoice", invoice.invoice_id, now)
                )
            _announce(uow, invoice)
    uow.batch.add_credit(credit_rows)


def _announce(uow: InvoicingUnitOfWork, invoice: Invoice) -> None:
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
