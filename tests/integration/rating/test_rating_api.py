"""Rating questions over gRPC, checked against worked examples computed by hand.

Catalog: samples/catalog.yaml. Account: Europe/Amsterdam, tax region NL (VAT 21%,
exclusive, half-up to the cent). 2 March 2026 is a Monday; Amsterdam is UTC+1 then.
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.type import money_pb2

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.grpc_errors import details_of
from services.rating.entrypoints.main import RunningRating
from tests.integration.rating.conftest import add_account, apply_sample_catalog


def stamp(value: datetime) -> timestamp_pb2.Timestamp:
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(value)
    return result


def amount(money: money_pb2.Money) -> str:
    return f"{money.units + money.nanos / 1e9:.2f} {money.currency_code}"


def event(
    record_id: str,
    destination: str,
    start: datetime,
    seconds: int,
    account: str = "acc_1",
    service: str = "voice",
) -> rating_pb2.UsageEvent:
    return rating_pb2.UsageEvent(
        record_id=record_id,
        account_id=account,
        service=service,
        destination=destination,
        event_time=stamp(start),
        quantity=rating_pb2.Quantity(value=seconds, unit=rating_pb2.QUANTITY_UNIT_SECOND),
    )


@pytest.fixture
async def priced(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> rating_pb2_grpc.RatingServiceStub:
    await apply_sample_catalog(stub)
    add_account(rating, "acc_1")
    return stub


async def test_mobile_call_per_second_at_peak(priced: rating_pb2_grpc.RatingServiceStub) -> None:
    # 1750 s at 0.18/min = 0.003/s -> 5.25, + 0.05 connection = 5.30 net;
    # VAT 21% of 5.30 = 1.113 -> 1.11; gross 6.41.
    reply = await priced.RateEvent(
        rating_pb2.RateEventRequest(
            event=event("r1", "+31 6 1234 5678", datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC), 1750)
        )
    )
    charge = reply.charge
    assert (charge.plan_code, charge.plan_version, charge.rate_id) == (
        "conference-pro",
        1,
        "nl-mobile",
    )
    assert (charge.destination.name, charge.destination.prefix, charge.destination.number) == (
        "NL Mobile",
        "316",
        "31612345678",
    )
    assert amount(charge.connection_fee) == "0.05 EUR"
    assert [(s.band, s.seconds, s.increments) for s in charge.segments] == [("peak", 1750, 1749)]
    assert amount(charge.net) == "5.30 EUR"
    assert [(t.code, t.percent, amount(t.amount)) for t in charge.taxes] == [
        ("VAT", "21", "1.11 EUR")
    ]
    assert amount(charge.gross) == "6.41 EUR"
    assert charge.time_zone == "Europe/Amsterdam"
    assert charge.tax_region == "NL"


async def test_call_crossing_peak_end_is_split_and_priced_per_band(
    priced: rating_pb2_grpc.RatingServiceStub,
) -> None:
    # Landline 60/60, starts 17:59:30 local (16:59:30Z) and lasts 90 s.
    # First increment (60 s) at the starting band's price: peak 0.10.
    # Offpeak segment: 60 s of which 30 s are inside the first increment; 30 s left
    # -> 1 increment at 0.05. Net 0.05 + 0.10 + 0.05 = 0.20; VAT 0.042 -> 0.04; gross 0.24.
    reply = await priced.RateEvent(
        rating_pb2.RateEventRequest(
            event=event("r2", "020 555 0101", datetime(2026, 3, 2, 16, 59, 30, tzinfo=UTC), 90)
        )
    )
    charge = reply.charge
    assert charge.rate_id == "nl-fixed"
    assert [(s.band, s.seconds, s.increments, amount(s.amount)) for s in charge.segments] == [
        ("peak", 30, 0, "0.10 EUR"),
        ("offpeak", 60, 1, "0.05 EUR"),
    ]
    assert charge.segments[1].start_time.ToDatetime(tzinfo=UTC) == datetime(
        2026, 3, 2, 17, 0, tzinfo=UTC
    )
    assert amount(charge.net) == "0.20 EUR"
    assert amount(charge.gross) == "0.24 EUR"


async def test_minimum_cost_applies_to_a_short_mobile_call(
    priced: rating_pb2_grpc.RatingServiceStub,
) -> None:
    # 10 s on a Saturday: 10 x 0.001 + 0.05 = 0.06, below the minimum 0.10.
    reply = await priced.RateEvent(
        rating_pb2.RateEventRequest(
            event=event("r3", "+31612345678", datetime(2026, 3, 7, 12, 0, tzinfo=UTC), 10)
        )
    )
    assert reply.charge.cost_limit == rating_pb2.COST_LIMIT_MINIMUM
    assert amount(reply.charge.net) == "0.10 EUR"
    assert amount(reply.charge.gross) == "0.12 EUR"  # VAT 0.021 -> 0.02


async def test_quote_and_units_for_amount(priced: rating_pb2_grpc.RatingServiceStub) -> None:
    at = stamp(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    quote = await priced.Quote(
        rating_pb2.QuoteRequest(
            account_id="acc_1",
            service="voice",
            destination="+4930123456",
            event_time=at,
            quantity=rating_pb2.Quantity(value=61, unit=rating_pb2.QUANTITY_UNIT_SECOND),
        )
    )
    # Germany 60/60 at 0.15/min peak: 61 s = 2 increments = 0.30 + 0.05 = 0.35; VAT 0.0735.
    assert amount(quote.charge.net) == "0.35 EUR"
    assert amount(quote.charge.gross) == "0.42 EUR"
    # 1.00 EUR gross on a Dutch mobile at peak (0.003/s + 0.05, VAT 21%, cents half-up):
    # 261 s -> net 0.833 -> 0.83, VAT 0.17, gross 1.00; 262 s -> 0.84 + 0.18 = 1.02.
    units = await priced.UnitsForAmount(
        rating_pb2.UnitsForAmountRequest(
            account_id="acc_1",
            service="voice",
            destination="+31612345678",
            event_time=at,
            amount=money_pb2.Money(currency_code="EUR", units=1),
        )
    )
    assert units.quantity.value == 261
    assert units.quantity.unit == rating_pb2.QUANTITY_UNIT_SECOND
    assert amount(units.charge.gross) == "1.00 EUR"


async def test_batch_and_stream_answer_each_event(
    priced: rating_pb2_grpc.RatingServiceStub,
) -> None:
    monday = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    events = [
        event("b1", "+12125550199", monday, 60),  # US 0.001/s: 0.06 + 0.05 = 0.11 net
        event("b2", "+12125550199", monday, 60, account="acc_unknown"),
        event("b3", "+81312345678", monday, 60),  # no tariff for Japan
    ]
    reply = await priced.RateEvents(rating_pb2.RateEventsRequest(events=events))
    outcomes = [
        (r.index, r.record_id, r.error.reason or amount(r.charge.net)) for r in reply.results
    ]
    assert outcomes == [(0, "b1", "0.11 EUR"), (1, "b2", "UNKNOWN_ACCOUNT"), (2, "b3", "NO_TARIFF")]
    answers = [
        r.result
        async for r in priced.StreamRateEvents(
            iter([rating_pb2.StreamRateEventsRequest(event=e) for e in events])
        )
    ]
    assert [(a.index, a.error.reason or amount(a.charge.net)) for a in answers] == [
        (0, "0.11 EUR"),
        (1, "UNKNOWN_ACCOUNT"),
        (2, "NO_TARIFF"),
    ]


async def test_bad_input_names_every_field(priced: rating_pb2_grpc.RatingServiceStub) -> None:
    bad = rating_pb2.UsageEvent(
        record_id="x" * 200,
        service="",
        destination="1" * 80,
        quantity=rating_pb2.Quantity(value=-5, unit=9),  # type: ignore[arg-type]
        base_amount=money_pb2.Money(units=1),
    )
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await priced.RateEvent(rating_pb2.RateEventRequest(event=bad))
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.fields == {
        "event.record_id",
        "event.account_id",
        "event.service",
        "event.destination",
        "event.event_time",
        "event.quantity.value",
        "event.quantity.unit",
        "event.base_amount.currency_code",
    }
    with pytest.raises(grpc.aio.AioRpcError) as batch_failure:
        await priced.RateEvents(
            rating_pb2.RateEventsRequest(
                events=[event("ok", "+31612345678", datetime(2026, 3, 2, tzinfo=UTC), 1), bad]
            )
        )
    assert "events[1].account_id" in details_of(batch_failure.value).fields
    with pytest.raises(grpc.aio.AioRpcError) as quote_failure:
        await priced.UnitsForAmount(rating_pb2.UnitsForAmountRequest(service="voice"))
    assert details_of(quote_failure.value).fields == {"amount", "account_id"}


async def test_unit_that_does_not_match_the_product_is_refused(
    priced: rating_pb2_grpc.RatingServiceStub,
) -> None:
    wrong = event("u1", "+31612345678", datetime(2026, 3, 2, 9, tzinfo=UTC), 10)
    wrong.quantity.unit = rating_pb2.QUANTITY_UNIT_BYTE
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await priced.RateEvent(rating_pb2.RateEventRequest(event=wrong))
    details = details_of(failure.value)
    assert details.reason == "UNIT_MISMATCH"
    assert details.fields == {"quantity.unit"}
