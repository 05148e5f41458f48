"""The dispatcher's outcome recorder: batches of ``size``, one write at a time, failures kept."""

from __future__ import annotations

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
    # The first batch (two) failed; the rest, collected meanwhile, went in one write.
    assert written[1:] == [["msg_2", "msg_3", "msg_4"]]
