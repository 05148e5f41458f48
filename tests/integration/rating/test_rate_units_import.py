"""Prices per rate unit through an import (issue 9 item 6): the sample catalog's UK rate is
0.02 EUR a minute charged per second, 0.10 to connect at peak and 0.05 otherwise.

Account in Europe/Amsterdam, VAT 21% exclusive rounded half up, Monday 2 March 2026:

| record | UTC   | band    | s    | net: fee + s x 0.02 / 60             | VAT            | gross |
|--------|-------|---------|------|--------------------------------------|----------------|-------|
| uk-1   | 09:00 | peak    | 61   | 0.10 + 0.020333.. = 0.1203.. -> 0.12 | 0.0252 -> 0.03 | 0.15  |
| uk-2   | 19:00 | offpeak | 59   | 0.05 + 0.019666.. = 0.0696.. -> 0.07 | 0.0147 -> 0.01 | 0.08  |
| uk-3   | 09:10 | peak    | 3600 | 0.10 + 1.20 = 1.30                   | 0.273 -> 0.27  | 1.57  |
| uk-4   | 09:20 | peak    | 75   | 0.10 + 0.025 = 0.125 -> 0.13         | 0.0273 -> 0.03 | 0.16  |
"""

from __future__ import annotations

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.rating.entrypoints.main import RunningRating
from tests.integration.rating.conftest import add_account, apply_sample_catalog, upload

FILE = b"""record_id,account_id,service,destination,event_time,quantity
uk-1,acc_uk,voice,+44 20 7946 0001,2026-03-02T09:00:00Z,61
uk-2,acc_uk,voice,+44 20 7946 0002,2026-03-02T19:00:00Z,59
uk-3,acc_uk,voice,+44 20 7946 0003,2026-03-02T09:10:00Z,3600
uk-4,acc_uk,voice,+44 20 7946 0004,2026-03-02T09:20:00Z,75
"""


def _amount(money: object) -> str:
    units, nanos = getattr(money, "units"), getattr(money, "nanos")  # noqa: B009
    return f"{units + nanos / 1e9:.2f}"


async def test_per_minute_prices_charged_per_second_are_rounded_once_per_call(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> None:
    await apply_sample_catalog(stub)
    add_account(rating, "acc_uk")
    imported = await upload(stub, "uk.csv", FILE)
    assert imported.status == rating_pb2.IMPORT_STATUS_COMPLETED
    assert (imported.records, imported.rated, imported.rejected) == (4, 4, 0)
    reply = await stub.ListRatedUsage(
        rating_pb2.ListRatedUsageRequest(account_id="acc_uk", page_size=100)
    )
    rows = {u.record_id: (_amount(u.net), _amount(u.amount)) for u in reply.rated_usage}
    assert rows == {
        "uk-1": ("0.12", "0.15"),
        "uk-2": ("0.07", "0.08"),
        "uk-3": ("1.30", "1.57"),
        "uk-4": ("0.13", "0.16"),
    }
    [total] = imported.rated_totals
    assert _amount(total) == "1.96"  # 0.15 + 0.08 + 1.57 + 0.16
