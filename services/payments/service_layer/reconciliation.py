"""The reconciliation report of a day per channel: recorded payments against the provider.

Reckon's side is every transaction settled on the UTC day: purchases and reversals
(refunds, chargebacks) per channel and currency, and what is still pending or
unknown. The provider's side is its balance movements of the day (``settlement``:
each settled charge with its fee, each refund) and the payouts arriving that day.
Each purchase or refund that went through the provider is set against the movement
with its provider reference; every disagreement is listed with the payment id:

* ``MISSING_AT_PROVIDER``: recorded, but the provider has no movement for it that day;
* ``NOT_RECORDED``: the provider moved money Reckon has no payment for;
* ``OTHER_DAY``: the provider's movement is for a payment Reckon settled another day;
* ``AMOUNT_DIFFERS``: both have it, for different amounts.

Chargebacks are recorded from the bank's notice and are not provider movements here,
so they are in the totals but not compared. A provider that does not answer leaves
its side empty with the reason, never a guessed figure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from services.common.clock import Clock
from services.common.money import Money
from services.payments.domain.model import Channel, Payment, PaymentState, TransactionKind
from services.payments.domain.provider import (
    BalanceLine,
    PaymentProvider,
    Payout,
    ProviderError,
    ProviderTimeout,
)
from services.payments.service_layer.ports import PaymentsUnitOfWork

log = logging.getLogger(__name__)

# A provider movement whose payment Reckon does not know is put on its method's channel.
_CHANNEL_OF_PROVIDER_METHOD = {"card": Channel.ONLINE_CARD, "sepa_debit": Channel.DIRECT_DEBIT}


@dataclass(frozen=True)
class Difference:
    kind: str  # MISSING_AT_PROVIDER | NOT_RECORDED | OTHER_DAY | AMOUNT_DIFFERS
    payment_id: str
    provider_reference: str
    recorded: Money | None  # signed: a refund is negative
    settled: Money | None  # signed, as the provider moved it

    @property
    def gap(self) -> Money:
        currency = (self.recorded or self.settled or Money.zero("EUR")).currency
        zero = Money.zero(currency)
        return (self.recorded or zero) - (self.settled or zero)


@dataclass(frozen=True)
class ChannelTotals:
    channel: Channel
    currency: str
    payments: int
    collected: Money
    reversals: int
    reversed: Money
    unresolved: int
    # The provider's side; None for a channel no provider settles (desk, transfer).
    provider_gross: Money | None = None
    provider_fees: Money | None = None
    differences: tuple[Difference, ...] = ()

    @property
    def net(self) -> Money:
        return self.collected - self.reversed

    @property
    def provider_net(self) -> Money | None:
        if self.provider_gross is None or self.provider_fees is None:
            return None
        return self.provider_gross - self.provider_fees

    @property
    def difference(self) -> Money | None:
        """Recorded minus settled over the transactions compared: zero when they agree."""
        if self.provider_gross is None:
            return None
        return sum((d.gap for d in self.differences), Money.zero(self.currency))


@dataclass(frozen=True)
class ReconciliationReport:
    day: date
    totals: list[ChannelTotals]
    payouts: list[Payout] = field(default_factory=list)
    provider: str = ""
    provider_error: str = ""


@dataclass
class _Row:
    payments: int
    collected: Money
    reversals: int
    reversed: Money
    unresolved: int = 0
    provider_gross: Money | None = None
    provider_fees: Money | None = None
    differences: list[Difference] = field(default_factory=list)

    def settled(self, line: BalanceLine) -> None:
        zero = Money.zero(line.gross.currency)
        self.provider_gross = (self.provider_gross or zero) + line.gross
        self.provider_fees = (self.provider_fees or zero) + line.fee

    def compared(self, currency: str) -> None:
        """The channel goes through the provider: its side shows, zero if it moved nothing."""
        zero = Money.zero(currency)
        self.provider_gross = self.provider_gross or zero
        self.provider_fees = self.provider_fees or zero


class _Rows:
    def __init__(self) -> None:
        self.rows: dict[tuple[Channel, str], _Row] = {}

    def of(self, channel: Channel, currency: str) -> _Row:
        zero = Money.zero(currency)
        return self.rows.setdefault((channel, currency), _Row(0, zero, 0, zero))

    def totals(self) -> list[ChannelTotals]:
        return [
            ChannelTotals(
                channel,
                currency,
                r.payments,
                r.collected,
                r.reversals,
                r.reversed,
                r.unresolved,
                r.provider_gross,
                r.provider_fees,
                tuple(r.differences),
            )
            for (channel, currency), r in sorted(self.rows.items())
        ]


def _add_recorded(rows: _Rows, settled: Sequence[Payment], unresolved: Sequence[Payment]) -> None:
    for payment in settled:
        row = rows.of(payment.channel, payment.amount.currency)
        if payment.kind is TransactionKind.PURCHASE:
            row.payments += 1
            row.collected = row.collected + payment.amount
        else:
            row.reversals += 1
            row.reversed = row.reversed + payment.amount
    for payment in unresolved:
        rows.of(payment.channel, payment.amount.currency).unresolved += 1


def _signed(payment: Payment) -> Money:
    return payment.amount if payment.kind is TransactionKind.PURCHASE else -payment.amount


def _compared(payment: Payment, provider_name: str) -> bool:
    """A purchase or refund that went through this provider (so it has a movement there)."""
    return (
        payment.provider == provider_name
        and bool(payment.provider_reference)
        and payment.kind in (TransactionKind.PURCHASE, TransactionKind.REFUND)
    )


def reconcile(
    uow_factory: Callable[[], PaymentsUnitOfWork],
    provider: PaymentProvider | None,
    clock: Clock,
    day: date,
) -> ReconciliationReport:
    start = datetime.combine(day, time(0), tzinfo=clock.now().tzinfo)
    end = start + timedelta(days=1)
    with uow_factory() as uow:
        settled = [
            p for p in uow.payments.settled_between(start, end) if p.state is PaymentState.SUCCEEDED
        ]
        unresolved = uow.payments.unresolved_between(start, end)
    rows = _Rows()
    _add_recorded(rows, settled, unresolved)
    if provider is None:
        return ReconciliationReport(day, rows.totals())
    name = str(getattr(provider, "name", ""))
    try:
        settlement = provider.settlement(day)
    except (ProviderTimeout, ProviderError) as exc:
        log.warning("reconciliation of %s: the provider did not answer (%s)", day, exc)
        return ReconciliationReport(day, rows.totals(), [], name, f"provider unavailable: {exc}")

    # The provider's movements by the reference of the charge or refund they come from.
    movements: dict[str, list[BalanceLine]] = {}
    for line in settlement.lines:
        movements.setdefault(line.provider_reference, []).append(line)

    for payment in settled:
        if not _compared(payment, name):
            continue
        row = rows.of(payment.channel, payment.amount.currency)
        row.compared(payment.amount.currency)
        recorded = _signed(payment)
        lines = movements.pop(payment.provider_reference, [])
        for line in lines:
            row.settled(line)
        if not lines:
            row.differences.append(
                Difference(
                    "MISSING_AT_PROVIDER",
                    payment.payment_id,
                    payment.provider_reference,
                    recorded,
                    None,
                )
            )
            continue
        moved = sum((line.gross for line in lines), Money.zero(recorded.currency))
        if moved != recorded:
            row.differences.append(
                Difference(
                    "AMOUNT_DIFFERS",
                    payment.payment_id,
                    payment.provider_reference,
                    recorded,
                    moved,
                )
            )

    if movements:
        # Movements with no payment settled today: another day's, or none of ours.
        with uow_factory() as uow:
            known = {
                p.provider_reference: p
                for p in uow.payments.by_provider_references(list(movements))
                if p.provider == name
            }
        for reference, lines in sorted(movements.items()):
            first = lines[0]
            moved = sum((line.gross for line in lines), Money.zero(first.gross.currency))
            other = known.get(reference)
            channel = (
                other.channel
                if other is not None
                else _CHANNEL_OF_PROVIDER_METHOD.get(first.method, Channel.ONLINE_CARD)
            )
            row = rows.of(channel, first.gross.currency)
            for line in lines:
                row.settled(line)
            row.differences.append(
                Difference(
                    "OTHER_DAY" if other is not None else "NOT_RECORDED",
                    other.payment_id if other is not None else "",
                    reference,
                    None,
                    moved,
                )
            )
    return ReconciliationReport(day, rows.totals(), list(settlement.payouts), name)
