"""AddPaymentMethod replayed by its request id (AIP-155), on SQLite and PostgreSQL.

The same request id with the same parameters answers with the first method and
vaults nothing new; with other parameters (another card that shares the last four
and expiry, another IBAN with the same last four, another expiry) it is refused
naming ``request_id`` and the parameter, and nothing is written.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from schwifty import IBAN

from services.common.errors import InvalidArgument
from services.payments.domain.model import MethodKind
from services.payments.domain.provider import CardDetails
from services.payments.domain.references import luhn_valid
from services.payments.service_layer.commands import AddPaymentMethod
from tests.integration.payments.conftest import PaymentsWorld

FIRST_CARD = "4242424242424242"


def twin_of(number: str) -> str:
    """Another valid card number with the same first digit and last four."""
    for middle in range(10**6):
        candidate = f"{number[0]}{middle:06d}{number[7:]}"
        if candidate != number and luhn_valid(candidate):
            return candidate
    raise AssertionError("no twin")


def card_request(number: str, *, exp_month: int = 12, request_id: str = "rq-1") -> AddPaymentMethod:
    return AddPaymentMethod(
        account_id="acc1",
        customer_id="cus_acc1",
        currency="EUR",
        kind=MethodKind.CARD,
        request_id=request_id,
        card=CardDetails(number, exp_month, 2030, "123"),
    )


def refused_fields(world: PaymentsWorld, command: AddPaymentMethod) -> set[str]:
    before = world.row_counts()
    with pytest.raises(InvalidArgument) as refused:
        world.methods.add_method(command)
    assert world.row_counts() == before
    return {v.field for v in refused.value.violations}


def test_a_replay_answers_with_the_first_method_and_vaults_nothing(world: PaymentsWorld) -> None:
    first = world.methods.add_method(card_request(FIRST_CARD))
    vaulted = world.row_counts()
    again = world.methods.add_method(card_request(FIRST_CARD.replace("4242", "4242 ", 1)))
    assert again.method_id == first.method_id
    assert world.row_counts() == vaulted
    assert [m.method_id for m in world.methods.list_methods("acc1")] == [first.method_id]
    # Without a request id every call is a new method (nothing to recognise it by).
    other = world.methods.add_method(card_request(FIRST_CARD, request_id=""))
    assert other.method_id != first.method_id


def test_another_card_with_the_same_last_four_and_expiry_is_refused(world: PaymentsWorld) -> None:
    world.methods.add_method(card_request(FIRST_CARD))
    twin = twin_of(FIRST_CARD)
    assert twin[-4:] == FIRST_CARD[-4:]
    assert refused_fields(world, card_request(twin)) == {
        "request_id",
        "payment_method.card.number",
    }
    assert refused_fields(world, card_request(FIRST_CARD, exp_month=11)) == {
        "request_id",
        "payment_method.card.exp_month",
    }
    changed_currency = AddPaymentMethod(
        "acc1",
        "cus_acc1",
        "USD",
        MethodKind.CARD,
        request_id="rq-1",
        card=CardDetails(FIRST_CARD, 12, 2030),
    )
    assert refused_fields(world, changed_currency) == {
        "request_id",
        "payment_method.currency_code",
    }
    # The other card under a new request id is a second method, as asked.
    assert world.methods.add_method(card_request(twin, request_id="rq-2")).card_last4 == "4242"


def test_another_iban_with_the_same_last_four_is_refused(world: PaymentsWorld) -> None:
    first_iban = "DE89370400440532013000"
    other_iban = str(IBAN.generate("DE", bank_code="37040044", account_code="0532023000").compact)
    assert other_iban[-4:] == first_iban[-4:]

    def mandate(iban: str) -> AddPaymentMethod:
        return AddPaymentMethod(
            "acc2",
            "cus_acc2",
            "EUR",
            MethodKind.SEPA_DEBIT,
            request_id="mandate-1",
            iban=iban,
            mandate_reference="M-1",
            mandate_signed_on=date(2026, 2, 1),
        )

    first = world.methods.add_method(mandate(first_iban))
    assert first.iban_masked == "DE89**************3000"
    assert world.methods.add_method(mandate(first_iban)).method_id == first.method_id
    assert refused_fields(world, mandate(other_iban)) == {"request_id", "payment_method.iban"}


def test_the_same_request_sent_five_times_at_once_makes_one_method(world: PaymentsWorld) -> None:
    with ThreadPoolExecutor(5) as pool:
        answers = list(
            pool.map(lambda _: world.methods.add_method(card_request(FIRST_CARD)), range(5))
        )
    assert len({m.method_id for m in answers}) == 1
    assert len(world.methods.list_methods("acc1")) == 1
