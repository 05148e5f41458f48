"""A SQLite ledger's WAL is checkpointed on a thread of its own, never by the writer's
connection on the event loop (a checkpoint fsyncs; inline it stalled every request)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from services.charging.adapters import sql_ledger
from services.charging.bootstrap import ChargingApp
from services.charging.domain.units import Quantity
from services.charging.service_layer.commands import TopUp
from tests.conftest import TestDatabase
from tests.integration.charging.support import eur, new_account


def size(path: Path) -> int:
    return path.stat().st_size


async def test_the_writer_leaves_checkpoints_to_its_own_thread(
    app: ChargingApp, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database.url.startswith("sqlite"):
        pytest.skip("PostgreSQL has no WAL file of ours to checkpoint")
    monkeypatch.setattr(sql_ledger, "_CHECKPOINT_EVERY_S", 3600.0)
    await new_account(app, "acc-wal")
    db_file = Path(str(app.engine.url.database))
    with app.engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    before = size(db_file)
    for i in range(300):
        await app.handlers.top_up(
            TopUp("acc-wal", Quantity.of_money(eur("1.00")), request_id=f"wal-{i}")
        )
    # Nothing checkpointed yet (the rows are in the WAL only), so the growth below is
    # the checkpoint thread's work.
    assert size(db_file) == before
    monkeypatch.setattr(sql_ledger, "_CHECKPOINT_EVERY_S", 0.0)
    await app.handlers.top_up(TopUp("acc-wal", Quantity.of_money(eur("1.00")), request_id="last"))
    for _ in range(100):  # the checkpoint thread copies them into the database file
        if size(db_file) > before:
            break
        await asyncio.sleep(0.05)
    assert size(db_file) > before
