"""Proto <-> domain for the payments API: every bad field reported at once, nothing written.

A card number is checked here only for its shape (digits, length, Luhn) and is
never put in an error message; the provider tokenises it.
"""

from __future__ import annotations

from datetime import date

from google.type import date_pb2

from reckon.payments.v1 import payments_pb2 as pb
from services.common.errors import Violations
from services.common.money import Money
from services.common.proto_convert import (
    decode_page_token,
    encode_page_token,
    money_from_proto,
    money_to_proto,
    page_size_from_proto,
    timestamp_to_proto,
)
from services.payments.domain.model import (
    AccountPaymentSettings,
    Attempt,
    AttemptState,
    Channel,
    MethodKind,
    Payment,
    PaymentMethod,
    PaymentState,
    Purpose,
    TransactionKind,
)
from services.payments.domain.provider import CardDetails
from services.payments.domain.references import BadReference, luhn_valid, normalise_iban
from services.payments.service_layer import commands as cmd
from services.payments.service_layer.reconciliation import (
    ChannelTotals,
    Difference,
    ReconciliationReport,
)
from services.payments.service_layer.statement_files import StatementEntry
from services.payments.service_layer.statements import LineOutcome

# Far above any real payment: a typo or an overflow, not a purchase.
MAX_AMOUNT = Money.of("100000000", "EUR").amount

KIND_FROM_PROTO = {
    pb.PAYMENT_METHOD_KIND_CARD: MethodKind.CARD,
    pb.PAYMENT_METHOD_KIND_SEPA_DEBIT: MethodKind.SEPA_DEBIT,
    pb.PAYMENT_METHOD_KIND_BANK_TRANSFER: MethodKind.BANK_TRANSFER,
    pb.PAYMENT_METHOD_KIND_WALLET: MethodKind.WALLET,
}
KIND_TO_PROTO = {v: k for k, v in KIND_FROM_PROTO.items()}
CHANNEL_FROM_PROTO = {
    pb.CHANNEL_ONLINE_CARD: Channel.ONLINE_CARD,
    pb.CHANNEL_DIRECT_DEBIT: Channel.DIRECT_DEBIT,
    pb.CHANNEL_BANK_TRANSFER: Channel.BANK_TRANSFER,
    pb.CHANNEL_TERMINAL: Channel.TERMINAL,
    pb.CHANNEL_CASH_DESK: Channel.CASH_DESK,
    pb.CHANNEL_WALLET: Channel.WALLET,
}
CHANNEL_TO_PROTO = {v: k for k, v in CHANNEL_FROM_PROTO.items()}
STATE_TO_PROTO = {
    PaymentState.PENDING: pb.PAYMENT_STATE_PENDING,
    PaymentState.SUCCEEDED: pb.PAYMENT_STATE_SUCCEEDED,
    PaymentState.FAILED: pb.PAYMENT_STATE_FAILED,
    PaymentState.UNKNOWN: pb.PAYMENT_STATE_UNKNOWN,
}
ATTEMPT_TO_PROTO = {
    AttemptState.SENT: pb.PAYMENT_STATE_PENDING,
    AttemptState.PENDING: pb.PAYMENT_STATE_PENDING,
    AttemptState.SUCCEEDED: pb.PAYMENT_STATE_SUCCEEDED,
    AttemptState.FAILED: pb.PAYMENT_STATE_FAILED,
    AttemptState.UNKNOWN: pb.PAYMENT_STATE_UNKNOWN,
}
TX_TO_PROTO = {
    TransactionKind.PURCHASE: pb.TRANSACTION_KIND_PURCHASE,
    TransactionKind.REFUND: pb.TRANSACTION_KIND_REFUND,
    TransactionKind.CHARGEBACK: pb.TRANSACTION_KIND_CHARGEBACK,
}
PURPOSE_TO_PROTO = {
    Purpose.INVOICE: pb.PAYMENT_PURPOSE_INVOICE,
    Purpose.TOP_UP: pb.PAYMENT_PURPOSE_TOP_UP,
}


def _date(message: date_pb2.Date, field: str, v: Violations) -> date | None:
    if not (message.year or message.month or message.day):
        return None
    try:
        return date(message.year, message.month, message.day)
    except ValueError:
        v.add(field, "is not a valid date")
        return None


def date_to_proto(day: date | None) -> date_pb2.Date | None:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day) if day else None


def _amount(message: object, field: str, v: Violations) -> Money | None:
    money = money_from_proto(message, field, v)  # type: ignore[arg-type]
    if money is None:
        return None
    if not money.is_positive():
        v.add(field, "must be positive")
        return None
    if money.amount > MAX_AMOUNT:
        v.add(field, f"must be at most {MAX_AMOUNT}")
        return None
    try:
        money.minor_units  # noqa: B018 - refuses fractions of a cent
    except ValueError:
        v.add(field, "has more decimals than the currency's minor unit")
        return None
    return money


def add_method_command(request: pb.AddPaymentMethodRequest) -> cmd.AddPaymentMethod:
    v = Violations("payment_method")
    v.require(request.account_id, "account_id")
    v.require(request.customer_id, "customer_id")
    currency = request.currency_code
    try:
        Money.zero(currency)
    except ValueError:
        v.add("currency_code", "is not an ISO 4217 currency code")
    kind = KIND_FROM_PROTO.get(request.kind)
    if kind is None:
        v.add("kind", "is required")
    card: CardDetails | None = None
    if kind in (MethodKind.CARD, MethodKind.WALLET):
        number = request.card.number.replace(" ", "")
        if not luhn_valid(number):
            v.add("card.number", "is not a valid card number")  # never echoed
        if not 1 <= request.card.exp_month <= 12:
            v.add("card.exp_month", "must be 1 to 12")
        if not 2000 <= request.card.exp_year <= 2100:
            v.add("card.exp_year", "must be a four-digit year")
        if request.card.cvc and not (
            request.card.cvc.isdigit() and 3 <= len(request.card.cvc) <= 4
        ):
            v.add("card.cvc", "must be 3 or 4 digits")
        card = CardDetails(number, request.card.exp_month, request.card.exp_year, request.card.cvc)
        if kind is MethodKind.WALLET:
            v.require(request.wallet_name, "wallet_name")
    signed_on = _date(request.mandate_signed_date, "mandate_signed_date", v)
    if kind is MethodKind.SEPA_DEBIT:
        try:
            normalise_iban(request.iban)
        except BadReference as exc:
            v.add("iban", str(exc))
        if not 1 <= len(request.mandate_reference) <= 35:
            v.add("mandate_reference", "must be 1 to 35 characters")
        if signed_on is None:
            v.add("mandate_signed_date", "is required")
    v.raise_if_any()
    assert kind is not None
    return cmd.AddPaymentMethod(
        account_id=request.account_id,
        customer_id=request.customer_id,
        currency=currency,
        kind=kind,
        request_id=request.request_id,
        card=card,
        iban=request.iban,
        mandate_reference=request.mandate_reference,
        mandate_signed_on=signed_on,
        wallet_name=request.wallet_name,
        make_default=request.make_default,
    )


def create_payment_command(request: pb.CreatePaymentRequest) -> cmd.CreatePayment:
    v = Violations("payment")
    v.require(request.account_id, "account_id")
    v.require(request.request_id, "request_id")
    amount = _amount(request.amount, "amount", v) if request.HasField("amount") else None
    if not request.HasField("amount"):
        v.add("amount", "is required")
    channel = CHANNEL_FROM_PROTO.get(request.channel)
    if channel is None:
        v.add("channel", "is required")
    purpose = Purpose.TOP_UP if request.purpose == pb.PAYMENT_PURPOSE_TOP_UP else Purpose.INVOICE
    amounts: list[Money] = []
    for index, message in enumerate(request.invoice_amounts):
        part = _amount(message, f"invoice_amounts[{index}]", v)
        if part is not None:
            amounts.append(part)
            if amount is not None and part.currency != amount.currency:
                v.add(f"invoice_amounts[{index}].currency_code", "differs from the payment's")
    if request.invoice_amounts and len(request.invoice_amounts) != len(request.invoice_ids):
        v.add("invoice_amounts", "needs one amount per invoice id")
    if len(set(request.invoice_ids)) != len(request.invoice_ids):
        v.add("invoice_ids", "names an invoice twice")
    v.raise_if_any()
    assert amount is not None
    assert channel is not None
    return cmd.CreatePayment(
        account_id=request.account_id,
        amount=amount,
        channel=channel,
        request_id=request.request_id,
        purpose=purpose,
        method_id=request.method_id,
        invoice_ids=tuple(request.invoice_ids),
        invoice_amounts=tuple(amounts),
        external_reference=request.external_reference,
    )


def optional_amount(message: object, present: bool, field: str) -> Money | None:
    if not present:
        return None
    v = Violations()
    money = _amount(message, field, v)
    v.raise_if_any()
    return money


def history_query(request: pb.ListPaymentsRequest) -> cmd.HistoryQuery:
    v = Violations()
    if not request.account_id and not request.customer_id:
        v.add("account_id", "an account or a customer is required")
    size = page_size_from_proto(request.page_size, v)
    cursor = decode_page_token(request.page_token, v)
    v.raise_if_any()
    return cmd.HistoryQuery(
        account_id=request.account_id,
        customer_id=request.customer_id,
        after=(cursor or {}).get("after", ""),
        limit=size,
    )


def next_page_token(items: list[Payment], limit: int) -> str:
    return encode_page_token({"after": items[-1].payment_id}) if len(items) == limit else ""


def method_to_proto(method: PaymentMethod, default_id: str = "") -> pb.PaymentMethod:
    return pb.PaymentMethod(
        method_id=method.method_id,
        customer_id=method.customer_id,
        account_id=method.account_id,
        kind=KIND_TO_PROTO[method.kind],
        provider=method.provider,
        card_brand=method.card_brand,
        card_last4=method.card_last4,
        card_exp_month=method.card_exp_month,
        card_exp_year=method.card_exp_year,
        iban_masked=method.iban_masked,
        mandate_reference=method.mandate_reference,
        mandate_signed_date=date_to_proto(method.mandate_signed_on),
        payment_reference=method.payment_reference,
        wallet_name=method.wallet_name,
        is_default=method.method_id == default_id,
        create_time=timestamp_to_proto(method.created_at),
    )


def settings_to_proto(settings: AccountPaymentSettings) -> pb.PaymentSettings:
    return pb.PaymentSettings(
        account_id=settings.account_id,
        customer_id=settings.customer_id,
        currency_code=settings.currency,
        group_id=settings.group_id,
        auto_collect=settings.auto_collect,
        default_method_id=settings.default_method_id,
    )


def _attempt_to_proto(attempt: Attempt) -> pb.Attempt:
    return pb.Attempt(
        attempt_id=attempt.attempt_id,
        number=attempt.number,
        send_time=timestamp_to_proto(attempt.sent_at),
        state=ATTEMPT_TO_PROTO[attempt.state],
        decline_code=attempt.decline_code,
        provider_reference=attempt.provider_reference,
    )


def payment_to_proto(payment: Payment) -> pb.Payment:
    return pb.Payment(
        payment_id=payment.payment_id,
        kind=TX_TO_PROTO[payment.kind],
        purpose=PURPOSE_TO_PROTO[payment.purpose],
        account_id=payment.account_id,
        customer_id=payment.customer_id,
        channel=CHANNEL_TO_PROTO[payment.channel],
        amount=money_to_proto(payment.amount),
        state=STATE_TO_PROTO[payment.state],
        method_id=payment.method_id,
        provider_reference=payment.provider_reference,
        decline_code=payment.decline_code,
        hard_decline=payment.hard_decline,
        create_time=timestamp_to_proto(payment.created_at),
        settle_time=timestamp_to_proto(payment.settled_at),
        next_retry_time=timestamp_to_proto(payment.next_retry_at),
        attempts=[_attempt_to_proto(a) for a in payment.attempts],
        allocations=[
            pb.Allocation(invoice_id=a.invoice_id, amount=money_to_proto(a.amount))
            for a in payment.allocations
        ],
        credit=money_to_proto(payment.credit),
        refunded=money_to_proto(payment.refunded),
        original_payment_id=payment.parent_payment_id,
    )


def date_from_proto(message: date_pb2.Date, field: str) -> date:
    v = Violations()
    day = _date(message, field, v)
    if day is None and not v:
        v.add(field, "is required")
    v.raise_if_any()
    assert day is not None
    return day


def statement_line_to_proto(line: LineOutcome) -> pb.StatementLine:
    entry = line.entry
    message = pb.StatementLine(
        entry_reference=entry.entry_reference,
        reference=entry.reference,
        outcome=line.outcome,
        reason=line.reason,
        payment_id=line.payment_id,
        debtor_name=entry.debtor_name if isinstance(entry, StatementEntry) else "",
    )
    if entry.booked_on is not None:
        message.booking_date.CopyFrom(date_to_proto(entry.booked_on))
    if entry.amount is not None:
        message.amount.CopyFrom(money_to_proto(entry.amount))
    return message


def report_to_proto(report: ReconciliationReport) -> pb.GetReconciliationReportResponse:
    return pb.GetReconciliationReportResponse(
        totals=[_channel_total_to_proto(t) for t in report.totals],
        payouts=[
            pb.ProviderPayout(
                payout_id=p.payout_id,
                amount=money_to_proto(p.amount),
                arrival_date=date_to_proto(p.arrival_date),
                status=p.status,
            )
            for p in report.payouts
        ],
        provider=report.provider,
        provider_error=report.provider_error,
    )


def _channel_total_to_proto(t: ChannelTotals) -> pb.ChannelTotal:
    message = pb.ChannelTotal(
        channel=CHANNEL_TO_PROTO[t.channel],
        currency_code=t.currency,
        payments=t.payments,
        collected=money_to_proto(t.collected),
        reversals=t.reversals,
        reversed=money_to_proto(t.reversed),
        net=money_to_proto(t.net),
        unresolved=t.unresolved,
        differences=[_difference_to_proto(d) for d in t.differences],
    )
    if t.provider_gross is not None and t.provider_fees is not None:
        message.provider_gross.CopyFrom(money_to_proto(t.provider_gross))
        message.provider_fees.CopyFrom(money_to_proto(t.provider_fees))
        message.provider_net.CopyFrom(money_to_proto(t.provider_gross - t.provider_fees))
    if t.difference is not None:
        message.difference.CopyFrom(money_to_proto(t.difference))
    return message


def _difference_to_proto(d: Difference) -> pb.ReconciliationDifference:
    message = pb.ReconciliationDifference(
        kind=d.kind, payment_id=d.payment_id, provider_reference=d.provider_reference
    )
    if d.recorded is not None:
        message.recorded.CopyFrom(money_to_proto(d.recorded))
    if d.settled is not None:
        message.settled.CopyFrom(money_to_proto(d.settled))
    return message
