"""Bill runs (INV-2): a run record, one work item per account, shared by many workers.

Starting a run writes, in one transaction, the run, one ``bill_run_items`` row
per account (PENDING) and the work messages (batches of accounts) to the
outbox, whose relay puts them on the Redis stream ``reckon:billrun:work``
(ADR 0022). Workers in any number of processes read that stream in one
consumer group. Each message is done in one transaction that drafts (and
with auto-accept finalises) its accounts' invoices, takes their usage and pending
items and marks their work items done (``batch_drafting``; one account per
transaction if that conflicts): a worker killed at any point leaves either all of
it or none of it, its unacknowledged message goes to another worker, and the
unique (account, cycle) key makes a second invoice impossible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from services.common.errors import Aborted, FailedPrecondition, NotFound, ReckonError
from services.common.events import DomainEvent
from services.common.ids import new_id
from services.invoicing.domain import events
from services.invoicing.domain.cycles import (
    MAX_BILL_CYCLE_DAY,
    MIN_BILL_CYCLE_DAY,
    is_known_time_zone,
    latest_cycle_end,
)
from services.invoicing.domain.model import Invoice, InvoiceStatus
from services.invoicing.domain.parties import (
    AccountFacts,
    BillRun,
    BillRunError,
    BillRunScope,
    BillRunState,
    ItemStatus,
)
from services.invoicing.service_layer import batch_drafting, drafting
from services.invoicing.service_layer.handlers import Idem
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork

log = logging.getLogger(__name__)

UowFactory = Callable[[], InvoicingUnitOfWork]
WORK_STREAM = "reckon:billrun:work"
# Accounts per work message: each message is one transaction of about 20 statements
# whatever its size, so bigger messages pay those round trips over more invoices
# (ADR 0056); a message holds the series row only for its last few statements.
ACCOUNTS_PER_MESSAGE = 500
PREVIEW_LIMIT = 1000
NO_IDEM = Idem()


@dataclass(frozen=True)
class BillRunWork(DomainEvent):
    """A work message: do ``op`` (``draft`` or ``accept``) for these accounts of a run."""

    event_type = "BillRunWork"
    aggregate_field = "bill_run_id"

    bill_run_id: str
    op: str
    account_ids: tuple[str, ...]


boundary_for = drafting.boundary_for


def _due(
    uow: InvoicingUnitOfWork, account: AccountFacts, billing_date: date, now: datetime
) -> bool:
    if drafting.is_billed_by_parent(uow, account):
        return False
    ended = boundary_for(account, billing_date, now).previous()
    return account.create_time < ended.end


def _queue(
    uow: InvoicingUnitOfWork,
    run_id: str,
    op: str,
    account_ids: Sequence[str],
    per_message: int = ACCOUNTS_PER_MESSAGE,
) -> None:
    for start in range(0, len(account_ids), per_message):
        uow.publish(BillRunWork(run_id, op, tuple(account_ids[start : start + per_message])))


@dataclass
class StartResult:
    run: BillRun
    preview: list[Invoice]


def start_bill_run(
    uow_factory: UowFactory,
    pricer: drafting.FeePricer,
    scope: BillRunScope,
    billing_date: date | None,
    *,
    dry_run: bool,
    auto_accept: bool,
    scheduled: bool = False,
    idem: Idem = NO_IDEM,
    accounts_per_message: int = ACCOUNTS_PER_MESSAGE,
) -> StartResult:
    with uow_factory() as uow:
        now = uow.clock.now()
        if not dry_run:
            replayed = uow.replayed_resource("StartBillRun", idem.request_id, idem.fingerprint)
            if replayed is not None:
                run = uow.runs.get(replayed)
                assert run is not None
                return StartResult(run, [])
        when = billing_date or now.date()
        candidates = uow.parties.accounts_in_scope(
            bill_cycle_day=scope.bill_cycle_day,
            reseller_id=scope.reseller_id,
            group_id=scope.group_id,
            account_id=scope.account_id,
        )
        due = [a for a in candidates if _due(uow, a, when, now)]
        if scope.account_id and not candidates:
            raise NotFound(
                f"invoicing knows no account {scope.account_id}", reason="ACCOUNT_NOT_FOUND"
            )
        run = BillRun(
            bill_run_id="" if dry_run else new_id("run"),
            state=BillRunState.RUNNING,
            scope=scope,
            billing_date=when,
            auto_accept=auto_accept,
            scheduled=scheduled,
            create_time=now,
            update_time=now,
        )
        if dry_run:
            return _preview(uow, pricer, run, due, now)
        account_ids = [a.account_id for a in due]
        uow.runs.add(run, account_ids)
        _queue(uow, run.bill_run_id, "draft", account_ids, accounts_per_message)
        if not account_ids:
            _complete(uow, run.bill_run_id, run, now)
        uow.remember_request("StartBillRun", idem.request_id, idem.fingerprint, run.bill_run_id)
        uow.commit()
        run.counts = {ItemStatus.PENDING.value: len(account_ids)}
        return StartResult(run, [])


def _preview(
    uow: InvoicingUnitOfWork,
    pricer: drafting.FeePricer,
    run: BillRun,
    due: list[AccountFacts],
    now: datetime,
) -> StartResult:
    """What the run would invoice; the unit of work is never committed: nothing is written."""
    preview: list[Invoice] = []
    counts = {s.value: 0 for s in (ItemStatus.DRAFTED, ItemStatus.SKIPPED, ItemStatus.FAILED)}
    totals: dict[str, object] = {}
    for account in due:
        boundary = boundary_for(account, run.billing_date, now)
        if uow.invoices.exists_for_cycle(
            account.account_id, boundary.previous().start_date.isoformat()
        ):
            counts[ItemStatus.SKIPPED.value] += 1
            continue
        try:
            invoice = drafting.draft(
                uow, pricer, account, boundary=boundary, bill_run_id="", write=False, now=now
            )
        except ReckonError as exc:
            counts[ItemStatus.FAILED.value] += 1
            run.errors.append(_error(account.account_id, exc))
            continue
        if invoice is None:
            counts[ItemStatus.SKIPPED.value] += 1
            continue
        counts[ItemStatus.DRAFTED.value] += 1
        current = totals.get(invoice.currency)
        totals[invoice.currency] = invoice.gross if current is None else current + invoice.gross  # type: ignore[operator]
        if len(preview) < PREVIEW_LIMIT:
            invoice.invoice_id = ""
            preview.append(invoice)
    run.counts = counts
    run.totals = {currency: str(total.amount) for currency, total in totals.items()}  # type: ignore[attr-defined]
    return StartResult(run, preview)


def _error(account_id: str, exc: ReckonError) -> BillRunError:
    return BillRunError(account_id, exc.reason, exc.message)


def process(
    uow_factory: UowFactory,
    pricer: drafting.FeePricer,
    run_id: str,
    op: str,
    account_ids: Sequence[str],
) -> None:
    """Do one work message, then maybe end the run.

    Drafting is one transaction for the whole message; if it conflicts (a duplicate
    delivery running at the same time), each account gets its own transaction.
    """
    if op == "draft":
        try:
            batch_drafting.draft_message(uow_factory, pricer, run_id, account_ids)
        except Exception:
            log.info(
                "bill run %s: message failed as a whole; one account at a time",
                run_id,
                exc_info=True,
            )
        else:
            maybe_complete(uow_factory, run_id)
            return
    for account_id in account_ids:
        for attempt in range(3):
            try:
                if op == "accept":
                    _accept_one(uow_factory, run_id, account_id)
                else:
                    _draft_one(uow_factory, pricer, run_id, account_id)
                break
            except Aborted:
                if attempt == 2:
                    raise
    maybe_complete(uow_factory, run_id)


def _draft_one(
    uow_factory: UowFactory, pricer: drafting.FeePricer, run_id: str, account_id: str
) -> None:
    """Draft one account of a run. Its work item only ever leaves PENDING (like the batch
    path's ``set_items``): whatever an earlier delivery decided stays."""
    with uow_factory() as uow:
        run = uow.runs.header(run_id)
        if run is None or run.state != BillRunState.RUNNING:
            return
        if uow.runs.item_status(run_id, account_id) != ItemStatus.PENDING:
            return  # done by an earlier delivery of this message
        now = uow.clock.now()
        account = uow.parties.account(account_id)
        if account is None:
            uow.runs.set_item(
                run_id,
                account_id,
                ItemStatus.FAILED,
                now,
                reason="ACCOUNT_NOT_FOUND",
                only_from=ItemStatus.PENDING,
            )
            uow.commit()
            return
        boundary = boundary_for(account, run.billing_date, now)
        existing = uow.invoices.exists_for_cycle(
            account_id, boundary.previous().start_date.isoformat()
        )
        if existing:
            # A duplicate delivery may find the invoice the first one made after reading the
            # item as PENDING: the item keeps the first delivery's outcome.
            uow.runs.set_item(
                run_id,
                account_id,
                ItemStatus.SKIPPED,
                now,
                invoice_id=existing,
                only_from=ItemStatus.PENDING,
            )
            uow.commit()
            return
        try:
            invoice = drafting.draft(
                uow, pricer, account, boundary=boundary, bill_run_id=run_id, write=True, now=now
            )
            if invoice is not None and run.auto_accept:
                drafting.finalize(uow, invoice, now)
        except (Aborted, NotFound):
            raise
        except ReckonError as exc:
            uow.rollback()
            _fail(uow_factory, run_id, account_id, exc)
            return
        if invoice is None:
            uow.runs.set_item(
                run_id, account_id, ItemStatus.SKIPPED, now, only_from=ItemStatus.PENDING
            )
        else:
            status = ItemStatus.FINALIZED if run.auto_accept else ItemStatus.DRAFTED
            uow.runs.set_item(
                run_id,
                account_id,
                status,
                now,
                invoice_id=invoice.invoice_id,
                only_from=ItemStatus.PENDING,
            )
        uow.commit()


def _fail(uow_factory: UowFactory, run_id: str, account_id: str, exc: ReckonError) -> None:
    log.warning("bill run %s: account %s failed: %s", run_id, account_id, exc.message)
    with uow_factory() as uow:
        uow.runs.set_item(
            run_id,
            account_id,
            ItemStatus.FAILED,
            uow.clock.now(),
            reason=exc.reason,
            message=exc.message,
            only_from=ItemStatus.PENDING,
        )
        uow.commit()


def _accept_one(uow_factory: UowFactory, run_id: str, account_id: str) -> None:
    with uow_factory() as uow:
        run = uow.runs.header(run_id)
        if run is None or run.state != BillRunState.ACCEPTING:
            return
        if uow.runs.item_status(run_id, account_id) != ItemStatus.DRAFTED:
            return
        now = uow.clock.now()
        invoice_id = uow.runs.item_invoice(run_id, account_id)
        invoice = uow.invoices.get(invoice_id) if invoice_id else None
        if invoice is not None and invoice.status == InvoiceStatus.DRAFT:
            try:
                drafting.finalize(uow, invoice, now)
            except (Aborted, NotFound):
                raise
            except ReckonError as exc:
                # e.g. BUYER_VAT_ID_REQUIRED: the draft stays a draft (FinalizeInvoice once
                # the customer's VAT id is set); the item says why.
                uow.rollback()
                log.warning("bill run %s: account %s refused: %s", run_id, account_id, exc.message)
                with uow_factory() as failing:
                    failing.runs.set_item(
                        run_id,
                        account_id,
                        ItemStatus.FAILED,
                        now,
                        invoice_id=invoice_id,
                        reason=exc.reason,
                        message=exc.message,
                        only_from=ItemStatus.DRAFTED,
                    )
                    failing.commit()
                return
        uow.runs.set_item(run_id, account_id, ItemStatus.FINALIZED, now, invoice_id=invoice_id)
        uow.commit()


def maybe_complete(uow_factory: UowFactory, run_id: str) -> None:
    with uow_factory() as uow:
        # Cheap checks first (an index probe), the lock and the counts only at the end.
        header = uow.runs.header(run_id)
        if header is None:
            return
        if header.state == BillRunState.RUNNING and uow.runs.has_items(run_id, ItemStatus.PENDING):
            return
        if header.state == BillRunState.ACCEPTING and uow.runs.has_items(
            run_id, ItemStatus.DRAFTED
        ):
            return
        locked = uow.runs.lock(run_id)
        run = uow.runs.get(run_id, details=False)
        if locked is None or run is None:
            return
        now = uow.clock.now()
        if run.state == BillRunState.RUNNING and run.count(ItemStatus.PENDING) == 0:
            _complete(uow, run_id, run, now)
            uow.commit()
        elif run.state == BillRunState.ACCEPTING and run.count(ItemStatus.DRAFTED) == 0:
            uow.runs.set_state(run_id, BillRunState.ACCEPTED, now, complete=True)
            uow.commit()


def _complete(uow: InvoicingUnitOfWork, run_id: str, run: BillRun, now: datetime) -> None:
    state = BillRunState.ACCEPTED if run.auto_accept else BillRunState.DRAFTED
    uow.runs.set_state(run_id, state, now, complete=True)
    uow.publish(
        events.BillRunCompleted(
            bill_run_id=run_id,
            state=state.value,
            accounts_total=run.total,
            invoices_drafted=run.count(ItemStatus.DRAFTED) + run.count(ItemStatus.FINALIZED),
            accounts_failed=run.count(ItemStatus.FAILED),
        )
    )


def get_bill_run(uow_factory: UowFactory, run_id: str) -> BillRun:
    with uow_factory() as uow:
        run = uow.runs.get(run_id)
        if run is None:
            raise NotFound(f"no bill run {run_id}", reason="BILL_RUN_NOT_FOUND")
        run.totals = uow.invoices.totals_of_run(run_id)
        return run


def list_bill_runs(
    uow_factory: UowFactory, state: BillRunState | None, before: str, limit: int
) -> list[BillRun]:
    with uow_factory() as uow:
        return uow.runs.page(state=state, before=before, limit=limit)


def _run_or_404(uow: InvoicingUnitOfWork, run_id: str) -> BillRun:
    run = uow.runs.lock(run_id)
    if run is None:
        raise NotFound(f"no bill run {run_id}", reason="BILL_RUN_NOT_FOUND")
    return run


def _refuse(run: BillRun, what: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"bill run {run.bill_run_id} is {run.state.value}: cannot {what}",
        reason="INVALID_BILL_RUN_STATE",
        metadata={"state": run.state.value},
    )


def accept_bill_run(uow_factory: UowFactory, run_id: str, idem: Idem) -> BillRun:
    with uow_factory() as uow:
        if uow.replayed_resource("AcceptBillRun", idem.request_id, idem.fingerprint) is None:
            run = _run_or_404(uow, run_id)
            if run.state != BillRunState.DRAFTED:
                raise _refuse(run, "accept it (only a DRAFTED run can be accepted)")
            now = uow.clock.now()
            uow.runs.set_state(run_id, BillRunState.ACCEPTING, now)
            drafted = uow.runs.accounts_with(run_id, ItemStatus.DRAFTED)
            _queue(uow, run_id, "accept", drafted)
            if not drafted:
                uow.runs.set_state(run_id, BillRunState.ACCEPTED, now, complete=True)
            uow.remember_request("AcceptBillRun", idem.request_id, idem.fingerprint, run_id)
            uow.commit()
    return get_bill_run(uow_factory, run_id)


def cancel_bill_run(uow_factory: UowFactory, run_id: str, idem: Idem) -> BillRun:
    with uow_factory() as uow:
        if uow.replayed_resource("CancelBillRun", idem.request_id, idem.fingerprint) is None:
            run = _run_or_404(uow, run_id)
            if run.state not in (BillRunState.RUNNING, BillRunState.DRAFTED):
                raise _refuse(run, "cancel it (only a RUNNING or DRAFTED run can be cancelled)")
            now = uow.clock.now()
            uow.runs.set_state(run_id, BillRunState.CANCELLED, now, complete=True)
            for invoice_id in uow.invoices.ids_of_run(run_id, InvoiceStatus.DRAFT):
                invoice = uow.invoices.get(invoice_id, lines=False)
                uow.usage.release(invoice_id)
                uow.pending.release(invoice_id)
                uow.invoices.delete_draft(invoice_id)
                if invoice is not None:
                    uow.runs.set_item(run_id, invoice.account_id, ItemStatus.CANCELLED, now)
            for account_id in uow.runs.accounts_with(run_id, ItemStatus.PENDING):
                uow.runs.set_item(run_id, account_id, ItemStatus.CANCELLED, now)
            uow.remember_request("CancelBillRun", idem.request_id, idem.fingerprint, run_id)
            uow.commit()
    return get_bill_run(uow_factory, run_id)


def send_bill_run(uow_factory: UowFactory, run_id: str, idem: Idem) -> tuple[BillRun, int]:
    sent = 0
    with uow_factory() as uow:
        if uow.replayed_resource("SendBillRun", idem.request_id, idem.fingerprint) is None:
            run = _run_or_404(uow, run_id)
            if run.state != BillRunState.ACCEPTED:
                raise _refuse(run, "send it (accept it first)")
            for invoice_id in uow.invoices.ids_of_run(run_id):
                invoice = uow.invoices.get(invoice_id, lines=False)
                if (
                    invoice is not None
                    and invoice.is_final
                    and invoice.status != InvoiceStatus.VOID
                ):
                    uow.publish(events.InvoiceIssued(**events.facts(invoice), resend=True))
                    sent += 1
            uow.remember_request("SendBillRun", idem.request_id, idem.fingerprint, run_id)
            uow.commit()
    return get_bill_run(uow_factory, run_id), sent


def requeue_stalled(uow_factory: UowFactory, stalled_after: timedelta) -> int:
    """Publish again the work of runs that made no progress for ``stalled_after``.

    Unacknowledged messages are reclaimed by the stream consumers themselves; this
    covers work whose messages are gone (e.g. Redis lost them). Duplicates are harmless.
    """
    requeued = 0
    with uow_factory() as uow:
        now = uow.clock.now()
        for run_id in uow.runs.running():
            run = uow.runs.get(run_id, details=False)
            if run is None:
                continue
            last = uow.runs.last_progress(run_id) or run.update_time
            if now - max(last, run.update_time) < stalled_after:
                continue
            if run.state == BillRunState.RUNNING:
                accounts = uow.runs.accounts_with(run_id, ItemStatus.PENDING)
                _queue(uow, run_id, "draft", accounts)
            else:
                accounts = uow.runs.accounts_with(run_id, ItemStatus.DRAFTED)
                _queue(uow, run_id, "accept", accounts)
            uow.runs.set_state(run_id, run.state, now)
            requeued += len(accounts)
        uow.commit()
    return requeued


# The easternmost zones run 14 hours ahead of UTC (Pacific/Kiritimati): on the UTC date of
# an instant plus this, it is that date or earlier everywhere.
AHEAD_OF_UTC = timedelta(hours=14)


def cycle_zones(uow_factory: UowFactory) -> list[tuple[int, str]]:
    """The accounts' (BCD, zone) pairs; one the clock cannot place (a zone this machine's
    tz database lacks) must not stop the scheduler for everybody."""
    with uow_factory() as uow:
        pairs = uow.parties.cycle_zones()
    return [
        (bcd, zone)
        for bcd, zone in pairs
        if MIN_BILL_CYCLE_DAY <= bcd <= MAX_BILL_CYCLE_DAY and is_known_time_zone(zone)
    ]


def start_scheduled_run(
    uow_factory: UowFactory,
    pricer: drafting.FeePricer,
    now: datetime,
    zones: Sequence[tuple[int, str]] | None = None,
) -> str | None:
    """The automatic run, auto-accepted, as soon as a cycle ended in some account's own zone.

    One run per newest cycle end (``latest_cycle_end``: every (BCD, zone) of the accounts,
    and each UTC midnight), remembered under that instant's idempotency key, so a pass
    that finds the run started (by this or another process) does nothing. Its billing
    date is the latest calendar date anywhere, so each account bills the cycle that
    contains "now" in its own zone: never one that has not ended there (ADR 0062).
    """
    due_at = latest_cycle_end(now, cycle_zones(uow_factory) if zones is None else zones)
    key = f"scheduled:{due_at.isoformat()}"
    with uow_factory() as uow:
        if uow.replayed_resource("StartBillRun", key, key) is not None:
            return None
    result = start_bill_run(
        uow_factory,
        pricer,
        BillRunScope(),
        (now + AHEAD_OF_UTC).date(),
        dry_run=False,
        auto_accept=True,
        scheduled=True,
        idem=Idem(key, key),
    )
    return result.run.bill_run_id
