"""``reckon usage``: a failed import says plainly that nothing was charged, ``release``
publishes it, ``rated`` lists and exports rated lines, and the import's progress
follows records rated and rejected (issue 9 items 7 and 11)."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
from pathlib import Path

import grpc
import pytest
from rich.console import Console

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.rating.entrypoints.main import RunningRating
from suite.rating_cli import catalog_app, usage_app
from suite.usage_cli import import_with_progress
from tests.integration.rating.conftest import SAMPLES, add_account
from tests.integration.rating.test_cli import cli_env, invoke  # noqa: F401

HEADER = "record_id,account_id,service,destination,event_time,quantity\n"


def usage_file(path: Path, good: int, bad: int) -> Path:
    lines = [
        f"ok-{i},acc_demo,voice,0205550{i % 1000:03d},2026-03-02T09:{i % 60:02d}:00Z,60\n"
        for i in range(good)
    ] + [f"bad-{i},acc_nobody,voice,0205550101,2026-03-02T09:00:00Z,60\n" for i in range(bad)]
    path.write_text(HEADER + "".join(lines))
    return path


@pytest.mark.usefixtures("cli_env")
async def test_a_failed_import_says_nothing_was_charged_then_release_and_export(
    rating: RunningRating, tmp_path: Path
) -> None:
    assert (await invoke(catalog_app, "apply", str(SAMPLES / "catalog.yaml"))).exit_code == 0
    add_account(rating, "acc_demo")
    failed = await invoke(usage_app, "import", str(usage_file(tmp_path / "f.csv", 20, 5)))
    assert failed.exit_code == 1
    said = " ".join(failed.output.split())  # as read, whatever the terminal's width
    assert "nothing was charged" in said
    assert "20 rated record(s) are held back" in said
    file_id = said.split("(", 1)[1].split(")", 1)[0]
    assert f"reckon usage release {file_id}" in said

    none = await invoke(usage_app, "rated", "--account", "acc_demo")
    assert none.exit_code == 0, none.output
    assert "Rated usage (0)" in none.output
    held = await invoke(
        usage_app, "rated", "--account", "acc_demo", "--include-held", "--limit", "3"
    )
    assert "Rated usage (3)" in held.output

    released = await invoke(usage_app, "release", file_id)
    assert released.exit_code == 0, released.output
    assert "20 rated record(s) published" in released.output
    again = await invoke(usage_app, "release", file_id)
    assert again.exit_code == 1
    assert "IMPORT_NOT_HELD" in again.output

    out = tmp_path / "rated.csv"
    exported = await invoke(
        usage_app, "rated", "--account", "acc_demo", "--service", "voice", "--csv", str(out)
    )
    assert exported.exit_code == 0, exported.output
    assert "wrote 20 rated record(s)" in exported.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 20
    # 60 s landline at peak: 0.05 + 0.10 = 0.15 net, VAT 0.0315 -> 0.03, 0.18 gross.
    assert {(r["net"], r["tax"], r["gross"], r["currency"]) for r in rows} == {
        ("0.15", "0.03", "0.18", "EUR")
    }
    other = await invoke(usage_app, "rated", "--service", "recording")
    assert "Rated usage (0)" in other.output
    window = await invoke(
        usage_app, "rated", "--from", "2026-03-02T09:00:00Z", "--to", "2026-03-02T09:02:00Z"
    )
    assert "Rated usage (2)" in window.output  # ok-0 (09:00) and ok-1 (09:01)


async def test_progress_follows_records_rated_and_rejected(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub, tmp_path: Path
) -> None:
    await stub.ApplyCatalog(
        rating_pb2.ApplyCatalogRequest(document=(SAMPLES / "catalog.yaml").read_text())
    )
    add_account(rating, "acc_demo")
    # Batches of 3 (the fixture): long enough to be seen while it is rated.
    path = usage_file(tmp_path / "big.csv", 3000, 30)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200)
    reply = await import_with_progress(
        stub, path, path.stat().st_size, rating_pb2.UsageFileOptions(), console
    )
    assert (reply.file.rated, reply.file.rejected) == (3000, 30)
    shown = screen.getvalue()
    assert "rating big.csv" in shown  # the bar switched from bytes to records
    assert "records/s" in shown
    assert "rejected" in shown
    # The service answers the progress question by the file's SHA-256.
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    listed = await stub.ListImportFiles(rating_pb2.ListImportFilesRequest(checksum=digest))
    assert [f.file_id for f in listed.files] == [reply.file.file_id]
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.ListImportFiles(rating_pb2.ListImportFilesRequest(checksum="xyz"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await asyncio.sleep(0)
