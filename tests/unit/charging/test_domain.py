"""The pure rules of charging: units, bucket order, balance rules, FUI, thresholds, sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.charging.domain.accounts import (
    AccountPolicy,
    AccountState,
    BillingMode,
    admission,
    credit_threshold,
    parse_state,
)
from services.charging.domain.buckets import Bucket, draw_order
from services.charging.domain.credit_control import (
    Disposition,
    RequestType,
    ResultCode,
    SessionState,
    classify,
    overall_result,
)
from services.charging.domain.thresholds import credit_levels_crossed, low_balance_crossed
from services.charging.domain.units import (
    MAX_BALANCE,
    TIME,
    Quantity,
    Unit,
    UnitKind,
    money_digits,
    money_unit,
    scaled_money,
    service_units,
    unscaled_money,
)
from services.charging.domain.vouchers import code_hash, is_well_formed, voucher_code
from services.charging.domain.wallet import RatingGroupCharge, Wallet
from services.charging.service_layer.pricing import Tariff
from services.common.money import Money, MoneyError

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
EUR = money_unit("EUR")


def bucket(bucket_id: str, unit: Unit = TIME, **fields: object) -> Bucket:
    return Bucket(bucket_id, "a1", unit, **fields)  # type: ignore[arg-type]


def charge(
    want: int = 0,
    price: int | None = None,
    used: int = 0,
    cost: int | None = None,
    free: bool = False,
) -> RatingGroupCharge:
    return RatingGroupCharge(
        1,
        "voice",
        TIME,
        free=free,
        wanted=want,
        price_of_wanted=price,
        price_currency="EUR" if price is not None or cost is not None else "",
        used=used,
        cost_of_used=cost,
    )


# -- units --------------------------------------------------------------------------------
def test_money_is_kept_in_micro_units_or_the_finer_minor_unit() -> None:
    assert money_digits("EUR") == 6
    assert money_digits("JPY") == 6
    assert money_digits("BTC") == 8
    assert scaled_money(Money.of("1.25", "EUR")) == 1_250_000
    assert unscaled_money(1_250_000, "EUR") == Money.of("1.25", "EUR")
    assert scaled_money(Money.of("0.00000001", "BTC")) == 1
    with pytest.raises(MoneyError):
        scaled_money(Money.of("0.0000001", "EUR"))


@given(
    st.integers(min_value=-MAX_BALANCE, max_value=MAX_BALANCE),
    st.sampled_from(["EUR", "JPY", "KWD", "BTC"]),
)
def test_scaled_money_round_trips_exactly(amount: int, currency: str) -> None:
    assert scaled_money(unscaled_money(amount, currency)) == amount


def test_unit_keys_round_trip() -> None:
    for unit in (TIME, Unit(UnitKind.VOLUME), EUR, service_units("sms")):
        assert Unit.from_key(unit.key) == unit
    assert str(Quantity(EUR, 1_500_000)) == "1.500000 EUR"


# -- buckets ------------------------------------------------------------------------------
def test_draw_order_is_priority_then_expiry_then_age_with_the_credit_line_last() -> None:
    buckets = [
        bucket("late", priority=5, created_at=NOW),
        bucket("early", priority=5, created_at=NOW - timedelta(days=1)),
        bucket("expiring", priority=5, valid_until=NOW + timedelta(hours=1)),
        bucket("first", priority=1),
        bucket("main", main=True, priority=0),
    ]
    order = [
        b.bucket_id
        for b in draw_order(
            buckets, TIME, service="voice", rating_group=1, at=NOW, mode=BillingMode.PREPAID
        )
    ]
    assert order == ["first", "expiring", "early", "late", "main"]


def test_expired_future_and_foreign_buckets_are_never_drawn() -> None:
    buckets = [
        bucket("expired", valid_until=NOW),
        bucket("future", valid_from=NOW + timedelta(seconds=1)),
        bucket("data", services=frozenset({"data"})),
        bucket("group7", rating_groups=frozenset({7})),
        bucket("voice", services=frozenset({"voice"})),
        bucket("group1", rating_groups=frozenset({1})),
        bucket("sms", service_units("sms")),
    ]
    order = {
        b.bucket_id
        for b in draw_order(
            buckets, TIME, service="voice", rating_group=1, at=NOW, mode=BillingMode.PREPAID
        )
    }
    assert order == {"voice", "group1"}


def test_postpaid_draws_money_only_from_its_credit_line() -> None:
    buckets = [bucket("promo", EUR), bucket("main-EUR", EUR, main=True)]
    for mode, expected in (
        (BillingMode.POSTPAID, ["main-EUR"]),
        (BillingMode.HYBRID, ["promo", "main-EUR"]),
        (BillingMode.PREPAID, ["promo", "main-EUR"]),
    ):
        order = draw_order(buckets, EUR, service="voice", rating_group=1, at=NOW, mode=mode)
        assert [b.bucket_id for b in order] == expected


# -- the wallet ----------------------------------------------------------------------------
def wallet(mode: BillingMode = BillingMode.PREPAID, limit: int = 0, **amounts: int) -> Wallet:
    buckets = [bucket("main-EUR", EUR, main=True)]
    buckets += [bucket(name, TIME, priority=1) for name in amounts if name != "money"]
    w = Wallet(AccountPolicy("a1", mode, "EUR", credit_limit=limit), buckets)
    w.amounts["main-EUR"].available = amounts.get("money", 0)
    for name, value in amounts.items():
        if name != "money":
            w.amounts[name].available = value
    return w


def test_free_units_are_reserved_before_money_and_partially() -> None:
    w = wallet(money=1_000_000, minutes=30)
    reservation, grant = w.reserve(charge(want=60, price=100_000), NOW)
    assert reservation is not None
    assert reservation.kind == "u"
    assert (grant.granted, grant.final) == (30, False)  # money follows: not final
    _, grant = w.reserve(charge(want=60, price=100_000), NOW)
    assert (grant.kind, grant.granted) == ("m", 60)


def test_prepaid_stops_at_zero_and_the_last_grant_is_final() -> None:
    w = wallet(money=250_000)
    _, first = w.reserve(charge(want=60, price=100_000), NOW)
    _, second = w.reserve(charge(want=60, price=100_000), NOW)
    _, third = w.reserve(charge(want=60, price=100_000), NOW)
    assert (first.granted, first.final) == (60, False)
    assert (second.granted, second.final) == (60, False)
    assert (third.granted, third.held, third.final) == (-1, 50_000, True)  # partial money
    _, none = w.reserve(charge(want=60, price=100_000), NOW)
    assert none.result == "NOCREDIT"
    assert w.amounts["main-EUR"].available == 0


def test_postpaid_runs_to_the_credit_limit() -> None:
    w = wallet(BillingMode.POSTPAID, limit=150_000)
    _, first = w.reserve(charge(want=60, price=100_000), NOW)
    _, second = w.reserve(charge(want=60, price=100_000), NOW)
    assert first.granted == 60
    assert second.held == 50_000
    assert second.final
    assert w.amounts["main-EUR"].available == -150_000


def test_settling_debits_the_reservation_and_releases_the_rest() -> None:
    w = wallet(money=1_000_000)
    reservation, _ = w.reserve(charge(want=120, price=200_000), NOW)
    assert reservation is not None
    result = w.settle(charge(used=30, cost=100_000), reservation, NOW)
    assert result.charged_money == 100_000
    assert (w.amounts["main-EUR"].available, w.amounts["main-EUR"].reserved) == (900_000, 0)
    assert [m.amount for m in w.take_movements()] == [100_000]


def test_usage_beyond_the_grant_is_forced_onto_the_last_bucket() -> None:
    w = wallet(minutes=60)
    reservation, _ = w.reserve(charge(want=60), NOW)
    result = w.settle(charge(used=75), reservation, NOW)
    assert (result.charged_units, result.uncharged) == (75, 0)
    assert w.amounts["minutes"].available == -15


def test_free_services_hold_nothing() -> None:
    w = wallet(money=0)
    reservation, grant = w.reserve(charge(want=60, free=True), NOW)
    assert reservation is not None
    assert reservation.kind == "f"
    assert grant.granted == 60


# -- accounts, thresholds, sessions -------------------------------------------------------------
def test_suspended_and_barred_accounts_keep_free_services_closed_ones_nothing() -> None:
    assert admission(AccountState.ACTIVE, free_service=False) is None
    assert admission(AccountState.SUSPENDED, free_service=True) is None
    refusal = admission(AccountState.BARRED, free_service=False)
    assert refusal is not None
    assert refusal.reason == "ACCOUNT_BARRED"
    assert admission(AccountState.CLOSED, free_service=True) is not None
    assert parse_state("Suspended") is AccountState.SUSPENDED
    assert parse_state("pending") is None


def test_thresholds_fire_when_crossed_downwards_only() -> None:
    assert low_balance_crossed(600, 400, 500)
    assert not low_balance_crossed(400, 300, 500)
    assert not low_balance_crossed(400, 600, 500)
    assert credit_levels_crossed(-10, -85, 100) == [80]
    assert credit_levels_crossed(-85, -120, 100) == [100]
    assert credit_levels_crossed(0, -100, 100) == [80, 100]
    assert credit_levels_crossed(-100, -150, 100) == []
    assert credit_threshold(101, 80) == 81  # 80.8 rounds up: 80.8 units used is not yet 80%


def test_an_older_request_still_remembered_is_replayed() -> None:
    assert classify(RequestType.UPDATE, 1, SessionState.OPEN, 3, {0, 1, 2, 3}) is (
        Disposition.REPLAY
    )
    assert classify(RequestType.INITIAL, 0, SessionState.CLOSED, 3, {0, 3}) is Disposition.REPLAY
    assert classify(RequestType.UPDATE, 2, SessionState.OPEN, 3, {0, 1, 3}) is (
        Disposition.OUT_OF_ORDER
    )


@pytest.mark.parametrize(
    ("kind", "number", "state", "last", "expected"),
    [
        (RequestType.INITIAL, 0, None, None, Disposition.OPEN),
        (RequestType.UPDATE, 3, None, None, Disposition.UNKNOWN),
        (RequestType.TERMINATE, 1, None, None, Disposition.UNKNOWN),
        (RequestType.UPDATE, 2, SessionState.OPEN, 2, Disposition.REPLAY),
        (RequestType.UPDATE, 1, SessionState.OPEN, 2, Disposition.OUT_OF_ORDER),
        (RequestType.INITIAL, 3, SessionState.OPEN, 2, Disposition.OUT_OF_ORDER),
        (RequestType.UPDATE, 3, SessionState.OPEN, 2, Disposition.APPLY),
        (RequestType.UPDATE, 3, SessionState.CLOSED, 2, Disposition.CLOSED),
        (RequestType.TERMINATE, 3, SessionState.SWEPT, 2, Disposition.LATE),
    ],
)
def test_the_session_state_machine(
    kind: RequestType,
    number: int,
    state: SessionState | None,
    last: int | None,
    expected: Disposition,
) -> None:
    assert classify(kind, number, state, last) is expected


def test_the_request_result_is_success_when_any_rating_group_succeeded() -> None:
    assert (
        overall_result([ResultCode.CREDIT_LIMIT_REACHED, ResultCode.SUCCESS]) is ResultCode.SUCCESS
    )
    assert (
        overall_result([ResultCode.END_USER_SERVICE_DENIED]) is ResultCode.END_USER_SERVICE_DENIED
    )
    assert ResultCode.CREDIT_LIMIT_REACHED.diameter == 4012


# -- pricing and vouchers ---------------------------------------------------------------------
def test_tariffs_round_up_to_increments_and_never_sell_more_than_paid_for() -> None:
    minute = Tariff(Money.of("0.10", "EUR"), per_units=60, increment=60)
    assert minute.price_of(1) == Money.of("0.10", "EUR")
    assert minute.price_of(61) == Money.of("0.20", "EUR")
    assert minute.units_for(Money.of("0.25", "EUR")) == 120


@given(st.integers(1, 10_000), st.integers(1, 120), st.integers(1, 60), st.integers(0, 10**9))
def test_units_an_amount_buys_cost_at_most_the_amount(
    price_micro: int, per: int, step: int, amount_micro: int
) -> None:
    tariff = Tariff(unscaled_money(price_micro, "EUR"), per_units=per, increment=step)
    amount = unscaled_money(amount_micro, "EUR")
    units = tariff.units_for(amount)
    assert tariff.price_of(units) <= amount
    assert tariff.price_of(units + step) > amount or units >= 10**15


def test_voucher_codes_are_reproducible_and_tolerant_to_typing() -> None:
    code = voucher_code(b"secret", "vbt_1", 0)
    assert code == voucher_code(b"secret", "vbt_1", 0) != voucher_code(b"secret", "vbt_1", 1)
    assert is_well_formed(code.lower().replace("-", " "))
    assert code_hash(code.lower()) == code_hash(code)
