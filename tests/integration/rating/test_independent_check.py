"""An independent check: a catalog and CDRs written for this test only, costs by hand.

Catalog (GBP, amounts to the penny, half-up unless said): numbering of the UK
(0 national, 00 international). Bands in the account's zone (Europe/London):
``day`` Mon-Fri 08:00-19:00, ``weekend`` Sat-Sun and the 4 May 2026 bank holiday,
``evening`` otherwise. UK clocks go forward on Sunday 29 March 2026 (01:00 UTC):
GMT (UTC+0) before, BST (UTC+1) after.

* uk-fixed: 0.10 to connect, 60/30: first minute day 0.12 / evening 0.06 /
  weekend 0.02, each further 30 s day 0.05 / evening 0.03 / weekend 0.01. The
  first increment is priced in the band the call starts in.
* uk-mobile: per second (1/1) at 0.30 / 0.15 / 0.06 a minute, min 0.08, max 2.00.
* fr: 30/6, 0.09 for the first 30 s, 0.013 per further 6 s, rounded up.
* sms 0.04 each; data graduated per started MB (10^6 bytes): MB 1-100 at 0.01,
  beyond at 0.004.
* Tax region GB: VAT 20 % exclusive. GB-INC: VAT 20 % inclusive plus a 5 % levy
  exclusive on the net.

| id   | what                           | by hand                         | net  | tax  | gross |
|------|--------------------------------|---------------------------------|------|------|-------|
| c1   | UK fixed, Tue 10:00, 60 s      | 0.12 + 0.10                     | 0.22 | 0.04 | 0.26  |
| c2   | same, 61 s                     | 0.12 + 1 x 0.05 + 0.10          | 0.27 | 0.05 | 0.32  |
| c3   | same, 90 s                     | 0.12 + 1 x 0.05 + 0.10          | 0.27 | 0.05 | 0.32  |
| c4   | same, 91 s                     | 0.12 + 2 x 0.05 + 0.10          | 0.32 | 0.06 | 0.38  |
| c5   | Fri 27/3 18:59:30 GMT, 150 s   | day 0.12, eve 3 x 0.03, + 0.10  | 0.31 | 0.06 | 0.37  |
| c6   | Mon 30/3 07:59 BST, 120 s      | eve 0.06, day 2 x 0.05, + 0.10  | 0.26 | 0.05 | 0.31  |
| c7   | Mon 4/5 10:00 (holiday), 60 s  | weekend 0.02 + 0.10             | 0.12 | 0.02 | 0.14  |
| m1   | mobile, Sat 12:00, 20 s        | 20 x 0.001 -> min 0.08          | 0.08 | 0.02 | 0.10  |
| m2   | mobile, Tue 11:00, 3600 s      | 3600 x 0.005 -> max 2.00        | 2.00 | 0.40 | 2.40  |
| m3   | mobile, Tue 20:00, 77 s        | 77 x 0.0025 = 0.1925            | 0.19 | 0.04 | 0.23  |
| f1   | France, 30 s                   | 0.09                            | 0.09 | 0.02 | 0.11  |
| f2   | France, 31 s                   | 0.103, up -> 0.11               | 0.11 | 0.02 | 0.13  |
| s1   | SMS                            | 0.04                            | 0.04 | 0.01 | 0.05  |
| d1   | data 150,000,000 B             | 100 x 0.01 + 50 x 0.004         | 1.20 | 0.24 | 1.44  |
| d2   | data 2,500,001 B after d1      | (153-150) x 0.004               | 0.01 | 0.00 | 0.01  |
| i1   | GB-INC, UK fixed, 60 s         | see below                       | 0.18 | 0.05 | 0.23  |

i1: 0.22 includes VAT 0.22 x 20/120 = 0.0367 -> 0.04, so the net is 0.18; the
levy is 5 % of 0.18 = 0.009 -> 0.01; gross 0.22 + 0.01 = 0.23, tax 0.04 + 0.01.

The second half: broken and hostile files found while checking. Each gives a clear
reject or file failure with its reason and line, never an internal error or a
silent drop.
"""

from __future__ import annotations

import codecs
from datetime import UTC, datetime
from decimal import Decimal

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.type import money_pb2

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.clock import ManualClock
from services.common.grpc_errors import details_of
from services.rating.entrypoints.main import RunningRating
from tests.integration.rating.conftest import add_account, upload

CATALOG = """\
numbering: {country_code: "44", international_prefix: "00", national_prefix: "0"}
products:
  - {code: voice, unit: second}
  - {code: sms, unit: event}
  - {code: data, unit: byte}
  - {code: api, unit: event}
  - {code: pay, unit: unit}
destinations:
  - {name: UK, prefixes: ["44"]}
  - {name: UK Mobile, prefixes: ["447"]}
  - {name: FR, prefixes: ["33"]}
calendars:
  - code: uk
    holidays: [{date: 2026-05-04, band: weekend}]
time_bands:
  - code: uk-week
    default_band: evening
    calendar: uk
    bands:
      - {name: weekend, days: [sat, sun], from: "00:00", to: "00:00"}
      - {name: day, days: [mon, tue, wed, thu, fri], from: "08:00", to: "19:00"}
tax_regions:
  - code: GB
    taxes: [{code: VAT, name: VAT 20%, percent: "20"}]
  - code: GB-INC
    taxes:
      - {code: VAT, name: VAT 20% included, percent: "20", inclusive: true}
      - {code: LEVY, name: Levy 5%, percent: "5"}
plans:
  - code: indie
    currency: GBP
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        time_bands: uk-week
        rates:
          - id: uk-fixed
            service: voice
            destination: UK
            connection_fee: "0.10"
            first_increment: 60
            next_increment: 30
            prices:
              day: {first: "0.12", next: "0.05"}
              evening: {first: "0.06", next: "0.03"}
              weekend: {first: "0.02", next: "0.01"}
          - id: uk-mobile
            service: voice
            destination: UK Mobile
            first_increment: 1
            next_increment: 1
            per_minute: {day: "0.30", evening: "0.15", weekend: "0.06"}
            min_cost: "0.08"
            max_cost: "2.00"
          - id: fr
            service: voice
            destination: FR
            first_increment: 30
            next_increment: 6
            prices: {"*": {first: "0.09", next: "0.013"}}
            rounding: up
          - {id: sms, service: sms, model: {kind: per_unit, price: "0.04"}}
          - id: data
            service: data
            model:
              kind: graduated
              unit_size: 1000000
              tiers: [{up_to: 100, unit_price: "0.01"}, {unit_price: "0.004"}]
  - code: mixed
    currency: GBP
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        rates:
          - {id: sms-pack, service: sms, model: {kind: package, size: 100, price: "5.00"}}
          - id: api
            service: api
            model:
              kind: volume
              tiers:
                - {up_to: 10, unit_price: "1.00"}
                - {up_to: 100, unit_price: "0.50"}
                - {unit_price: "0.25"}
          - {id: pay, service: pay, model: {kind: percentage, percent: "2.9", fixed_fee: "0.30"}}
packages:
  - code: vip
    plan: indie
    customer: cus_vip
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        rates:
          - id: vip-uk
            service: voice
            destination: UK
            first_increment: 60
            next_increment: 60
            prices: {"*": {first: "0.05", next: "0.05"}}
"""

HEADER = "record_id,account_id,service,destination,event_time,quantity\n"
CDRS = """\
c1,acc_lon,voice,020 7946 0000,2026-03-03T10:00:00Z,60
c2,acc_lon,voice,020 7946 0001,2026-03-03T10:05:00Z,61
c3,acc_lon,voice,020 7946 0002,2026-03-03T10:10:00Z,90
c4,acc_lon,voice,+44 20 7946 0003,2026-03-03T10:15:00Z,91
c5,acc_lon,voice,02079460004,2026-03-27T18:59:30Z,150
c6,acc_lon,voice,02079460005,2026-03-30T06:59:00Z,120
c7,acc_lon,voice,02079460006,2026-05-04T09:00:00Z,60
m1,acc_lon,voice,07700 900123,2026-03-07T12:00:00Z,20
m2,acc_lon,voice,07700 900124,2026-03-03T11:00:00Z,3600
m3,acc_lon,voice,07700 900125,2026-03-03T20:00:00Z,77
f1,acc_lon,voice,0033 1 42 86 82 00,2026-03-03T10:00:00Z,30
f2,acc_lon,voice,+33142868201,2026-03-03T10:01:00Z,31
s1,acc_lon,sms,07700900126,2026-03-03T10:02:00Z,1
d1,acc_lon,data,,2026-03-04T10:00:00Z,150000000
d2,acc_lon,data,,2026-03-05T10:00:00Z,2500001
i1,acc_inc,voice,020 7946 0007,2026-03-03T10:00:00Z,60
"""

BY_HAND = {  # record: (net, tax, gross)
    "c1": ("0.22", "0.04", "0.26"),
    "c2": ("0.27", "0.05", "0.32"),
    "c3": ("0.27", "0.05", "0.32"),
    "c4": ("0.32", "0.06", "0.38"),
    "c5": ("0.31", "0.06", "0.37"),
    "c6": ("0.26", "0.05", "0.31"),
    "c7": ("0.12", "0.02", "0.14"),
    "m1": ("0.08", "0.02", "0.10"),
    "m2": ("2.00", "0.40", "2.40"),
    "m3": ("0.19", "0.04", "0.23"),
    "f1": ("0.09", "0.02", "0.11"),
    "f2": ("0.11", "0.02", "0.13"),
    "s1": ("0.04", "0.01", "0.05"),
    "d1": ("1.20", "0.24", "1.44"),
    "d2": ("0.01", "0.00", "0.01"),
    "i1": ("0.18", "0.05", "0.23"),
}


def text(value: money_pb2.Money) -> str:
    return str((Decimal(value.units) + Decimal(value.nanos) / 10**9).quantize(Decimal("0.01")))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 5, 20, 12, 0, tzinfo=UTC))


@pytest.fixture
async def checked(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> rating_pb2_grpc.RatingServiceStub:
    await stub.ApplyCatalog(rating_pb2.ApplyCatalogRequest(document=CATALOG))
    add_account(rating, "acc_lon", plan="indie", time_zone="Europe/London", tax_region="GB")
    add_account(rating, "acc_inc", plan="indie", time_zone="Europe/London", tax_region="GB-INC")
    return stub


async def rated(stub: rating_pb2_grpc.RatingServiceStub) -> dict[str, tuple[str, str, str]]:
    reply = await stub.ListRatedUsage(rating_pb2.ListRatedUsageRequest(page_size=1000))
    return {u.record_id: (text(u.net), text(u.tax), text(u.amount)) for u in reply.rated_usage}


async def test_costs_computed_by_hand_match_the_import(
    checked: rating_pb2_grpc.RatingServiceStub,
) -> None:
    imported = await upload(checked, "check.csv", (HEADER + CDRS).encode(), chunk=1024)
    assert (imported.rated, imported.rejected) == (len(BY_HAND), 0), imported
    assert await rated(checked) == BY_HAND
    [total] = imported.rated_totals
    assert text(total) == str(sum(Decimal(g) for _, _, g in BY_HAND.values()))


async def test_band_split_and_dst_are_explained_in_the_breakdown(
    checked: rating_pb2_grpc.RatingServiceStub,
) -> None:
    await upload(checked, "check.csv", (HEADER + CDRS).encode(), chunk=1024)
    reply = await checked.ListRatedUsage(rating_pb2.ListRatedUsageRequest(page_size=1000))
    charges = {u.record_id: u.charge for u in reply.rated_usage}
    assert [(s.band, s.seconds, s.increments) for s in charges["c5"].segments] == [
        ("day", 30, 0),
        ("evening", 120, 3),
    ]
    # 07:59 BST: one minute of evening, then the day band from 08:00 BST (07:00Z).
    assert [(s.band, s.seconds, s.increments) for s in charges["c6"].segments] == [
        ("evening", 60, 0),
        ("day", 60, 2),
    ]
    assert charges["c6"].segments[1].start_time.ToDatetime(tzinfo=UTC) == datetime(
        2026, 3, 30, 7, 0, tzinfo=UTC
    )
    assert [s.band for s in charges["c7"].segments] == ["weekend"]
    assert charges["m1"].cost_limit == rating_pb2.COST_LIMIT_MINIMUM
    assert charges["m2"].cost_limit == rating_pb2.COST_LIMIT_MAXIMUM
    assert text(charges["c1"].connection_fee) == "0.10"
    assert [(t.code, t.inclusive, text(t.amount)) for t in charges["i1"].taxes] == [
        ("VAT", True, "0.04"),
        ("LEVY", False, "0.01"),
    ]


async def test_the_same_cdrs_in_other_encodings_and_line_ends_rate_the_same(
    checked: rating_pb2_grpc.RatingServiceStub,
) -> None:
    # A UTF-8 BOM and Windows line ends are what spreadsheet exports write.
    exported = codecs.BOM_UTF8 + (HEADER + CDRS).replace("\n", "\r\n").encode()
    imported = await upload(checked, "export.csv", exported, chunk=1000)
    assert (imported.rated, imported.rejected) == (len(BY_HAND), 0)
    assert await rated(checked) == BY_HAND


# -- broken and hostile files --------------------------------------------------------

LINE = "{id},acc_lon,voice,02079460000,{when},{quantity}\n"


def rows(*cells: tuple[str, str, str]) -> bytes:
    body = "".join(LINE.format(id=i, when=w, quantity=q) for i, w, q in cells)
    return (HEADER + body).encode()


async def outcome(
    stub: rating_pb2_grpc.RatingServiceStub, name: str, data: bytes
) -> tuple[rating_pb2.ImportFile, dict[int, tuple[str, str]]]:
    imported = await upload(stub, name, data, chunk=4096)
    listed = await stub.ListRejects(
        rating_pb2.ListRejectsRequest(file_id=imported.file_id, page_size=100)
    )
    return imported, {r.line: (r.reason, r.message) for r in listed.rejects}


async def test_absurd_event_times_are_rejected_per_line(
    checked: rating_pb2_grpc.RatingServiceStub,
) -> None:
    # Year 9999 used to overflow when placed in the account's bill cycle: the whole
    # import ended in an internal error.
    imported, rejects = await outcome(
        checked,
        "times.csv",
        rows(
            ("t1", "9999-12-31T23:59:59Z", "60"),
            ("t2", "0001-01-01T00:00:00Z", "60"),
            ("t3", "2026-02-30T10:00:00Z", "60"),
            ("t4", "NaN", "60"),
            ("t5", "1772532000", "60"),  # epoch seconds: 2026-03-03 10:00Z, rated
            ("t6", "2026-03-03T10:00:00+14:00", "60"),  # 2 March 20:00Z, evening
        ),
    )
    assert (imported.records, imported.rated, imported.rejected) == (6, 2, 4)
    assert {line: reason for line, (reason, _) in rejects.items()} == {
        2: "INVALID_VALUE",
        3: "INVALID_VALUE",
        4: "INVALID_VALUE",
        5: "INVALID_VALUE",
    }
    assert "1900-2199" in rejects[2][1]


async def test_quantities_a_switch_never_writes_are_rejected(
    checked: rating_pb2_grpc.RatingServiceStub,
) -> None:
    # int() alone took "1_000" as 1000 seconds and "٣" (Arabic-Indic three) as 3.
    when = "2026-03-03T10:00:00Z"
    imported, rejects = await outcome(
        checked,
        "quantities.csv",
        rows(("q1", when, "1_000"), ("q2", when, "٣"), ("q3", when, "1e3"), ("q4", when, "+60")),
    )
    assert (imported.rated, imported.rejected) == (1, 3)
    assert {line: reason for line, (reason, _) in rejects.items()} == {
        2: "INVALID_VALUE",
        3: "INVALID_VALUE",
        4: "INVALID_VALUE",
    }


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (codecs.BOM_UTF16_LE + (HEADER + CDRS).encode("utf-16-le"), "UTF-16 or UTF-32"),
        ((HEADER + CDRS).encode("utf-16-be"), "NUL bytes (a UTF-16 file?)"),
        # Lines ending in CR alone used to crash the CSV header parser.
        ((HEADER + CDRS).replace("\n", "\r").encode(), "carriage return"),
    ],
    ids=["utf16-bom", "utf16-no-bom", "cr-line-ends"],
)
async def test_files_in_another_encoding_or_line_ending_fail_loudly_saying_why(
    checked: rating_pb2_grpc.RatingServiceStub, data: bytes, said: str
) -> None:
    imported, rejects = await outcome(checked, "export.csv", data)
    assert imported.status == rating_pb2.IMPORT_STATUS_FAILED
    assert imported.failed_loudly
    assert imported.failure_message.startswith("line 1: ")
    assert said in imported.failure_message
    assert (imported.records, imported.rated, rejects) == (0, 0, {})


async def test_latin1_and_nul_lines_are_rejected_with_the_bytes_escaped(
    checked: rating_pb2_grpc.RatingServiceStub,
) -> None:
    data = (
        rows(("ok", "2026-03-03T10:00:00Z", "60"))
        + "l1,acc_lon,voice,02079460000,2026-03-03T10:00:00Z,60,Zoë\n".encode("latin-1")
        + b"n1,acc_lon,voice,020\x0079460000,2026-03-03T10:00:00Z,60\n"
    )
    imported, rejects = await outcome(checked, "mixed.csv", data)
    assert (imported.rated, imported.rejected) == (1, 2)
    assert {line: reason for line, (reason, _) in rejects.items()} == {
        3: "ENCODING",
        4: "ENCODING",
    }
    assert rejects[4][1] == "contains NUL bytes"


async def test_a_quote_for_the_year_9999_is_a_bad_argument_not_a_crash(
    checked: rating_pb2_grpc.RatingServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await checked.Quote(
            rating_pb2.QuoteRequest(
                account_id="acc_lon",
                service="data",
                event_time=_stamp(datetime(9999, 12, 31, 23, 59, tzinfo=UTC)),
                quantity=rating_pb2.Quantity(value=1, unit=rating_pb2.QUANTITY_UNIT_BYTE),
            )
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(failure.value).fields == {"event_time"}


def _stamp(value: datetime) -> timestamp_pb2.Timestamp:
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(value)
    return result


async def test_hostile_json_lines_are_rejected_per_line(
    checked: rating_pb2_grpc.RatingServiceStub,
) -> None:
    def record(record_id: str, quantity: str) -> str:
        return (
            f'{{"record_id":"{record_id}","account_id":"acc_lon","service":"voice",'
            f'"destination":"02079460000","event_time":"2026-03-03T10:00:00Z",'
            f'"quantity":{quantity}}}'
        )

    lines = [
        "\ufeff" + record("j1", "60"),  # a BOM before the first line: rated
        "[" * 8000 + "]" * 8000,  # within the line limit; crashed the parser's stack
        record("j2", "60.5"),
        record("j3", "true"),
        record("j4", "-5"),
        "[1, 2, 3]",
    ]
    options = rating_pb2.UsageFileOptions(format=rating_pb2.USAGE_FILE_FORMAT_JSONL)
    imported = await upload(checked, "x.jsonl", ("\n".join(lines) + "\n").encode(), options)
    listed = await checked.ListRejects(
        rating_pb2.ListRejectsRequest(file_id=imported.file_id, page_size=100)
    )
    assert (imported.records, imported.rated, imported.rejected) == (6, 1, 5)
    assert {r.line: (r.reason, r.message) for r in listed.rejects} == {
        2: ("MALFORMED_LINE", "not valid JSON: nested too deeply"),
        3: ("INVALID_VALUE", "quantity '60.5' is not a whole number"),
        4: ("INVALID_VALUE", "quantity must be a string or a number"),
        5: ("NEGATIVE_QUANTITY", "quantity -5 is negative"),
        6: ("MALFORMED_LINE", "a JSON line must be an object"),
    }
    assert (await rated(checked))["j1"] == BY_HAND["c1"]


MORE_HEADER = "record_id,account_id,service,destination,event_time,quantity,unit,amount\n"
MORE_CDRS = """\
x1,acc_mix,sms,,2026-03-03T10:00:00Z,30,,
x2,acc_mix,sms,,2026-03-04T10:00:00Z,60,,
x3,acc_mix,sms,,2026-03-05T10:00:00Z,20,,
a1,acc_mix,api,,2026-03-03T10:00:00Z,8,,
a2,acc_mix,api,,2026-03-04T10:00:00Z,5,,
p1,acc_mix,pay,,2026-03-03T10:00:00Z,1,,100.00
v1,acc_vip,voice,020 7946 0100,2026-03-03T10:00:00Z,61,,
v2,acc_vip,voice,07700 900200,2026-03-03T10:00:00Z,100,,
h1,acc_lon,voice,020 7946 0101,2026-05-04T22:59:30Z,60,,
"""
# Worked by hand (GB: VAT 20 % exclusive):
# x1-x3: packages of 100 SMS for 5.00 on the cycle total: 30 starts package 1 (5.00),
#   90 is still inside it (0.00), 110 starts package 2 (5.00). VAT 1.00, gross 6.00.
# a1-a2: volume tiers on the cycle total: 8 calls at 1.00 = 8.00; 13 calls put the
#   whole cycle at 0.50 = 6.50, so a2 is 6.50 - 8.00 = -1.50 (a credit); VAT -0.30.
# p1: 2.9 % of 100.00 + 0.30 = 3.20; VAT 0.64; gross 3.84.
# v1: customer cus_vip's package: UK 60/60 at 0.05, no connection fee: 61 s = 2 x 0.05.
# v2: the package has no mobile rate; the plan's longer prefix (447) wins: 100 x 0.005.
# h1: 23:59:30 BST on the 4 May holiday (weekend band) into Tuesday 00:00 (evening):
#   the first minute at the starting band's 0.02 covers both parts, + 0.10.
MORE_BY_HAND = {
    "x1": ("5.00", "1.00", "6.00"),
    "x2": ("0.00", "0.00", "0.00"),
    "x3": ("5.00", "1.00", "6.00"),
    "a1": ("8.00", "1.60", "9.60"),
    "a2": ("-1.50", "-0.30", "-1.80"),
    "p1": ("3.20", "0.64", "3.84"),
    "v1": ("0.10", "0.02", "0.12"),
    "v2": ("0.50", "0.10", "0.60"),
    "h1": ("0.12", "0.02", "0.14"),
}


async def test_packages_volume_tiers_percentage_and_customer_package_by_hand(
    rating: RunningRating, checked: rating_pb2_grpc.RatingServiceStub
) -> None:
    add_account(rating, "acc_mix", plan="mixed", time_zone="Europe/London", tax_region="GB")
    add_account(
        rating,
        "acc_vip",
        plan="indie",
        time_zone="Europe/London",
        tax_region="GB",
        customer_id="cus_vip",
    )
    imported = await upload(checked, "more.csv", (MORE_HEADER + MORE_CDRS).encode(), chunk=1024)
    assert (imported.rated, imported.rejected) == (len(MORE_BY_HAND), 0), imported
    assert await rated(checked) == MORE_BY_HAND
    reply = await checked.ListRatedUsage(rating_pb2.ListRatedUsageRequest(page_size=100))
    h1 = next(u.charge for u in reply.rated_usage if u.record_id == "h1")
    assert [(s.band, s.seconds, s.increments) for s in h1.segments] == [
        ("weekend", 30, 0),
        ("evening", 30, 0),
    ]
    v1 = next(u.charge for u in reply.rated_usage if u.record_id == "v1")
    assert (v1.price_package, v1.rate_id) == ("vip", "vip-uk")
