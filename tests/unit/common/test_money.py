"""The money type: exact, currency-safe, explicit rounding, lossless on the wire."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import Violations
from services.common.money import (
    CurrencyMismatch,
    Money,
    MoneyError,
    Rounding,
    UnknownCurrency,
    currency_exponent,
)
from services.common.proto_convert import money_from_proto, money_to_proto


def test_floats_are_refused() -> None:
    with pytest.raises(MoneyError, match="inexact"):
        Money.of(0.1, "EUR")  # type: ignore[arg-type]


def test_sum_is_exact() -> None:
    total = sum((Money.of("0.1", "EUR") for _ in range(10)), Money.zero("EUR"))
    assert total == Money.of("1.0", "EUR")


def test_currencies_do_not_mix() -> None:
    with pytest.raises(CurrencyMismatch):
        _ = Money.of(1, "EUR") + Money.of(1, "USD")
    with pytest.raises(CurrencyMismatch):
        _ = Money.of(1, "EUR") < Money.of(1, "USD")


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(UnknownCurrency):
        Money.of(1, "EURO")
    with pytest.raises(UnknownCurrency):
        Money.of(1, "eur")


@pytest.mark.parametrize(("currency", "places"), [("EUR", 2), ("JPY", 0), ("KWD", 3), ("BTC", 8)])
def test_minor_unit_exponents(currency: str, places: int) -> None:
    assert currency_exponent(currency) == places


@pytest.mark.parametrize(
    ("amount", "rounding", "expected"),
    [
        ("2.345", Rounding.HALF_EVEN, "2.34"),
        ("2.355", Rounding.HALF_EVEN, "2.36"),
        ("2.345", Rounding.HALF_UP, "2.35"),
        ("2.341", Rounding.UP, "2.35"),
        ("2.349", Rounding.DOWN, "2.34"),
        ("-2.341", Rounding.UP, "-2.35"),
        ("-2.341", Rounding.CEILING, "-2.34"),
        ("-2.341", Rounding.FLOOR, "-2.35"),
    ],
)
def test_rounding_methods(amount: str, rounding: Rounding, expected: str) -> None:
    assert Money.of(amount, "EUR").rounded(rounding=rounding).amount == Decimal(expected)


def test_more_than_nine_places_must_be_rounded_first() -> None:
    with pytest.raises(MoneyError, match="decimal places"):
        Money.of("0.0000000001", "EUR")


def test_minor_units_refuse_fractions() -> None:
    assert Money.of("12.34", "EUR").minor_units == 1234
    assert Money.of("500", "JPY").minor_units == 500
    with pytest.raises(MoneyError):
        _ = Money.of("12.345", "EUR").minor_units


def test_times_rounds_to_the_currency() -> None:
    assert Money.of("10.00", "EUR").times(Decimal("0.19")) == Money.of("1.90", "EUR")
    assert Money.of("0.05", "EUR").times(Decimal("0.5")) == Money.of("0.02", "EUR")  # half even


amounts = st.decimals(
    min_value=Decimal("-1000000"),
    max_value=Decimal("1000000"),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)


@given(
    amounts,
    st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=12).filter(
        lambda ratios: sum(ratios) > 0
    ),
)
def test_allocation_never_loses_or_invents_a_cent(amount: Decimal, ratios: list[int]) -> None:
    parts = Money.of(amount, "EUR").allocate(ratios)
    assert sum((p for p in parts), Money.zero("EUR")) == Money.of(amount, "EUR")
    assert len(parts) == len(ratios)


@given(
    st.decimals(
        # The wire's range: beyond 10^15 units an amount is "out of range" (issue 9 item 14).
        min_value=Decimal("-1e15"),
        max_value=Decimal("1e15"),
        places=9,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_wire_form_round_trips_exactly(amount: Decimal) -> None:
    money = Money.of(amount, "USD")
    violations = Violations()
    back = money_from_proto(money_to_proto(money), "price", violations, allow_negative=True)
    assert not violations
    assert back == money


def test_wire_form_rejects_mixed_signs_and_names_the_field() -> None:
    from google.type import money_pb2

    violations = Violations()
    result = money_from_proto(
        money_pb2.Money(currency_code="EUR", units=1, nanos=-5), "credit_limit", violations
    )
    assert result is None
    assert [v.field for v in violations.items] == ["credit_limit.nanos"]
