"""Dunning's handlers: policies, the projection fed by other services' events, exemptions,
the list of accounts in dunning and the payment-behaviour reports.

Event handlers are idempotent through the inbox (``mark_processed`` in the same
transaction as the change) and end or pause a case at once (``cases.settle``): a
payment that clears the overdue amount ends dunning when its event arrives, not at
the next daily run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

from services.common.errors import InvalidArgument, NotFound
from services.dunning.domain.model import (
    Behaviour,
    DunnedAccount,
    DunnedInvoice,
    InvoiceOutcome,
    OverdueFacts,
    behaviour_of,
    outcome_of,
    overdue_facts,
)
from services.dunning.domain.policy import Level, Policy
from services.dunning.service_layer import cases
from services.dunning.service_layer.policy_document import read_policy
from services.dunning.service_layer.unit_of_work import DunningUnitOfWork, StoredPolicy

CONSUMER: Final = "dunning-projection"
INVOICE_EVENTS: Final = frozenset(
    {
        "InvoiceIssued",
        "InvoiceFinalized",
        "InvoicePaid",
        "InvoicePartiallyPaid",
        "InvoiceVoided",
        "InvoiceMarkedUncollectible",
        "InvoiceReopened",
        "CreditNoteIssued",
        "DisputeOpened",
        "DisputeResolved",
    }
)
PAYMENT_EVENTS: Final = frozenset({"PaymentSucceeded", "PaymentFailed", "ChargebackReceived"})
ACCOUNT_EVENTS: Final = frozenset({"AccountCreated", "AccountUpdated", "AccountStateChanged"})


# -- policies ---------------------------------------------------------------------------


def apply_policy(uow: DunningUnitOfWork, document: str, request_id: str = "") -> StoredPolicy:
    """Store the document as the next version of its code (unchanged text: no new version)."""
    policy = read_policy(document)
    with uow:
        latest = uow.policies.latest(policy.code)
        if latest is not None and latest.document == document:
            return latest
        version = 1 if latest is None else latest.policy.version + 1
        policy = read_policy(document, version=version)
        stored = StoredPolicy(policy, document, uow.clock.now())
        uow.policies.add(stored)
        uow.commit()
        return stored


def list_policies(uow: DunningUnitOfWork) -> Sequence[StoredPolicy]:
    with uow:
        return list(uow.policies.all_latest())


# -- the projection ---------------------------------------------------------------------


def _date(value: Any) -> date | None:
    return date.fromisoformat(str(value)[:10]) if value else None


def _amount(value: Any) -> Decimal:
    if isinstance(value, Mapping):
        return Decimal(str(value.get("amount", "0")))
    return Decimal(str(value or "0"))


def _account(uow: DunningUnitOfWork, account_id: str) -> DunnedAccount:
    account = uow.accounts.get(account_id)
    if account is None:
        account = DunnedAccount(account_id)
        uow.accounts.add(account)
    return account


def on_event(
    uow: DunningUnitOfWork,
    event_id: str,
    event_type: str,
    payload: Mapping[str, Any],
    occurred_at: datetime,
) -> bool:
    """Fold one event of invoicing, payments or accounts into the projection; False if seen."""
    account_id = str(payload.get("account_id", ""))
    if not account_id:
        return False
    with uow:
        if not uow.mark_processed(CONSUMER, event_id):
            return False
        account = _account(uow, account_id)
        if payload.get("customer_id"):
            account.customer_id = str(payload["customer_id"])
        if event_type in INVOICE_EVENTS:
            _invoice_event(uow, account, event_type, payload, occurred_at)
        elif event_type in PAYMENT_EVENTS:
            _payment_event(uow, account, event_type, payload)
        elif event_type in ACCOUNT_EVENTS:
            _account_event(account, event_type, payload)
        # Overdue or not is a question of the account's own calendar (ADR 0071).
        today = account.local_date(uow.clock.now())
        cases.settle(uow, account, uow.invoices.of_account(account_id), today)
        uow.commit()
        return True


def _invoice_event(
    uow: DunningUnitOfWork,
    account: DunnedAccount,
    event_type: str,
    payload: Mapping[str, Any],
    occurred_at: datetime,
) -> None:
    invoice_id = str(payload.get("invoice_id", ""))
    if not invoice_id:
        return
    for key in ("group_id", "reseller_id"):
        if payload.get(key):
            setattr(account, key, str(payload[key]))
    currency = str(payload.get("currency", "")) or account.currency
    account.currency = account.currency or currency
    invoice = uow.invoices.get(invoice_id)
    if invoice is None:
        invoice = DunnedInvoice(
            invoice_id=invoice_id,
            account_id=account.account_id,
            customer_id=account.customer_id,
            currency=currency,
            status="OPEN",
            total=Decimal(0),
            amount_due=Decimal(0),
        )
        uow.invoices.add(invoice)
    invoice.status = str(payload.get("status", invoice.status)).upper()
    invoice.total = _amount(payload.get("total", invoice.total))
    invoice.amount_due = _amount(payload.get("amount_due", invoice.amount_due))
    invoice.disputed_amount = _amount(payload.get("disputed_amount", invoice.disputed_amount))
    invoice.due_date = _date(payload.get("due_date")) or invoice.due_date
    invoice.issue_date = _date(payload.get("issue_date")) or invoice.issue_date
    if invoice.status == "PAID" and invoice.paid_on is None:
        invoice.paid_on = account.local_date(occurred_at)
    elif invoice.status != "PAID":
        invoice.paid_on = None


def _payment_event(
    uow: DunningUnitOfWork, account: DunnedAccount, event_type: str, payload: Mapping[str, Any]
) -> None:
    if event_type == "PaymentFailed":
        account.last_failure_reason = str(payload.get("decline_code", "")) or "declined"
        for invoice_id in payload.get("invoice_ids") or ():
            invoice = uow.invoices.get(str(invoice_id))
            if invoice is not None:
                invoice.failed_attempts += 1
    elif event_type == "PaymentSucceeded":
        account.last_failure_reason = ""


def _account_event(account: DunnedAccount, event_type: str, payload: Mapping[str, Any]) -> None:
    if event_type in ("AccountCreated", "AccountUpdated"):
        account.group_id = str(payload.get("group_id", account.group_id))
        account.reseller_id = str(payload.get("reseller_id", account.reseller_id))
        account.currency = str(payload.get("currency_code", "")) or account.currency
        account.time_zone = str(payload.get("time_zone", "")) or account.time_zone
    to_state = str(payload.get("to_state", payload.get("state", ""))).upper()
    if to_state == "CLOSED":
        account.closed = True


# -- exemptions -------------------------------------------------------------------------


def set_exemption(
    uow: DunningUnitOfWork, account_id: str, reason: str, end_date: date | None, *, clear: bool
) -> DunnedAccount:
    problems = []
    if not account_id or len(account_id) > 40:
        problems.append(("account_id", "required: an account id of at most 40 characters"))
    if not clear and not 1 <= len(reason.strip()) <= 500:
        problems.append(("reason", "required: 1 to 500 characters"))
    if not clear and end_date is None:
        problems.append(("end_date", "required unless clear is set"))
    if problems:
        from services.common.errors import FieldViolation

        raise InvalidArgument([FieldViolation(f, d) for f, d in problems])
    with uow:
        # A key account may be exempted before dunning has seen any of its invoices.
        account = _account(uow, account_id)
        if end_date is not None and not clear and end_date < account.local_date(uow.clock.now()):
            raise InvalidArgument.field("end_date", "is in the past")
        account.exempt_until = None if clear else end_date
        account.exempt_reason = "" if clear else reason.strip()
        uow.commit()
        return account


# -- the list of accounts in dunning ------------------------------------------------------


@dataclass(frozen=True)
class CaseView:
    account: DunnedAccount
    facts: OverdueFacts
    level: Level | None
    next_level: Level | None
    next_date: date | None


def list_cases(
    uow: DunningUnitOfWork,
    *,
    level: int = 0,
    state: str = "",
    policy_code: str = "",
    min_days_past_due: int = 0,
    group_id: str = "",
    reseller_id: str = "",
    after: str = "",
    limit: int = 50,
) -> tuple[list[CaseView], str]:
    """Accounts in dunning (id order) with their facts today; and the last id scanned."""
    from services.dunning.domain.model import next_step

    views: list[CaseView] = []
    last = after
    with uow:
        now = uow.clock.now()
        policies: dict[str, Policy] = {s.policy.code: s.policy for s in uow.policies.all_latest()}
        while len(views) < limit:
            page = uow.accounts.in_dunning(
                level=level,
                state=state,
                policy_code=policy_code,
                group_id=group_id,
                reseller_id=reseller_id,
                after=last,
                limit=limit,
            )
            if not page:
                last = ""
                break
            for account in page:
                last = account.account_id
                facts = overdue_facts(
                    uow.invoices.of_account(account.account_id),
                    account.local_date(now),
                    account.last_failure_reason,
                )
                if facts.days_past_due < min_days_past_due:
                    continue
                policy = policies.get(account.policy_code)
                current = policy.level(account.level) if policy else None
                following, when = (
                    next_step(policy, account.level, facts) if policy else (None, None)
                )
                views.append(CaseView(account, facts, current, following, when))
                if len(views) == limit:
                    break
            if len(page) < limit:
                if len(views) < limit:
                    last = ""
                break
    return views, last


# -- payment behaviour ------------------------------------------------------------------


def behaviour(uow: DunningUnitOfWork, customer_id: str) -> tuple[Behaviour, list[InvoiceOutcome]]:
    if not customer_id:
        raise InvalidArgument.field("customer_id", "required")
    with uow:
        today = uow.clock.now().date()
        invoices = uow.invoices.of_customer(customer_id)
        if not invoices:
            raise NotFound(
                f"dunning knows no invoice of customer {customer_id}",
                reason="CUSTOMER_NOT_FOUND",
            )
        outcomes = sorted(
            (outcome_of(inv, today) for inv in invoices),
            key=lambda o: (o.due_date or date.min, o.invoice_id),
        )
    return behaviour_of(outcomes), outcomes


def behaviours(
    uow: DunningUnitOfWork, *, grade: str = "", after: str = "", limit: int = 50
) -> tuple[list[tuple[str, Behaviour]], str]:
    """Every customer's behaviour (customer id order), optionally of one class."""
    if grade and grade not in {"A", "B", "C", "D"}:
        raise InvalidArgument.field("grade", "one of A, B, C, D")
    found: list[tuple[str, Behaviour]] = []
    last = after
    with uow:
        today = uow.clock.now().date()
        while len(found) < limit:
            customers = uow.invoices.customers(after=last, limit=limit)
            if not customers:
                return found, ""
            for customer_id in customers:
                last = customer_id
                outcomes = [outcome_of(i, today) for i in uow.invoices.of_customer(customer_id)]
                record = behaviour_of(outcomes)
                if not grade or record.grade == grade:
                    found.append((customer_id, record))
                    if len(found) == limit:
                        return found, last
            if len(customers) < limit:
                return found, ""
    return found, last


def page_token(last: str) -> str:
    return json.dumps({"after": last}) if last else ""
