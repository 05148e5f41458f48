"""The dispatcher's outcome recorder: group commit (at most ``size`` a write), one write at a
time, failures kept."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from services.notifications.domain.model import Category, Channel, Message, MessageStatus
from services.notifications.service_layer.dispatcher import Outcome, _Recorder


def _outcome(n: int) -> Outcome:
    now = datetime(2027, 1, 15, tzinfo=UTC)
    message = Message(
        f"msg_{n}", f"evt_{n}", "InvoiceIssued", Channel.EMAIL, "a@b.c", "cus_1", "", "t",
        "en", Category.SERVICE, {}, MessageStatus.QUEUED, now, now,
    )  # fmt: skip
    return Outcome(message, "sent", "<id>")


async def test_batches_are_written_in_order_and_a_failed_one_does_not_stop_the_next() -> None:
    written: list[list[str]] = []

    def record(batch: Sequence[Outcome]) -> None:
        if not written:
            written.append([])  # the first write fails (the database is away)
            raise RuntimeError("database unavailable")
        written.append([o.message_id for o in batch])

    recorder = _Recorder(record, 2)
    for n in range(5):
        recorder.add(_outcome(n))
    with pytest.raises(RuntimeError, match="database unavailable"):
        await recorder.close()
    # The first outcome went at once, alone (nothing was in flight), and failed; those
    # that finished while a write was in flight went together, at most two a write.
    assert written[1:] == [["msg_1", "msg_2"], ["msg_3", "msg_4"]]


async def test_an_outcome_is_written_at_once_when_no_write_is_in_flight() -> None:
    written: list[list[str]] = []
    recorder = _Recorder(lambda batch: written.append([o.message_id for o in batch]), 50)
    recorder.add(_outcome(0))
    await recorder.close()
    recorder = _Recorder(lambda batch: written.append([o.message_id for o in batch]), 50)
    recorder.add(_outcome(1))
    await asyncio.sleep(0.05)  # the write of msg_1 is done: the next one starts alone too
    recorder.add(_outcome(2))
    await recorder.close()
    # Never held back to fill a batch of 50: a crash re-sends only what is not written.
    assert written == [["msg_0"], ["msg_1"], ["msg_2"]]
