"""A failed import changes nothing until an operator acts (issue 9 item 7, ADR 0042).

A file over its reject threshold used to store, publish and so charge its good rows.
Now its rated records are held: no ``UsageRated`` on the stream (so charging debits
nothing and invoicing bills nothing), not listed as rated usage, until the operator
fixes the cause and re-processes the rejects, or releases the file as it is.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.events import EventEnvelope, stream_for
from services.rating.entrypoints.main import RunningRating
from tests.integration.rating.conftest import add_account, apply_sample_catalog, upload

HEADER = b"record_id,account_id,service,destination,event_time,quantity\n"


def rows(count: int, prefix: str, account: str) -> bytes:
    return b"".join(
        f"{prefix}-{i},{account},voice,0205550{i:03d},2026-03-02T09:{i % 60:02d}:00Z,60\n".encode()
        for i in range(count)
    )


async def published(rating: RunningRating) -> list[EventEnvelope]:
    while await rating.app.relay.relay_once():
        pass
    entries: Any = await rating.app.redis.xrange(stream_for("rating"))
    return [EventEnvelope.from_json(fields[b"envelope"]) for _, fields in entries]


def rated_ids(envelopes: list[EventEnvelope]) -> list[str]:
    return sorted(
        r["record_id"]
        for e in envelopes
        if e.event_type == "UsageRated"
        for r in e.payload["records"]
    )


async def listed(stub: rating_pb2_grpc.RatingServiceStub, **filters: Any) -> list[str]:
    reply = await stub.ListRatedUsage(rating_pb2.ListRatedUsageRequest(page_size=500, **filters))
    return sorted(u.record_id for u in reply.rated_usage)


@pytest.fixture
async def ready(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> rating_pb2_grpc.RatingServiceStub:
    await apply_sample_catalog(stub)
    add_account(rating, "acc_demo")
    return stub


async def test_a_failed_file_is_held_until_the_operator_releases_it(
    rating: RunningRating, ready: rating_pb2_grpc.RatingServiceStub
) -> None:
    # 20 good calls and 5 of an unknown account: 5 of 25 = 20% > 5%: the file fails.
    data = HEADER + rows(20, "good", "acc_demo") + rows(5, "bad", "acc_unknown")
    imported = await upload(ready, "held.csv", data, chunk=4096)
    assert imported.status == rating_pb2.IMPORT_STATUS_FAILED
    assert (imported.rated, imported.rejected, imported.held) == (20, 5, True)
    envelopes = await published(rating)
    assert rated_ids(envelopes) == []  # nothing published: nothing debited
    [failed] = [e for e in envelopes if e.event_type == "UsageImportFailed"]
    assert failed.payload["held_records"] == 20
    assert await listed(ready, account_id="acc_demo") == []  # not rated usage yet
    assert len(await listed(ready, account_id="acc_demo", include_held=True)) == 20

    released = await ready.ReleaseImportFile(
        rating_pb2.ReleaseImportFileRequest(file_id=imported.file_id, request_id="rel-1")
    )
    assert not released.file.held
    assert released.file.HasField("release_time")
    envelopes = await published(rating)
    assert rated_ids(envelopes) == [f"good-{i}" for i in sorted(range(20), key=str)]
    assert any(e.event_type == "UsageImportReleased" for e in envelopes)
    assert len(await listed(ready, account_id="acc_demo")) == 20
    # A repeat with the same request id replays; a new release is refused.
    again = await ready.ReleaseImportFile(
        rating_pb2.ReleaseImportFileRequest(file_id=imported.file_id, request_id="rel-1")
    )
    assert again.file.file_id == imported.file_id
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ready.ReleaseImportFile(rating_pb2.ReleaseImportFileRequest(file_id=imported.file_id))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rated_ids(await published(rating)).count("good-0") == 1  # published once


async def test_reprocessing_the_cause_releases_the_file(
    rating: RunningRating, ready: rating_pb2_grpc.RatingServiceStub
) -> None:
    data = HEADER + rows(20, "good", "acc_demo") + rows(5, "late", "acc_late")
    imported = await upload(ready, "late.csv", data, chunk=4096)
    assert imported.held
    add_account(rating, "acc_late")  # the cause is fixed
    fixed = await ready.ReprocessRejects(
        rating_pb2.ReprocessRejectsRequest(file_id=imported.file_id)
    )
    assert fixed.rated == 5
    file = await ready.GetImportFile(rating_pb2.GetImportFileRequest(file_id=imported.file_id))
    assert not file.file.held  # within the threshold now: released by itself
    envelopes = await published(rating)
    ids = rated_ids(envelopes)
    assert len(ids) == 25
    assert len(set(ids)) == 25
    [released] = [e for e in envelopes if e.event_type == "UsageImportReleased"]
    assert released.payload["reason"] == "reprocessed"


async def test_a_file_that_ends_well_publishes_at_once_and_cannot_be_released(
    rating: RunningRating, ready: rating_pb2_grpc.RatingServiceStub
) -> None:
    imported = await upload(ready, "fine.csv", HEADER + rows(3, "fine", "acc_demo"))
    assert imported.status == rating_pb2.IMPORT_STATUS_COMPLETED
    assert not imported.held
    assert rated_ids(await published(rating)) == ["fine-0", "fine-1", "fine-2"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ready.ReleaseImportFile(rating_pb2.ReleaseImportFileRequest(file_id=imported.file_id))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await ready.ReleaseImportFile(rating_pb2.ReleaseImportFileRequest(file_id="imp_nope"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
