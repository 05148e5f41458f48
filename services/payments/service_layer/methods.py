"""Payment methods on file, account payment settings, refunds, chargebacks and history.

A card number goes to the provider for tokenisation and is dropped: only the
token, brand, last four and expiry are stored, and no error message repeats it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.common.clock import Clock
from services.common.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    Violations,
)
from services.common.ids import new_id
from services.common.money import Money
from services.payments.domain.events import ChargebackReceived, PaymentRefunded
from services.payments.domain.model import (
    AccountPaymentSettings,
    MethodKind,
    Payment,
    PaymentMethod,
    PaymentState,
    TransactionKind,
)
from services.payments.domain.provider import (
    PaymentProvider,
    ProviderError,
    ProviderStatus,
    ProviderTimeout,
)
from services.payments.domain.references import (
    BadReference,
    creditor_reference,
    mask_iban,
    normalise_iban,
)
from services.payments.service_layer.commands import (
    AddPaymentMethod,
    HistoryQuery,
    RecordChargeback,
    Refund,
    UpdateSettings,
)
from services.payments.service_layer.ports import InvoicingPort, PaymentsUnitOfWork

_RETRY_DAYS = re.compile(r"^\d{1,2}(,\d{1,2}){0,7}$")

# Recording a reversal the provider already made, against concurrent changes of the payment.
_RECORD_ATTEMPTS = 5


@dataclass
class MethodsService:
    uow_factory: Callable[[], PaymentsUnitOfWork]
    provider: PaymentProvider
    invoicing: InvoicingPort
    clock: Clock
    # Keys the digest of an AddPaymentMethod request (card number, IBAN) kept with its
    # request id; the service token in production (never in the database), so the digest
    # cannot be reversed by trying every number a BIN and the last four leave.
    fingerprint_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    # -- methods on file -----------------------------------------------------------------------
    def add_method(self, command: AddPaymentMethod) -> PaymentMethod:
        """A method on file; the same request id again answers with the first method.

        The replay is recognised by the request id (AIP-155), and only if every parameter,
        the whole card number or IBAN included, is the same; otherwise it is refused naming
        ``request_id`` and the parameter that differs, and nothing is written or vaulted.
        """
        fingerprint = hmac.new(
            self.fingerprint_key, repr(command.fingerprint_fields()).encode(), hashlib.sha256
        ).hexdigest()
        with self.uow_factory() as uow:
            replayed = self._replayed(uow, command, fingerprint)
            if replayed is not None:
                return replayed
            settings = uow.settings.get(command.account_id)
            if settings is not None and (
                settings.currency != command.currency or settings.customer_id != command.customer_id
            ):
                raise FailedPrecondition(
                    "the account is registered with another customer or currency",
                    reason="ACCOUNT_MISMATCH",
                    metadata={"field": "payment_method.currency_code"},
                )
        method = self._vault(command)
        try:
            return self._keep(command, method, fingerprint)
        except Aborted:
            # The same request id, sent twice at once, committed first by the other call:
            # its answer stands (the token vaulted here stays unused at the provider).
            with self.uow_factory() as uow:
                replayed = self._replayed(uow, command, fingerprint)
            if replayed is None:
                raise
            return replayed

    def _replayed(
        self, uow: PaymentsUnitOfWork, command: AddPaymentMethod, fingerprint: str
    ) -> PaymentMethod | None:
        if not command.request_id:
            return None
        remembered = uow.find_request("AddPaymentMethod", command.request_id)
        if remembered is None:
            return None
        first = uow.methods.get(remembered.resource_id)
        assert first is not None
        if hmac.compare_digest(remembered.fingerprint, fingerprint):
            return first
        settings = uow.settings.get(first.account_id)
        differing = (
            "payment_method.currency_code"
            if settings is not None and settings.currency != command.currency
            else _differing_field(first, command)
        )
        v = Violations()
        v.add("request_id", "was already used for a different request")
        v.add(differing, "differs from the first request with this id")
        raise InvalidArgument(v.items)

    def _keep(
        self, command: AddPaymentMethod, method: PaymentMethod, fingerprint: str
    ) -> PaymentMethod:
        with self.uow_factory() as uow:
            uow.remember_request(
                "AddPaymentMethod", command.request_id, fingerprint, method.method_id
            )
            settings = uow.settings.get(command.account_id)
            if settings is None:
                settings = AccountPaymentSettings(
                    command.account_id, command.customer_id, command.currency
                )
                uow.settings.add(settings)
            uow.methods.add(method)
            if command.make_default or not settings.default_method_id:
                settings.default_method_id = method.method_id
            uow.commit()
        return method

    def _vault(self, command: AddPaymentMethod) -> PaymentMethod:
        method = PaymentMethod(
            method_id=new_id("pm"),
            customer_id=command.customer_id,
            account_id=command.account_id,
            kind=command.kind,
            provider=self.provider.name,
            created_at=self.clock.now(),
            wallet_name=command.wallet_name,
        )
        try:
            if command.kind in (MethodKind.CARD, MethodKind.WALLET):
                assert command.card is not None
                card = self.provider.tokenise_card(command.card, today=self.clock.now().date())
                method.token = card.token
                method.card_brand = card.brand
                method.card_last4 = card.last4
                method.card_exp_month = card.exp_month
                method.card_exp_year = card.exp_year
            elif command.kind is MethodKind.SEPA_DEBIT:
                try:
                    iban = normalise_iban(command.iban)
                except BadReference as exc:
                    raise InvalidArgument.field("payment_method.iban", str(exc)) from None
                method.token = self.provider.register_mandate(
                    iban=iban, mandate_reference=command.mandate_reference
                )
                method.iban_masked = mask_iban(iban)
                method.mandate_reference = command.mandate_reference
                method.mandate_signed_on = command.mandate_signed_on
            else:
                # The customer quotes this on every transfer; statements match on it.
                body = re.sub(r"[^A-Z0-9]", "", command.account_id.upper())[-21:]
                method.payment_reference = creditor_reference(body)
        except ProviderError as exc:
            field = "payment_method.card" if command.card else "payment_method.iban"
            raise InvalidArgument.field(field, f"refused by the provider: {exc}") from None
        except ProviderTimeout:
            raise Unavailable(
                "the payment provider did not answer; try again", reason="PROVIDER_UNAVAILABLE"
            ) from None
        return method

    def remove_method(self, method_id: str) -> PaymentMethod:
        with self.uow_factory() as uow:
            method = uow.methods.get(method_id)
            if method is None:
                raise NotFound(f"no payment method {method_id}", reason="METHOD_NOT_FOUND")
            method.removed = True
            settings = uow.settings.get(method.account_id)
            if settings is not None and settings.default_method_id == method_id:
                settings.default_method_id = ""
            uow.commit()
            return method

    # -- owners, for the customer scope a call may carry (services.common.customer_scope) ---
    def account_owner(self, account_id: str) -> str | None:
        """The customer the account is registered to here, or None when payments has
        no settings for it (no method ever added, no payment ever made)."""
        with self.uow_factory() as uow:
            settings = uow.settings.get(account_id)
            return settings.customer_id if settings is not None else None

    def method_owner(self, method_id: str) -> str | None:
        with self.uow_factory() as uow:
            method = uow.methods.get(method_id)
            return method.customer_id if method is not None else None

    def payment_owner(self, payment_id: str) -> str | None:
        with self.uow_factory() as uow:
            payment = uow.payments.get(payment_id)
            return payment.customer_id if payment is not None else None

    def list_methods(self, account_id: str) -> Sequence[PaymentMethod]:
        with self.uow_factory() as uow:
            return [m for m in uow.methods.of_account(account_id) if not m.removed]

    def get_settings(self, account_id: str) -> AccountPaymentSettings:
        with self.uow_factory() as uow:
            settings = uow.settings.get(account_id)
            if settings is None:
                raise NotFound(f"no payment settings for {account_id}", reason="ACCOUNT_NOT_FOUND")
            return settings

    def update_settings(self, command: UpdateSettings) -> AccountPaymentSettings:
        with self.uow_factory() as uow:
            settings = uow.settings.get(command.account_id)
            if settings is None:
                raise NotFound(
                    f"no payment settings for {command.account_id}", reason="ACCOUNT_NOT_FOUND"
                )
            if command.default_method_id:
                method = uow.methods.get(command.default_method_id)
                if method is None or method.removed or method.account_id != command.account_id:
                    raise InvalidArgument.field(
                        "settings.default_method_id", "no such method on this account"
                    )
                settings.default_method_id = method.method_id
            if command.auto_collect is not None:
                settings.auto_collect = command.auto_collect
            if command.group_id is not None:
                settings.group_id = command.group_id
            uow.commit()
            return settings

    def set_retry_schedule(self, group_id: str, days: Sequence[int]) -> str:
        text = ",".join(str(d) for d in days)
        if not group_id:
            raise InvalidArgument.field("group_id", "is required")
        if not _RETRY_DAYS.match(text) or list(days) != sorted(set(days)) or days[0] < 1:
            raise InvalidArgument.field(
                "retry_days", "1 to 8 increasing whole days after the first failure"
            )
        with self.uow_factory() as uow:
            uow.settings.set_retry_days(group_id, text)
            uow.commit()
        return text

    # -- refunds and chargebacks --------------------------------------------------------------
    def refund(self, command: Refund) -> Payment:
        return self._reverse(
            command.payment_id,
            command.amount,
            command.request_id,
            command.reason,
            TransactionKind.REFUND,
        )

    def chargeback(self, command: RecordChargeback) -> Payment:
        return self._reverse(
            command.payment_id,
            command.amount,
            command.request_id,
            command.reason,
            TransactionKind.CHARGEBACK,
        )

    def _reverse(
        self,
        payment_id: str,
        amount: Money | None,
        request_id: str,
        reason: str,
        kind: TransactionKind,
    ) -> Payment:
        scope = kind.value
        fingerprint = hashlib.sha256(f"{payment_id}|{amount}|{reason}".encode()).hexdigest()
        with self.uow_factory() as uow:
            replayed = uow.replayed_resource(scope, request_id, fingerprint)
            if replayed:
                done = uow.payments.get(replayed)
                assert done is not None
                return done
            original = uow.payments.get(payment_id)
            if original is None or original.kind is not TransactionKind.PURCHASE:
                raise NotFound(f"no payment {payment_id}", reason="PAYMENT_NOT_FOUND")
            if original.state is not PaymentState.SUCCEEDED:
                raise FailedPrecondition(
                    "only a succeeded payment can be refunded or charged back",
                    reason="PAYMENT_NOT_SUCCEEDED",
                )
            amount = amount or original.refundable
            if amount.currency != original.amount.currency:
                raise InvalidArgument.field("amount.currency_code", "differs from the payment's")
            if not amount.is_positive() or amount > original.refundable:
                raise InvalidArgument.field(
                    "amount", f"must be positive and at most {original.refundable}"
                )
        reference = ""
        if kind is TransactionKind.REFUND and original.method_id and original.provider_reference:
            try:
                result = self.provider.refund(
                    provider_reference=original.provider_reference,
                    amount=amount,
                    idempotency_key=f"refund:{request_id or new_id('rq')}",
                )
            except ProviderError as exc:
                raise FailedPrecondition(str(exc), reason="PROVIDER_REFUSED") from None
            except ProviderTimeout:
                raise Unavailable(
                    "the provider did not answer; retry with the same request id",
                    reason="PROVIDER_UNAVAILABLE",
                ) from None
            if result.status is not ProviderStatus.SUCCEEDED:
                raise FailedPrecondition("the provider refused the refund", reason="REFUND_FAILED")
            reference = result.provider_reference
        # The provider's answer is in hand: record it. A concurrent change of the payment
        # (its effects marked done, a callback) aborts the transaction; it is read again
        # and recorded again, never refunded twice (the provider call is behind us).
        for attempt in range(_RECORD_ATTEMPTS):
            try:
                recorded = self._record_reversal(
                    payment_id, amount, request_id, reason, kind, scope, fingerprint, reference
                )
                break
            except Aborted:
                if attempt == _RECORD_ATTEMPTS - 1:
                    raise
        reversal, reopened = recorded
        for index, (invoice_id, part) in enumerate(reopened):
            self.invoicing.reverse_payment(
                request_id=f"{reversal.payment_id}:{index}",
                payment_id=original.payment_id,
                invoice_id=invoice_id,
                amount=part,
                kind=kind.value,
            )
        return reversal

    def _record_reversal(
        self,
        payment_id: str,
        amount: Money,
        request_id: str,
        reason: str,
        kind: TransactionKind,
        scope: str,
        fingerprint: str,
        reference: str,
    ) -> tuple[Payment, list[tuple[str, Money]]]:
        """The reversal, the original's refunded amount and the event, in one transaction;
        the invoices to reopen. A twin request recorded meanwhile is answered as a replay."""
        now = self.clock.now()
        with self.uow_factory() as uow:
            replayed = uow.replayed_resource(scope, request_id, fingerprint)
            if replayed:
                done = uow.payments.get(replayed)
                assert done is not None
                return done, []
            original = uow.payments.get(payment_id)
            assert original is not None
            reversal = Payment(
                payment_id=new_id("pay"),
                kind=kind,
                purpose=original.purpose,
                account_id=original.account_id,
                customer_id=original.customer_id,
                channel=original.channel,
                amount=amount,
                created_at=now,
                method_id=original.method_id,
                provider=original.provider,
                parent_payment_id=original.payment_id,
                state=PaymentState.SUCCEEDED,
                provider_reference=reference,
                settled_at=now,
                invoice_ids=original.invoice_ids,
            )
            original.refunded_amount = (original.refunded + amount).amount
            uow.payments.add(reversal)
            uow.remember_request(scope, request_id, fingerprint, reversal.payment_id)
            # Reopen what the reversal takes back, latest allocation first.
            left = amount
            reopened: list[tuple[str, Money]] = []
            for allocation in reversed(original.allocations):
                if not left.is_positive():
                    break
                part = allocation.amount if allocation.amount <= left else left
                reopened.append((allocation.invoice_id, part))
                left = left - part
            event = (
                PaymentRefunded(
                    payment_id=reversal.payment_id,
                    original_payment_id=original.payment_id,
                    account_id=original.account_id,
                    customer_id=original.customer_id,
                    amount=amount,
                    invoice_ids=[i for i, _ in reopened],
                )
                if kind is TransactionKind.REFUND
                else ChargebackReceived(
                    payment_id=reversal.payment_id,
                    original_payment_id=original.payment_id,
                    account_id=original.account_id,
                    customer_id=original.customer_id,
                    amount=amount,
                    reason=reason,
                    invoice_ids=[i for i, _ in reopened],
                )
            )
            uow.publish(event)
            uow.commit()
        return reversal, reopened

    # -- history -----------------------------------------------------------------------------
    def get_payment(self, payment_id: str) -> Payment:
        with self.uow_factory() as uow:
            payment = uow.payments.get(payment_id)
            if payment is None:
                raise NotFound(f"no payment {payment_id}", reason="PAYMENT_NOT_FOUND")
            return payment

    def history(self, query: HistoryQuery) -> Sequence[Payment]:
        if not query.account_id and not query.customer_id:
            raise InvalidArgument.field("account_id", "an account or a customer is required")
        with self.uow_factory() as uow:
            return uow.payments.history(
                account_id=query.account_id,
                customer_id=query.customer_id,
                after=query.after,
                limit=query.limit,
            )


def _differing_field(first: PaymentMethod, command: AddPaymentMethod) -> str:
    """The parameter of ``command`` that differs from the request that made ``first``.

    What the method keeps is compared in the open; what it does not (the whole card
    number, the whole IBAN) is what is left when all that is kept agrees.
    """
    card = command.card
    shown: list[tuple[str, object, object]] = [
        ("account_id", first.account_id, command.account_id),
        ("customer_id", first.customer_id, command.customer_id),
        ("kind", first.kind, command.kind),
        ("card.exp_month", first.card_exp_month, card.exp_month if card else 0),
        ("card.exp_year", first.card_exp_year, card.exp_year if card else 0),
        ("card.number", first.card_last4, card.number.replace(" ", "")[-4:] if card else ""),
        ("mandate_reference", first.mandate_reference, command.mandate_reference),
        ("mandate_signed_date", first.mandate_signed_on, command.mandate_signed_on),
        ("wallet_name", first.wallet_name, command.wallet_name),
    ]
    for name, kept, asked in shown:
        if kept != asked:
            return f"payment_method.{name}"
    if first.kind is MethodKind.SEPA_DEBIT:
        return "payment_method.iban"
    if card is not None:
        return "payment_method.card.number"
    return "payment_method"
