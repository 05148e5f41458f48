"""Usage import over gRPC with well-formed, malformed and hostile files (RAT-6, RAT-7).

Costs are the worked examples of samples/cdr/conference-legs.csv with samples/catalog.yaml
(account in Europe/Amsterdam, VAT 21% exclusive, Monday 2 March 2026 at 10:00 local):

| leg  | destination      | seconds | rating                          | net  | VAT  | gross |
|------|------------------|---------|---------------------------------|------|------|-------|
| leg1 | NL landline      | 1800    | 30 x 0.10 + 0.05                | 3.05 | 0.64 | 3.69  |
| leg2 | NL mobile        | 1750    | 1750 x 0.003 + 0.05             | 5.30 | 1.11 | 6.41  |
| leg3 | DE landline      | 1795    | 30 x 0.15 + 0.05 (60/60)        | 4.55 | 0.96 | 5.51  |
| leg4 | US               | 1200    | 1200 x 0.001 + 0.05             | 1.25 | 0.26 | 1.51  |
| leg5 | Japan            | 1740    | no tariff: rejected             |      |      |       |
| rec  | recording        | 1800    | 30 x 0.02                       | 0.60 | 0.13 | 0.73  |

Total gross 17.85 EUR.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.events import EventEnvelope, stream_for
from services.common.grpc_errors import details_of
from services.rating.entrypoints.main import RunningRating
from tests.integration.rating.conftest import SAMPLES, add_account, apply_sample_catalog, upload

SAMPLE = (SAMPLES / "cdr" / "conference-legs.csv").read_bytes()
HEADER = b"record_id,account_id,service,destination,event_time,quantity\n"


def good_rows(count: int, prefix: str = "ok", account: str = "acc_demo") -> bytes:
    """`count` 60 s landline calls at peak: 0.05 + 0.10 = 0.15 net, 0.18 gross each."""
    return b"".join(
        f"{prefix}-{i},{account},voice,0205550{i:03d},2026-03-02T09:{i % 60:02d}:00Z,60\n".encode()
        for i in range(count)
    )


@pytest.fixture
async def ready(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> rating_pb2_grpc.RatingServiceStub:
    await apply_sample_catalog(stub)
    add_account(rating, "acc_demo")
    return stub


def gross(imported: rating_pb2.ImportFile) -> list[str]:
    return [f"{m.units + m.nanos / 1e9:.2f} {m.currency_code}" for m in imported.rated_totals]


async def rated(stub: rating_pb2_grpc.RatingServiceStub, **filters) -> dict[str, str]:
    reply = await stub.ListRatedUsage(rating_pb2.ListRatedUsageRequest(page_size=1000, **filters))
    return {u.record_id: f"{u.amount.units + u.amount.nanos / 1e9:.2f}" for u in reply.rated_usage}


async def test_sample_conference_legs_are_rated_and_the_bad_leg_rejected(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    imported = await upload(ready, "conference-legs.csv", SAMPLE)
    assert imported.status == rating_pb2.IMPORT_STATUS_COMPLETED  # 6 records: below the minimum
    assert (imported.records, imported.rated, imported.rejected) == (6, 5, 1)
    assert gross(imported) == ["17.85 EUR"]
    assert await rated(ready, account_id="acc_demo") == {
        "conf-0042-leg1": "3.69",
        "conf-0042-leg2": "6.41",
        "conf-0042-leg3": "5.51",
        "conf-0042-leg4": "1.51",
        "conf-0042-rec": "0.73",
    }
    rejects = await ready.ListRejects(rating_pb2.ListRejectsRequest(file_id=imported.file_id))
    [reject] = rejects.rejects
    assert (reject.line, reject.record_id, reject.reason) == (6, "conf-0042-leg5", "NO_TARIFF")
    assert reject.raw_record.startswith("conf-0042-leg5,acc_demo,voice,+81")
    assert reject.file_name == "conference-legs.csv"


async def test_hostile_file_every_bad_line_kept_with_reason_and_the_file_fails_loudly(
    rating: RunningRating, ready: rating_pb2_grpc.RatingServiceStub
) -> None:
    hostile = (
        HEADER
        + good_rows(20)  # lines 2-21
        + "latin1,acc_demo,voice,020 555 0101,2026-03-02T09:00:00Z,60,caf\xe9\n".encode(
            "latin-1"
        )  # 22 encoding
        + b"short,acc_demo,voice\n"  # 23 missing
        + b"huge,acc_demo,voice,"
        + b"9" * 5000
        + b",2026-03-02T09:00:00Z,60\n"  # 24 field
        + b"long,"
        + b"x" * 40_000
        + b"\n"  # 25 line
        + b"neg,acc_demo,voice,0205550101,2026-03-02T09:00:00Z,-30\n"  # 26 negative
        + b"future,acc_demo,voice,0205550101,2026-04-02T09:00:00Z,30\n"  # 27 future
        + b"stranger,acc_nobody,voice,0205550101,2026-03-02T09:00:00Z,30\n"  # 28 account
        + b'quote,acc_demo,voice,"0205550101,2026-03-02T09:00:00Z,30\n'  # 29 malformed
        + b"\n"  # 30 blank
        + b"when,acc_demo,voice,0205550101,yesterday,30\n"  # 31 bad time
        + b"ok-0,acc_demo,voice,0205550101,2026-03-02T09:00:00Z,30\n"  # 32 duplicate
        + b"\x00\xff\xfe garbage \x80\n"  # 33 binary
    )
    imported = await upload(rating_stub := ready, "hostile.csv", hostile, chunk=4096)
    assert imported.status == rating_pb2.IMPORT_STATUS_FAILED
    assert imported.failed_loudly
    assert "above the threshold of 5%" in imported.failure_message
    assert (imported.rated, imported.rejected) == (20, 11)
    reasons = {c.reason: c.count for c in imported.rejects_by_reason}
    assert reasons == {
        "ENCODING": 2,
        "MISSING_FIELD": 1,
        "FIELD_TOO_LONG": 1,
        "LINE_TOO_LONG": 1,
        "NEGATIVE_QUANTITY": 1,
        "FUTURE_EVENT": 1,
        "UNKNOWN_ACCOUNT": 1,
        "MALFORMED_LINE": 1,
        "INVALID_VALUE": 1,
        "DUPLICATE": 1,
    }
    listed = await rating_stub.ListRejects(
        rating_pb2.ListRejectsRequest(file_id=imported.file_id, page_size=5)
    )
    assert len(listed.rejects) == 5
    assert listed.next_page_token
    rest = await rating_stub.ListRejects(
        rating_pb2.ListRejectsRequest(file_id=imported.file_id, page_token=listed.next_page_token)
    )
    by_line = {r.line: r for r in [*listed.rejects, *rest.rejects]}
    assert sorted(by_line) == [22, 23, 24, 25, 26, 27, 28, 29, 31, 32, 33]
    assert by_line[22].reason == "ENCODING"
    assert "\\xe9" in by_line[22].raw_record
    assert len(by_line[25].raw_record) <= 4096  # a hostile line is not stored whole
    only_future = await rating_stub.ListRejects(
        rating_pb2.ListRejectsRequest(reason="FUTURE_EVENT")
    )
    assert [r.line for r in only_future.rejects] == [27]
    # The alerts went out through the outbox.
    await rating.app.relay.relay_once()
    entries: Any = await rating.app.redis.xrange(stream_for("rating"))
    types = [EventEnvelope.from_json(fields[b"envelope"]).event_type for _, fields in entries]
    assert {"UsageImported", "UsageRejected", "UsageImportFailed"} <= set(types)
    assert "UsageRated" not in types  # a failed file charges nothing (issue 9 item 7)


async def test_header_without_required_columns_fails_the_file_then_a_mapping_fixes_it(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    data = b"id,acct,svc,number,start,secs\nm1,acc_demo,voice,0205550101,2026-03-02T09:00:00Z,60\n"
    failed = await upload(ready, "mapped.csv", data)
    assert failed.status == rating_pb2.IMPORT_STATUS_FAILED
    assert "lacks required columns" in failed.failure_message
    assert failed.records == 0
    mapping = rating_pb2.UsageFileOptions(
        columns={
            "record_id": "id",
            "account_id": "acct",
            "service": "svc",
            "destination": "number",
            "event_time": "start",
            "quantity": "secs",
        }
    )
    fixed = await upload(ready, "mapped.csv", data, mapping)
    assert fixed.status == rating_pb2.IMPORT_STATUS_COMPLETED
    assert fixed.rated == 1
    assert gross(fixed) == ["0.18 EUR"]


async def test_records_are_deduplicated_across_files_and_a_file_is_never_rated_twice(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    first = await upload(ready, "day1.csv", HEADER + good_rows(3))
    assert first.rated == 3
    again = await upload(ready, "day1-copy.csv", HEADER + good_rows(3))
    assert again.duplicate_of == first.file_id
    assert again.rated == 3
    overlap = await upload(ready, "day2.csv", HEADER + good_rows(4))  # ok-0..2 seen, ok-3 new
    assert (overlap.rated, overlap.rejected) == (1, 3)
    assert {c.reason: c.count for c in overlap.rejects_by_reason} == {"DUPLICATE": 3}
    assert len(await rated(ready, account_id="acc_demo")) == 4


async def test_import_is_idempotent_by_request_id(ready: rating_pb2_grpc.RatingServiceStub) -> None:
    first = await upload(ready, "a.csv", HEADER + good_rows(2), request_id="req-1")
    replay = await upload(ready, "a.csv", HEADER + good_rows(2), request_id="req-1")
    assert replay.file_id == first.file_id
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await upload(ready, "b.csv", HEADER + good_rows(5), request_id="req-1")
    assert details_of(failure.value).fields == {"request_id"}


async def test_asterisk_master_csv_rates_answered_calls_by_billsec(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    lines = [
        # accountcode,src,dst,dcontext,clid,channel,dstchannel,lastapp,lastdata,start,answer,
        # end,duration,billsec,disposition,amaflags,uniqueid,userfield
        '"acc_demo","2001","0612345678","conf","""Moderator"" <2001>","SIP/2001-01",'
        '"SIP/trunk-02","Dial","SIP/trunk/0612345678,60","2026-03-02 10:00:00",'
        '"2026-03-02 10:00:10","2026-03-02 10:01:10","70","60","ANSWERED","DOCUMENTATION",'
        '"1772442000.1",""',
        '"acc_demo","2002","0205550101","conf","","SIP/2002-03","","Dial","",'
        '"2026-03-02 10:02:00","","2026-03-02 10:02:30","30","0","NO ANSWER","DOCUMENTATION",'
        '"1772442120.2",""',
        '"acc_demo","2003","0205550101","conf","","SIP/2003-04","","Dial","",'
        '"2026-03-02 10:03:00","","2026-03-02 10:03:05","5","0","BUSY","DOCUMENTATION",'
        '"1772442180.3",""',
    ]
    options = rating_pb2.UsageFileOptions(preset="asterisk", source_time_zone="Europe/Amsterdam")
    imported = await upload(ready, "Master.csv", ("\n".join(lines) + "\n").encode(), options)
    assert (imported.rated, imported.skipped, imported.rejected) == (1, 2, 0)
    # 60 s to a Dutch mobile at 10:00:10 local (peak): 60 x 0.003 + 0.05 = 0.23; VAT 0.05.
    assert await rated(ready, account_id="acc_demo") == {"1772442000.1": "0.28"}
    usage = await ready.ListRatedUsage(rating_pb2.ListRatedUsageRequest(account_id="acc_demo"))
    assert usage.rated_usage[0].event_time.ToDatetime(tzinfo=UTC) == datetime(
        2026, 3, 2, 9, 0, 10, tzinfo=UTC
    )


async def test_json_lines_are_imported(ready: rating_pb2_grpc.RatingServiceStub) -> None:
    lines = [
        {
            "record_id": "j1",
            "account_id": "acc_demo",
            "service": "voice",
            "destination": "+12125550199",
            "event_time": "2026-03-02T09:00:00Z",
            "quantity": 100,
        },
        {
            "record_id": "j2",
            "account_id": "acc_demo",
            "service": "voice",
            "destination": "+12125550199",
            "event_time": "2026-03-02T09:00:00Z",
            "quantity": {"nested": True},
        },
        ["not", "an", "object"],
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode() + b"\n{broken\n"
    imported = await upload(ready, "usage.jsonl", data)
    assert imported.rated == 1
    assert {c.reason: c.count for c in imported.rejects_by_reason} == {
        "INVALID_VALUE": 1,
        "MALFORMED_LINE": 2,
    }
    # 100 s to the US: 0.10 + 0.05 = 0.15; VAT 0.0315 -> 0.03.
    assert await rated(ready) == {"j1": "0.18"}


async def test_rejects_are_reprocessed_once_the_account_exists(
    rating: RunningRating, ready: rating_pb2_grpc.RatingServiceStub
) -> None:
    data = HEADER + good_rows(2, prefix="late", account="acc_late")
    imported = await upload(ready, "late.csv", data)
    assert {c.reason: c.count for c in imported.rejects_by_reason} == {"UNKNOWN_ACCOUNT": 2}
    nothing = await ready.ReprocessRejects(
        rating_pb2.ReprocessRejectsRequest(file_id=imported.file_id)
    )
    assert (nothing.attempted, nothing.rated, nothing.still_rejected) == (2, 0, 2)
    add_account(rating, "acc_late")  # the AccountCreated event arrives
    fixed = await ready.ReprocessRejects(
        rating_pb2.ReprocessRejectsRequest(file_id=imported.file_id, reason="UNKNOWN_ACCOUNT")
    )
    assert (fixed.attempted, fixed.rated, fixed.still_rejected) == (2, 2, 0)
    assert await rated(ready, account_id="acc_late") == {"late-0": "0.18", "late-1": "0.18"}
    open_rejects = await ready.ListRejects(
        rating_pb2.ListRejectsRequest(status=rating_pb2.REJECT_STATUS_OPEN)
    )
    assert list(open_rejects.rejects) == []
    done = await ready.ListRejects(
        rating_pb2.ListRejectsRequest(status=rating_pb2.REJECT_STATUS_REPROCESSED)
    )
    assert [(r.line, r.attempts) for r in done.rejects] == [(2, 3), (3, 3)]


async def test_usage_rated_events_carry_the_records(
    rating: RunningRating, ready: rating_pb2_grpc.RatingServiceStub
) -> None:
    await upload(ready, "conference-legs.csv", SAMPLE)
    while await rating.app.relay.relay_once():
        pass
    entries: Any = await rating.app.redis.xrange(stream_for("rating"))
    envelopes = [EventEnvelope.from_json(fields[b"envelope"]) for _, fields in entries]
    records = [r for e in envelopes if e.event_type == "UsageRated" for r in e.payload["records"]]
    assert len(records) == 5
    leg2 = next(r for r in records if r["record_id"] == "conf-0042-leg2")
    assert leg2 == {
        "record_id": "conf-0042-leg2",
        "account_id": "acc_demo",
        "service": "voice",
        "quantity": 1750,
        "unit": "second",
        "amount": {"amount": "6.41", "currency": "EUR"},
        "net": {"amount": "5.30", "currency": "EUR"},
        "tax": {"amount": "1.11", "currency": "EUR"},
        "event_time": "2026-03-02T09:00:05+00:00",
        "plan_code": "conference-pro",
        "plan_version": 1,
        "destination": "+31 6 1234 5678",
    }


async def test_rerating_after_a_tariff_correction_shows_the_difference(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    await upload(ready, "conference-legs.csv", SAMPLE)
    corrected = (
        (SAMPLES / "catalog.yaml")
        .read_text(encoding="utf-8")
        .replace(
            'per_minute: {peak: "0.18", offpeak: "0.12", weekend: "0.06"}',
            'per_minute: {peak: "0.12", offpeak: "0.12", weekend: "0.06"}',
        )
    )
    applied = await ready.ApplyCatalog(rating_pb2.ApplyCatalogRequest(document=corrected))
    assert applied.revision == 2

    def at(value: datetime) -> timestamp_pb2.Timestamp:
        result = timestamp_pb2.Timestamp()
        result.FromDatetime(value)
        return result

    reply = await ready.Rerate(
        rating_pb2.RerateRequest(
            account_id="acc_demo",
            period_start=at(datetime(2026, 3, 1, tzinfo=UTC)),
            period_end=at(datetime(2026, 4, 1, tzinfo=UTC)),
            request_id="rerate-march",
        )
    )
    # leg2 now 1750 x 0.002 + 0.05 = 3.55 net, VAT 0.7455 -> 0.75, gross 4.30 (was 6.41).
    assert (reply.records, reply.changed, reply.failed) == (5, 5, 0)  # all move to revision 2
    [total] = reply.totals
    assert [
        f"{m.units + m.nanos / 1e9:.2f}"
        for m in (total.old_total, total.new_total, total.difference)
    ] == ["17.85", "15.74", "-2.11"]
    assert (await rated(ready))["conf-0042-leg2"] == "4.30"
    history = await ready.ListRatedUsage(
        rating_pb2.ListRatedUsageRequest(include_history=True, account_id="acc_demo")
    )
    leg2 = [
        (u.current, u.charge.catalog_revision, u.rerate_id == reply.rerate_id)
        for u in history.rated_usage
        if u.record_id == "conf-0042-leg2"
    ]
    assert sorted(leg2) == [(False, 1, False), (True, 2, True)]
    replay = await ready.Rerate(
        rating_pb2.RerateRequest(
            account_id="acc_demo",
            period_start=at(datetime(2026, 3, 1, tzinfo=UTC)),
            period_end=at(datetime(2026, 4, 1, tzinfo=UTC)),
            request_id="rerate-march",
        )
    )
    assert replay.rerate_id == reply.rerate_id
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await ready.Rerate(
            rating_pb2.RerateRequest(
                account_id="acc_demo",
                period_start=at(datetime(2026, 4, 1, tzinfo=UTC)),
                period_end=at(datetime(2026, 3, 1, tzinfo=UTC)),
            )
        )
    assert details_of(failure.value).fields == {"period_end"}


async def test_import_options_and_list_filters_are_validated(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    options = rating_pb2.UsageFileOptions(
        preset="cisco",
        columns={"colour": "x"},
        source_time_zone="Mars/Olympus",
        reject_threshold_percent="150",
    )
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await upload(ready, "x.csv", HEADER, options)
    assert details_of(failure.value).fields == {
        "options.preset",
        "options.columns[colour]",
        "options.source_time_zone",
        "options.reject_threshold_percent",
    }
    with pytest.raises(grpc.aio.AioRpcError) as listing:
        await ready.ListRejects(rating_pb2.ListRejectsRequest(page_token="???", page_size=-1))
    assert details_of(listing.value).fields == {"page_token", "page_size"}
    with pytest.raises(grpc.aio.AioRpcError) as reprocess:
        await ready.ReprocessRejects(rating_pb2.ReprocessRejectsRequest(reject_ids=["abc"]))
    assert details_of(reprocess.value).fields == {"reject_ids[0]"}


async def test_concurrent_imports_of_overlapping_files_rate_each_record_once(
    ready: rating_pb2_grpc.RatingServiceStub,
) -> None:
    # Two different files (different checksums) sharing 30 record ids, sent at once.
    first = HEADER + good_rows(30) + good_rows(5, prefix="only-a")
    second = HEADER + good_rows(30) + good_rows(5, prefix="only-b")
    a, b = await asyncio.gather(
        upload(ready, "a.csv", first, chunk=512), upload(ready, "b.csv", second, chunk=512)
    )
    assert a.rated + b.rated == 40  # 30 shared + 5 + 5, each exactly once
    assert a.rejected + b.rejected == 30
    assert {c.reason for f in (a, b) for c in f.rejects_by_reason} <= {"DUPLICATE"}
    # The file that lost the race fails (mostly duplicates): its own 5 are held, not lost.
    assert len(await rated(ready, include_held=True)) == 40
