"""Pure payment rules: the state machine, the janitor's and retries' schedules, allocation,
IBAN and ISO 11649 references."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common.money import Money
from services.payments.domain.model import (
    JANITOR_DELAYS,
    Channel,
    Payment,
    PaymentState,
    Purpose,
    TransactionKind,
    allocate_oldest_first,
)
from services.payments.domain.provider import ProviderResult, ProviderStatus
from services.payments.domain.references import (
    BadReference,
    creditor_reference,
    is_creditor_reference,
    mask_iban,
    normalise_iban,
    redact_card_numbers,
)

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def collection(retry_days: str = "1,3,5,7") -> Payment:
    return Payment(
        "pay_1",
        TransactionKind.PURCHASE,
        Purpose.INVOICE,
        "acc",
        "cus",
        Channel.ONLINE_CARD,
        eur("10"),
        NOW,
        method_id="pm_1",
        retry_days=retry_days,
    )


def test_the_janitor_asks_after_5_minutes_1_hour_then_daily_for_5_days() -> None:
    payment = collection()
    payment.start_attempt("a1", NOW)
    asked = []
    while payment.next_check_at is not None:
        asked.append(payment.next_check_at - NOW)
        payment.janitor_checked(payment.next_check_at)
    assert asked == list(JANITOR_DELAYS)
    assert asked[:2] == [timedelta(minutes=5), timedelta(hours=1)]
    assert payment.state is PaymentState.UNKNOWN  # never guessed


def test_a_final_answer_is_recorded_once() -> None:
    payment = collection()
    payment.start_attempt("a1", NOW)
    assert payment.apply_result("a1", ProviderResult(ProviderStatus.SUCCEEDED, "ch_1"), NOW)
    assert not payment.apply_result("a1", ProviderResult(ProviderStatus.FAILED, "", "x"), NOW)
    assert payment.state is PaymentState.SUCCEEDED
    assert payment.next_check_at is None
    with pytest.raises(ValueError, match="not sent again"):
        payment.start_attempt("a2", NOW)


def test_soft_declines_are_retried_on_days_after_the_first_failure() -> None:
    payment = collection("1,3")
    payment.start_attempt("a1", NOW)
    payment.apply_result("a1", ProviderResult(ProviderStatus.FAILED, "", "insufficient_funds"), NOW)
    assert payment.next_retry_at == NOW + timedelta(days=1)
    payment.start_attempt("a2", NOW + timedelta(days=1))
    later = NOW + timedelta(days=1)
    payment.apply_result("a2", ProviderResult(ProviderStatus.FAILED, "", "generic_decline"), later)
    assert payment.next_retry_at == NOW + timedelta(days=3)
    payment.start_attempt("a3", NOW + timedelta(days=3))
    last = NOW + timedelta(days=3)
    payment.apply_result("a3", ProviderResult(ProviderStatus.FAILED, "", "generic_decline"), last)
    assert payment.next_retry_at is None


@pytest.mark.parametrize("code", ["lost_card", "stolen_card", "fraudulent", "do_not_try_again"])
def test_hard_declines_are_never_retried(code: str) -> None:
    payment = collection()
    payment.start_attempt("a1", NOW)
    payment.apply_result("a1", ProviderResult(ProviderStatus.FAILED, "", code), NOW)
    assert payment.hard_decline
    assert payment.next_retry_at is None


def test_allocation_is_oldest_first_and_the_rest_is_credit() -> None:
    parts, rest = allocate_oldest_first(
        eur("100"), [("old", eur("50")), ("paid", eur("0")), ("new", eur("30"))]
    )
    assert parts == [("old", eur("50")), ("new", eur("30"))]
    assert rest == eur("20")
    parts, rest = allocate_oldest_first(eur("60"), [("old", eur("50")), ("new", eur("30"))])
    assert parts == [("old", eur("50")), ("new", eur("10"))]
    assert rest == eur("0")


def test_creditor_references_carry_iso_11649_check_digits() -> None:
    assert creditor_reference("539007547034") == "RF18539007547034"  # ISO 11649's example
    assert is_creditor_reference("RF18 5390 0754 7034")
    assert not is_creditor_reference("RF19539007547034")
    with pytest.raises(BadReference):
        creditor_reference("too-long-for-a-creditor-reference")


def test_ibans_are_validated_and_masked() -> None:
    assert normalise_iban("de89 3704 0044 0532 0130 00") == "DE89370400440532013000"
    assert mask_iban("DE89370400440532013000") == "DE89**************3000"
    with pytest.raises(BadReference):
        normalise_iban("DE89370400440532013001")
    with pytest.raises(BadReference):
        normalise_iban("not an iban")


def test_card_numbers_in_free_text_are_cut_to_their_last_four() -> None:
    assert redact_card_numbers("card 4242 4242 4242 4242, thx") == "card ****4242, thx"
    assert redact_card_numbers("4000-0000-0000-0002") == "****0002"
    # Not card numbers: a failing Luhn check, a bank reference, an IBAN, an RF reference.
    for text in (
        "4242424242424241",
        "00000012345678",
        "DE89370400440532013000",
        "RF18539007547034",
        "invoice 2026000101",
    ):
        assert redact_card_numbers(text) == text
