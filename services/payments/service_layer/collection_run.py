"""A collection run: many issued invoices collected in batches, each step set-based.

What runs when many invoices are issued at once (a bill run's ``InvoiceIssued``
events, read from the stream a batch at a time) and what ``bench.payments`` measures.
Per batch of up to ``batch_size`` invoices it keeps every guarantee of the
one-invoice path (``Collector.collect_invoice``, PAY-4), in four steps:

1. one transaction: the request ids ``collect:<invoice>`` already taken are skipped
   (a redelivery, a re-run after a crash); each other invoice gets its payment and
   first attempt from ``Collector.new_collection`` and the same ``collectable`` rule;
   payments, attempts, allocations and request ids go in as multi-row INSERTs and are
   committed BEFORE any money moves, so a crash leaves SENT attempts for the janitor,
   never a charge made twice;
2. the provider's batch call (``charge_many``: the sandbox's own, a loop of ``charge``
   for the others), outside any transaction, each attempt id its idempotency key;
3. one transaction: each answer goes through ``Collector.record_outcome`` (the
   payment's state machine and its ``PaymentSucceeded``/``PaymentFailed`` event, the
   same code as one invoice), then one executemany UPDATE of payments and one of
   attempts naming the version step 1 wrote, and the outbox rows in one INSERT;
4. invoicing's batch call (``RecordPayments``; request ids as the one-invoice path's)
   allocates the succeeded payments, and one UPDATE marks their effects done. What
   invoicing did not take stays ``effects_pending`` for the effects runner.

A key a concurrent run took (step 1) or a payment resolved meanwhile (step 3) makes
that batch's transaction fail as a whole: step 1 then collects the batch one invoice
at a time, step 3 leaves the answers to the janitor, which asks the provider with
the same keys.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice

from opentelemetry.trace import SpanKind

from services.common.errors import Aborted
from services.common.telemetry import tracer
from services.payments.domain.model import Payment, PaymentState, Purpose
from services.payments.domain.provider import ChargeRequest, charge_many
from services.payments.service_layer.collection import Collector, collectable
from services.payments.service_layer.commands import CollectInvoice
from services.payments.service_layer.ports import PaymentToAllocate, record_payments

log = logging.getLogger(__name__)

SCOPE = "CollectInvoice"  # the one-invoice path's scope: both paths share the keys
DEFAULT_BATCH_SIZE = 500


def collection_request(invoice_id: str) -> tuple[str, str]:
    """The request id of an invoice's collection and its fingerprint (one per invoice)."""
    request_id = f"collect:{invoice_id}"
    return request_id, hashlib.sha256(request_id.encode()).hexdigest()


@dataclass
class RunSummary:
    invoices: int = 0
    replayed: int = 0  # collected before (a redelivered event, a re-run after a crash)
    skipped: int = 0  # nothing to charge: no method on file, auto-collect off, ...
    started: int = 0  # payments created (sent now, or a direct debit on its due date)
    succeeded: int = 0
    failed: int = 0
    unresolved: int = 0  # UNKNOWN or PENDING: the janitor or a callback settles them
    allocated: int = 0  # succeeded payments invoicing has recorded


@dataclass
class CollectionRun:
    collector: Collector
    batch_size: int = DEFAULT_BATCH_SIZE
    # Called with a batch's payment ids between the provider's answers and recording
    # them: tests kill the process here.
    after_provider_calls: Callable[[Sequence[str]], None] | None = None

    def collect(self, commands: Iterable[CollectInvoice]) -> RunSummary:
        summary = RunSummary()
        commands = iter(commands)
        # Only one batch is held at a time: memory stays flat over any number of invoices.
        while batch := list(islice(commands, self.batch_size)):
            self._collect_batch(batch, summary)
        return summary

    def _collect_batch(self, batch: Sequence[CollectInvoice], summary: RunSummary) -> None:
        collector = self.collector
        unique = {command.invoice_id: command for command in batch}
        summary.invoices += len(unique)
        started: list[tuple[Payment, str, str]] = []  # payment, attempt id ("" later), token
        with collector.uow_factory() as uow:
            rows = uow.collections
            taken = rows.remembered(SCOPE, [collection_request(i)[0] for i in unique])
            fresh = [c for i, c in unique.items() if collection_request(i)[0] not in taken]
            summary.replayed += len(unique) - len(fresh)
            accounts = rows.chargeable(c.account_id for c in fresh)
            retry_days = rows.retry_days_of(s.group_id for s, _ in accounts.values())
            requests: list[tuple[str, str, str, str]] = []
            for command in fresh:
                found = accounts.get(command.account_id)
                if found is None or not collectable(command, *found):
                    summary.skipped += 1
                    continue
                settings, method = found
                payment, attempt_id = collector.new_collection(
                    command, settings, method, retry_days.get(settings.group_id)
                )
                started.append((payment, attempt_id, method.token))
                request_id, fingerprint = collection_request(command.invoice_id)
                requests.append((SCOPE, request_id, fingerprint, payment.payment_id))
            try:
                rows.add_started([p for p, _, _ in started], requests)
                uow.commit()
                raced = False
            except Aborted:
                raced = True
        if raced:
            # Another run took some of these invoices at the same moment (this unit has
            # rolled back): one at a time, each replays or collects on its own.
            log.info("collection batch raced another run; collecting one at a time")
            summary.replayed -= len(unique) - len(fresh)
            self._one_at_a_time(list(unique.values()), summary)
            return
        summary.started += len(started)
        to_send = [(p, a, t) for p, a, t in started if a]
        if to_send:
            self._send(to_send, summary)
        self._allocate([p for p, _, _ in to_send], summary)

    def _send(self, to_send: list[tuple[Payment, str, str]], summary: RunSummary) -> None:
        collector = self.collector
        with tracer().start_as_current_span(
            "reckon.payments.provider charge_many",
            kind=SpanKind.CLIENT,
            attributes={
                "reckon.provider": str(getattr(collector.provider, "name", "")),
                "reckon.payments.count": len(to_send),
            },
        ):
            outcomes = charge_many(
                collector.provider,
                [
                    ChargeRequest(token, payment.amount, attempt_id, payment.payment_id)
                    for payment, attempt_id, token in to_send
                ],
            )
        if self.after_provider_calls is not None:
            self.after_provider_calls([p.payment_id for p, _, _ in to_send])
        try:
            with collector.uow_factory() as uow:
                for (payment, attempt_id, _), outcome in zip(to_send, outcomes, strict=True):
                    collector.record_outcome(uow, payment, attempt_id, outcome)
                uow.collections.save_answers([p for p, _, _ in to_send])
                uow.commit()
        except Aborted:
            # A callback or the janitor resolved some meanwhile: theirs stands, and the
            # janitor asks the provider about the rest with the same keys.
            log.info("collection batch resolved concurrently; left to the janitor")
            for payment, _, _ in to_send:
                payment.state = PaymentState.UNKNOWN
                payment.effects_pending = False
        for payment, _, _ in to_send:
            if payment.state is PaymentState.SUCCEEDED:
                summary.succeeded += 1
            elif payment.state is PaymentState.FAILED:
                summary.failed += 1
            else:
                summary.unresolved += 1

    def _allocate(self, payments: list[Payment], summary: RunSummary) -> None:
        collector = self.collector
        # A collection allocates all of itself to its invoice; anything else (credit, a
        # top-up) takes the one-payment effects path.
        batchable: list[Payment] = []
        for payment in payments:
            if payment.state is not PaymentState.SUCCEEDED or not payment.effects_pending:
                continue
            if payment.purpose is Purpose.INVOICE and not payment.credit_amount:
                batchable.append(payment)
            else:
                collector.try_effects(payment)
        if not batchable:
            return
        try:
            answers = record_payments(
                collector.invoicing,
                [
                    PaymentToAllocate(
                        request_id=p.payment_id,
                        payment_id=p.payment_id,
                        allocations=tuple((a.invoice_id, a.amount) for a in p.allocations),
                    )
                    for p in batchable
                ],
            )
            done = []
            for payment, error in zip(batchable, answers, strict=True):
                if error is None:
                    done.append(payment.payment_id)
                else:
                    log.warning(
                        "payment %s: allocation not recorded yet (%s); retrying",
                        payment.payment_id,
                        error,
                    )
            with collector.uow_factory() as uow:
                uow.collections.effects_applied(done)
                uow.commit()
        except Exception as exc:  # noqa: BLE001 - invoicing down: the effects runner retries
            log.warning("collection batch: allocations not recorded yet (%s); retrying", exc)
            return
        summary.allocated += len(done)

    def _one_at_a_time(self, commands: list[CollectInvoice], summary: RunSummary) -> None:
        for command in commands:
            try:
                payment = self.collector.collect_invoice(command)
            except Aborted:
                log.info("invoice %s: collected concurrently by another run", command.invoice_id)
                continue
            if payment is None:
                summary.skipped += 1
                continue
            summary.started += 1
            if payment.state is PaymentState.SUCCEEDED:
                summary.succeeded += 1
            elif payment.state is PaymentState.FAILED:
                summary.failed += 1
            else:
                summary.unresolved += 1
