"""Taking money: payments, automatic collection, the janitor, retries and their effects.

Every provider call follows one protocol, so a crash anywhere never charges twice:
1. a unit of work commits the payment with a new attempt in state SENT (its id is
   the provider's idempotency key) and the janitor's first question 5 minutes on;
2. the provider is called, outside any transaction;
3. a second unit records the answer (SUCCEEDED, FAILED, PENDING) with its events.
A timeout makes the attempt UNKNOWN; a crash between 2 and 3 leaves it SENT. Both
are resolved by the janitor, which asks the provider with the same key
(``lookup``) on the conventions' schedule and never sends the charge again.
Succeeded payments then apply their effects in other services (allocation in
invoicing, account credit, a charging top-up) with request ids derived from the
payment id, retried until done (``effects_pending``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from opentelemetry.trace import SpanKind

from services.common.clock import Clock
from services.common.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from services.common.events import DomainEvent
from services.common.ids import new_id
from services.common.money import Money
from services.common.telemetry import tracer
from services.payments.domain.events import PaymentFailed, PaymentSucceeded
from services.payments.domain.model import (
    CHANNEL_OF_METHOD,
    DEFAULT_RETRY_DAYS,
    AccountPaymentSettings,
    Allocation,
    Channel,
    MethodKind,
    Payment,
    PaymentMethod,
    PaymentState,
    Purpose,
    TransactionKind,
    allocate_oldest_first,
)
from services.payments.domain.provider import (
    ChargeOutcome,
    PaymentProvider,
    ProviderError,
    ProviderResult,
    ProviderStatus,
    ProviderTimeout,
)
from services.payments.service_layer.commands import CollectInvoice, CreatePayment
from services.payments.service_layer.ports import (
    ChargingPort,
    InvoicingPort,
    OpenInvoice,
    PaymentsUnitOfWork,
)

log = logging.getLogger(__name__)

# Channels where the money has already arrived when the payment is recorded.
RECEIVED_CHANNELS = {Channel.BANK_TRANSFER, Channel.TERMINAL, Channel.CASH_DESK}
# An amount no single payment may exceed: a typo guard, not a business limit.
MAX_AMOUNT = Money.of("1000000000", "EUR").amount


@dataclass
class Collector:
    uow_factory: Callable[[], PaymentsUnitOfWork]
    provider: PaymentProvider
    invoicing: InvoicingPort
    charging: ChargingPort
    clock: Clock
    default_retry_days: tuple[int, ...] = DEFAULT_RETRY_DAYS
    # Called between the provider's answer and recording it: tests crash the process here.
    after_provider_call: Callable[[str], None] | None = None

    # -- a payment asked for now ----------------------------------------------------------
    def create_payment(self, command: CreatePayment) -> Payment:
        fingerprint = _fingerprint(command)
        with self.uow_factory() as uow:
            replayed = uow.replayed_resource("CreatePayment", command.request_id, fingerprint)
            if replayed:
                payment = uow.payments.get(replayed)
                assert payment is not None
                return payment
            settings = uow.settings.get(command.account_id)
            if settings is None:
                raise NotFound(
                    f"account {command.account_id} has no payment settings",
                    reason="ACCOUNT_NOT_FOUND",
                )
            if command.amount.currency != settings.currency:
                raise InvalidArgument.field(
                    "payment.amount.currency_code",
                    f"the account is billed in {settings.currency}",
                )
            method = self._method_for(uow, command, settings.default_method_id)
        targets = self._check_invoices(command)
        payment = Payment(
            payment_id=new_id("pay"),
            kind=TransactionKind.PURCHASE,
            purpose=command.purpose,
            account_id=command.account_id,
            customer_id=settings.customer_id,
            channel=command.channel,
            amount=command.amount,
            created_at=self.clock.now(),
            method_id=method.method_id if method else "",
            provider=method.provider if method else "",
            invoice_ids=",".join(targets),
        )
        if command.invoice_amounts:
            payment.allocations = [
                Allocation(payment.payment_id, invoice_id, amount)
                for invoice_id, amount in zip(targets, command.invoice_amounts, strict=True)
            ]
        if method is None:
            # Money already received (desk, terminal, transfer): succeeded on record.
            payment.provider_reference = command.external_reference
            with self.uow_factory() as uow:
                uow.remember_request(
                    "CreatePayment", command.request_id, fingerprint, payment.payment_id
                )
                uow.payments.add(payment)
                payment.state = PaymentState.SUCCEEDED
                payment.settled_at = payment.created_at
                self._plan_effects(payment)
                uow.publish(_succeeded(payment))
                uow.commit()
            self.try_effects(payment)
            return payment
        attempt_id = new_id("att")
        with self.uow_factory() as uow:
            uow.remember_request(
                "CreatePayment", command.request_id, fingerprint, payment.payment_id
            )
            payment.start_attempt(attempt_id, self.clock.now())
            uow.payments.add(payment)
            uow.commit()
            self._send(uow, payment, attempt_id, method.token)
        self.try_effects(payment)
        return payment

    def _method_for(
        self, uow: PaymentsUnitOfWork, command: CreatePayment, default_id: str
    ) -> PaymentMethod | None:
        if command.channel in RECEIVED_CHANNELS and not command.method_id:
            return None
        method_id = command.method_id or default_id
        method = uow.methods.get(method_id) if method_id else None
        usable = method is not None and not method.removed
        if command.method_id and not (
            usable and method and method.account_id == command.account_id
        ):
            raise InvalidArgument.field(
                "payment.method_id", "no such payment method on this account"
            )
        if method is None or method.removed or method.account_id != command.account_id:
            raise FailedPrecondition(
                "the account has no usable payment method for this channel",
                reason="NO_PAYMENT_METHOD",
                metadata={"field": "payment.method_id"},
            )
        if method.kind is MethodKind.BANK_TRANSFER:
            raise FailedPrecondition(
                "a bank transfer is recorded when it arrives, not charged",
                reason="METHOD_NOT_CHARGEABLE",
            )
        if CHANNEL_OF_METHOD[method.kind] is not command.channel:
            raise InvalidArgument.field(
                "payment.channel",
                f"a {method.kind.value.lower()} method is charged on channel "
                f"{CHANNEL_OF_METHOD[method.kind].value}",
            )
        return method

    def _check_invoices(self, command: CreatePayment) -> list[str]:
        """The invoices to settle, checked before any money moves; nothing written on error."""
        if command.purpose is Purpose.TOP_UP:
            if command.invoice_ids:
                raise InvalidArgument.field("payment.invoice_ids", "a top-up settles no invoice")
            return []
        invoices: list[OpenInvoice] = []
        for index, invoice_id in enumerate(command.invoice_ids):
            invoice = self.invoicing.get_invoice(invoice_id)
            if invoice is None or invoice.account_id != command.account_id:
                raise InvalidArgument.field(
                    f"payment.invoice_ids[{index}]", f"no invoice {invoice_id} on this account"
                )
            if invoice.amount_due.currency != command.amount.currency:
                raise InvalidArgument.field(
                    f"payment.invoice_ids[{index}]", "the invoice is in another currency"
                )
            if command.invoice_amounts:
                wanted = command.invoice_amounts[index]
                if wanted > invoice.amount_due:
                    raise FailedPrecondition(
                        f"allocation of {wanted} exceeds the {invoice.amount_due} due on "
                        f"invoice {invoice_id}",
                        reason="ALLOCATION_EXCEEDS_DUE",
                        metadata={"field": f"payment.invoice_amounts[{index}]"},
                    )
            invoices.append(invoice)
        if command.invoice_amounts:
            total = sum((m for m in command.invoice_amounts), Money.zero(command.amount.currency))
            if total > command.amount:
                raise InvalidArgument.field(
                    "payment.invoice_amounts", "the allocations exceed the payment amount"
                )
        invoices.sort(key=lambda i: (i.issued_at, i.invoice_id))
        return [i.invoice_id for i in invoices]

    # -- automatic collection (PAY-2) ---------------------------------------------------------
    def collect_invoice(self, command: CollectInvoice) -> Payment | None:
        """Charge the method on file for an issued invoice; None when nothing is to be done."""
        request_id = f"collect:{command.invoice_id}"
        fingerprint = hashlib.sha256(request_id.encode()).hexdigest()
        with self.uow_factory() as uow:
            replayed = uow.replayed_resource("CollectInvoice", request_id, fingerprint)
            if replayed:
                return uow.payments.get(replayed)
            settings = uow.settings.get(command.account_id)
            method = (
                uow.methods.get(settings.default_method_id)
                if settings is not None and settings.default_method_id
                else None
            )
            if settings is None or method is None or not collectable(command, settings, method):
                return None
            days = uow.settings.retry_days(settings.group_id) if settings.group_id else None
            payment, attempt_id = self.new_collection(command, settings, method, days)
            uow.remember_request("CollectInvoice", request_id, fingerprint, payment.payment_id)
            uow.payments.add(payment)
            uow.commit()
            if attempt_id:
                self._send(uow, payment, attempt_id, method.token)
        self.try_effects(payment)
        return payment

    def new_collection(
        self,
        command: CollectInvoice,
        settings: AccountPaymentSettings,
        method: PaymentMethod,
        group_retry_days: str | None,
    ) -> tuple[Payment, str]:
        """The payment that collects an invoice, and its first attempt's id ("" if later).

        One place for both ways in: ``collect_invoice`` (one invoice) and the collection
        run (a batch, ``service_layer.collection_run``).
        """
        payment = Payment(
            payment_id=new_id("pay"),
            kind=TransactionKind.PURCHASE,
            purpose=Purpose.INVOICE,
            account_id=command.account_id,
            customer_id=settings.customer_id,
            channel=_channel_of(method),
            amount=command.amount,
            created_at=self.clock.now(),
            method_id=method.method_id,
            provider=method.provider,
            invoice_ids=command.invoice_id,
            retry_days=group_retry_days or ",".join(str(d) for d in self.default_retry_days),
        )
        payment.allocations = [Allocation(payment.payment_id, command.invoice_id, command.amount)]
        if method.kind is MethodKind.SEPA_DEBIT and command.due_date is not None:
            # A direct debit is collected on the due date: the retry runner sends it.
            payment.next_retry_at = max(_start_of(command.due_date), self.clock.now())
            return payment, ""
        attempt_id = new_id("att")
        payment.start_attempt(attempt_id, self.clock.now())
        return payment, attempt_id

    # -- the janitor and the retry runner ----------------------------------------------------
    def run_janitor(self, limit: int = 100) -> int:
        """Ask the provider about attempts whose outcome is unknown; returns questions asked."""
        with self.uow_factory() as uow:
            due = list(uow.payments.due_for_check(self.clock.now(), limit))
        for payment_id in due:
            try:
                self._check(payment_id)
            except Aborted:
                # Another replica or a callback resolved it at the same moment: theirs stands.
                log.info("payment %s: resolved concurrently", payment_id)
        return len(due)

    def _check(self, payment_id: str) -> None:
        with self.uow_factory() as uow:
            payment = uow.payments.get(payment_id)
            if payment is None or payment.last_attempt is None:
                return
            attempt_id = payment.last_attempt.attempt_id
            method = uow.methods.get(payment.method_id) if payment.method_id else None
            token = method.token if method is not None else ""
        try:
            result = self.provider.lookup(attempt_id, token=token)
        except ProviderTimeout:
            result = None
        with self.uow_factory() as uow:
            payment = uow.payments.get(payment_id)
            assert payment is not None
            now = self.clock.now()
            if payment.next_check_at is None or payment.next_check_at > now:
                return  # resolved meanwhile (a callback, another janitor)
            if result is None or result.status is ProviderStatus.PENDING:
                payment.janitor_checked(now)
                if result is not None:
                    payment.apply_result(attempt_id, result, now)
            elif result.status is ProviderStatus.NOT_FOUND:
                # The request never reached the provider: nothing was charged, so the
                # collection failed softly and follows the retry schedule.
                self._record(uow, payment, attempt_id, _not_received())
            else:
                self._record(uow, payment, attempt_id, result)
            uow.commit()
        self.try_effects(payment)

    def run_retries(self, limit: int = 100) -> int:
        """Send the collections whose retry (or direct-debit due date) has come."""
        with self.uow_factory() as uow:
            due = list(uow.payments.due_for_retry(self.clock.now(), limit))
        sent = 0
        for payment_id in due:
            try:
                sent += self._retry(payment_id)
            except Aborted:
                log.info("payment %s: retried concurrently by another worker", payment_id)
        return sent

    def _retry(self, payment_id: str) -> int:
        with self.uow_factory() as uow:
            payment = uow.payments.get(payment_id)
            if payment is None or payment.next_retry_at is None:
                return 0
            if payment.next_retry_at > self.clock.now():
                return 0
            method = uow.methods.get(payment.method_id)
            if method is None or method.removed or self._settled_meanwhile(payment):
                # No method to charge, or the invoices were paid another way (a desk, a
                # transfer, credit): charging again would take the money twice.
                payment.next_retry_at = None
                uow.commit()
                return 0
            attempt_id = new_id("att")
            payment.start_attempt(attempt_id, self.clock.now())
            uow.commit()
            self._send(uow, payment, attempt_id, method.token)
        self.try_effects(payment)
        return 1

    def _settled_meanwhile(self, payment: Payment) -> bool:
        if payment.purpose is not Purpose.INVOICE or not payment.invoice_list:
            return False
        invoices = [self.invoicing.get_invoice(i) for i in payment.invoice_list]
        return all(i is None or not i.amount_due.is_positive() for i in invoices)

    # -- provider callbacks ------------------------------------------------------------------
    def apply_callback(self, attempt_id: str, result: ProviderResult) -> bool:
        """A verified provider callback about an attempt; False if unknown or already final."""
        with self.uow_factory() as uow:
            payment = uow.payments.by_attempt(attempt_id)
            if payment is None:
                return False
            changed = self._record(uow, payment, attempt_id, result)
            uow.commit()
        self.try_effects(payment)
        return changed

    # -- internals ---------------------------------------------------------------------------
    def _send(self, uow: PaymentsUnitOfWork, payment: Payment, attempt_id: str, token: str) -> None:
        """Call the provider for an attempt ``uow`` has just committed, and record the answer.

        The unit's session stays open but holds no transaction during the call (it
        ended with the commit); the answer is recorded on the same objects in a second
        transaction, whose UPDATE names the version the first one wrote, so a concurrent
        change (the janitor, a callback) makes it fail rather than overwrite.
        """
        payment_id = payment.payment_id
        result: ChargeOutcome
        try:
            # The provider call is a hop of its own in the trace (issue 12 item 7).
            with tracer().start_as_current_span(
                "reckon.payments.provider charge",
                kind=SpanKind.CLIENT,
                attributes={
                    "reckon.payment_id": payment_id,
                    "reckon.attempt_id": attempt_id,
                    "reckon.provider": str(getattr(self.provider, "name", "")),
                },
            ):
                result = self.provider.charge(
                    token=token,
                    amount=payment.amount,
                    idempotency_key=attempt_id,
                    description=payment_id,
                )
        except (ProviderTimeout, ProviderError) as exc:
            result = exc
        if self.after_provider_call is not None:
            self.after_provider_call(payment_id)
        self.record_outcome(uow, payment, attempt_id, result)
        uow.commit()

    def record_outcome(
        self, uow: PaymentsUnitOfWork, payment: Payment, attempt_id: str, outcome: ChargeOutcome
    ) -> bool:
        """What a charge call came back with, on the payment and in ``uow``'s outbox.

        A timeout leaves the outcome UNKNOWN for the janitor; a refusal of the request
        itself (the token is gone, the request invalid) fails it with nothing to retry.
        """
        if isinstance(outcome, ProviderTimeout):
            log.warning(
                "payment %s: no answer from the provider; outcome unknown", payment.payment_id
            )
            payment.mark_unknown(attempt_id, self.clock.now())
            return True
        if isinstance(outcome, ProviderError):
            outcome = ProviderResult(ProviderStatus.FAILED, "", "do_not_try_again", str(outcome))
        return self._record(uow, payment, attempt_id, outcome)

    def _record(
        self, uow: PaymentsUnitOfWork, payment: Payment, attempt_id: str, result: ProviderResult
    ) -> bool:
        if not payment.apply_result(attempt_id, result, self.clock.now()):
            return False
        if payment.state is PaymentState.SUCCEEDED:
            self._plan_effects(payment)
            uow.publish(_succeeded(payment))
        elif payment.state is PaymentState.FAILED:
            uow.publish(
                PaymentFailed(
                    payment_id=payment.payment_id,
                    account_id=payment.account_id,
                    customer_id=payment.customer_id,
                    amount=payment.amount,
                    channel=payment.channel.value,
                    decline_code=payment.decline_code,
                    hard_decline=payment.hard_decline,
                    attempt=len(payment.attempts),
                    next_retry_at=payment.next_retry_at,
                    invoice_ids=payment.invoice_list,
                )
            )
        return True

    def _plan_effects(self, payment: Payment) -> None:
        """Decide, with the success, where the money goes (read from invoicing now)."""
        payment.effects_pending = True
        if payment.purpose is Purpose.INVOICE and not payment.allocations:
            payment.allocations = self._allocation_plan(payment)
        allocated = sum(
            (a.amount for a in payment.allocations), Money.zero(payment.amount.currency)
        )
        if payment.purpose is Purpose.INVOICE:
            payment.credit_amount = (payment.amount - allocated).amount

    def apply_effects(self, payment_id: str) -> None:
        """Apply a succeeded payment's effects (the effects runner's entry); safe to repeat."""
        with self.uow_factory() as uow:
            payment = uow.payments.get(payment_id)
        if payment is not None:
            self._apply_effects_of(payment)

    def _apply_effects_of(self, payment: Payment) -> None:
        """Allocate in invoicing (and credit the rest) or top up charging, then mark it done.

        Every call carries a request id derived from the payment id, so doing this again
        after a crash or a peer's timeout changes nothing on the other side.
        """
        if not payment.effects_pending or payment.state is not PaymentState.SUCCEEDED:
            return
        if payment.purpose is Purpose.TOP_UP:
            self.charging.top_up(
                request_id=payment.payment_id,
                account_id=payment.account_id,
                amount=payment.amount,
            )
        else:
            if payment.allocations:
                self.invoicing.record_payment(
                    request_id=payment.payment_id,
                    payment_id=payment.payment_id,
                    allocations=[(a.invoice_id, a.amount) for a in payment.allocations],
                )
            if payment.credit_amount > 0:
                self.invoicing.add_account_credit(
                    request_id=f"{payment.payment_id}:credit",
                    account_id=payment.account_id,
                    amount=payment.credit,
                    payment_id=payment.payment_id,
                )
        with self.uow_factory() as uow:
            uow.payments.effects_applied(payment.payment_id)
            uow.commit()
        payment.effects_pending = False
        for allocation in payment.allocations:
            allocation.applied = True

    def run_effects(self, limit: int = 100) -> int:
        with self.uow_factory() as uow:
            pending = list(uow.payments.with_effects_pending(limit))
        for payment_id in pending:
            with self.uow_factory() as uow:
                payment = uow.payments.get(payment_id)
            if payment is not None:
                self.try_effects(payment)
        return len(pending)

    def try_effects(self, payment: Payment) -> None:
        # The money has moved and is recorded: a peer that is down delays the allocation
        # or top-up (the effects runner retries it), it does not fail the payment.
        try:
            self._apply_effects_of(payment)
        except Exception as exc:  # noqa: BLE001 - any peer failure: retried next round
            log.warning(
                "payment %s: effects not applied yet (%s); retrying", payment.payment_id, exc
            )

    def _allocation_plan(self, payment: Payment) -> list[Allocation]:
        """Oldest first over the chosen invoices, else over the account's open invoices."""
        if payment.invoice_list:
            invoices = [self.invoicing.get_invoice(i) for i in payment.invoice_list]
            open_ = [(i.invoice_id, i.amount_due) for i in invoices if i is not None]
        else:
            open_ = [
                (i.invoice_id, i.amount_due)
                for i in self.invoicing.open_invoices(payment.account_id)
            ]
        parts, _ = allocate_oldest_first(payment.amount, open_)
        return [Allocation(payment.payment_id, i, m) for i, m in parts]


def collectable(
    command: CollectInvoice, settings: AccountPaymentSettings, method: PaymentMethod
) -> bool:
    """Whether an issued invoice is charged to the account's default method (PAY-2)."""
    if not settings.auto_collect or method.method_id != settings.default_method_id:
        return False
    if method.removed or method.kind is MethodKind.BANK_TRANSFER:
        return False
    return command.amount.currency == settings.currency and command.amount.is_positive()


def _channel_of(method: PaymentMethod) -> Channel:
    return CHANNEL_OF_METHOD[method.kind]


def _succeeded(payment: Payment) -> DomainEvent:
    return PaymentSucceeded(
        payment_id=payment.payment_id,
        account_id=payment.account_id,
        customer_id=payment.customer_id,
        amount=payment.amount,
        channel=payment.channel.value,
        purpose=payment.purpose.value,
        provider_reference=payment.provider_reference,
        invoice_ids=payment.invoice_list,
        settled_at=payment.settled_at,
    )


def _not_received() -> ProviderResult:
    return ProviderResult(ProviderStatus.FAILED, "", "not_received", "the provider never got it")


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _fingerprint(command: CreatePayment) -> str:
    text = "|".join(
        [
            command.account_id,
            str(command.amount.amount),
            command.amount.currency,
            command.channel.value,
            command.purpose.value,
            command.method_id,
            ",".join(command.invoice_ids),
            ",".join(str(m.amount) for m in command.invoice_amounts),
            command.external_reference,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()
