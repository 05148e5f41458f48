"""The local SMSC of ``reckon up`` and ``reckon sms list|show`` over what it wrote."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from typer.testing import CliRunner

from services.notifications.adapters.smpp import SmppGateway
from suite.cli import app
from suite.sms_cli import received_sms
from suite.smsc import LocalSmsc, sms_dir

LONG_RUSSIAN = "Reckon: ваш баланс 1.50 EUR, ниже 5.00 EUR. " * 3


async def _send_and_collect_receipts(url: str) -> list[tuple[str, bool, str]]:
    gateway = SmppGateway(url, timeout=5)
    try:
        ids = await gateway.send("Reckon", "+31612345678", "Reckon: 1.00 EUR was charged.", 7)
        ids += await gateway.send("Reckon", "+79161234567", LONG_RUSSIAN, 9)
        receipts: list[tuple[str, bool, str]] = []
        deadline = time.monotonic() + 10
        while len(receipts) < len(ids) and time.monotonic() < deadline:
            receipts += await gateway.receipts()
            await asyncio.sleep(0.05)
        assert sorted(r[0] for r in receipts) == sorted(ids)
        return receipts
    finally:
        await asyncio.to_thread(gateway.close)


def test_the_local_smsc_keeps_each_sms_and_sends_receipts(tmp_path: Path) -> None:
    with LocalSmsc(sms_dir(tmp_path)) as smsc:
        receipts = asyncio.run(_send_and_collect_receipts(smsc.url))
    assert all(delivered for _, delivered, _ in receipts)  # DELIVRD for every part
    plain, long = received_sms(tmp_path)
    assert (plain.destination, plain.encoding, plain.text) == (
        "31612345678",
        "GSM-7",
        "Reckon: 1.00 EUR was charged.",
    )
    assert (long.destination, long.encoding, long.text) == ("79161234567", "UCS-2", LONG_RUSSIAN)
    assert len(long.parts) > 1  # concatenated, joined again

    runner = CliRunner()
    listed = runner.invoke(app, ["sms", "list", "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "31612345678" in listed.output
    assert "UCS-2" in listed.output
    shown = runner.invoke(app, ["sms", "show", "2", "--data-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "ниже 5.00 EUR" in shown.output
    assert f"{len(long.parts)} part(s)" in shown.output
    missing = runner.invoke(app, ["sms", "show", "3", "--data-dir", str(tmp_path)])
    assert missing.exit_code == 1
