"""The local SMSC simulator: smpp34's SMPP server, keeping every SMS it receives.

``reckon up`` starts it beside the mail catcher and points ``SMPP_URL`` at it; each
``submit_sm`` it accepts gets the id ``smsc-<n>`` and, with a directory, is written
as ``<data>/sms/<received>-<n>.json`` (sender, destination, encoding, the decoded
text and, for a concatenated message, its part), browsable with ``reckon sms
list|show``. A delivery receipt (``deliver_sm``, esm_class 0x04, the appendix-B
text) goes back to the session that submitted the SMS, saying ``receipt_state``
(DELIVRD by default), so notifications moves the message to DELIVERED. Tests run
``SmscSimulator`` in their loop; the suite runs ``LocalSmsc`` (a thread of its own).
It accepts every bind: a simulator, not a gateway, and it binds loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import smpp34

from services.notifications.domain.sms import decode_part

DEFAULT_PORT = 2775


def sms_dir(data_dir: Path) -> Path:
    return data_dir / "sms"


@dataclass(frozen=True)
class ReceivedPdu:
    smsc_id: str
    source_addr: str
    source_addr_ton: int
    destination_addr: str
    data_coding: int
    esm_class: int
    registered_delivery: int
    short_message: bytes


def _free_port() -> int:
    from suite.redis_server import free_port

    return free_port()


class SmscSimulator:
    """The simulator in the running event loop: ``await start()`` / ``await stop()``."""

    def __init__(
        self,
        *,
        receipts: bool = True,
        receipt_state: str = "DELIVRD",
        directory: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self.port = port or _free_port()
        self.receipts = receipts
        self.receipt_state = receipt_state
        self.directory = directory
        self.received: list[ReceivedPdu] = []
        self._sessions: dict[str, smpp34.Esme] = {}
        self._ids = itertools.count(1)
        self._server = smpp34.Server(host, self.port, system_id="reckon-smsc")
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()  # receipts on their way

    @property
    def url(self) -> str:
        return f"smpp://reckon:secret@{self.host}:{self.port}"

    async def start(self) -> SmscSimulator:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        await self._server.start()
        self._task = asyncio.create_task(self._serve())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._pending):
            task.cancel()
        await self._server.stop()

    async def _serve(self) -> None:
        while True:
            event = await self._server.next()
            if isinstance(event, smpp34.Esme):
                self._sessions[event.session_id] = event
            elif isinstance(event, smpp34.SubmitSmEvent):
                smsc_id = f"smsc-{next(self._ids)}"
                pdu = ReceivedPdu(
                    smsc_id=smsc_id,
                    source_addr=event.source_addr,
                    source_addr_ton=event.source_addr_ton,
                    destination_addr=event.destination_addr,
                    data_coding=event.data_coding,
                    esm_class=event.esm_class,
                    registered_delivery=event.registered_delivery,
                    short_message=bytes(event.short_message),
                )
                self.received.append(pdu)
                self._keep(pdu)
                event.accept(smsc_id)
                session = self._sessions.get(event.session_id)
                if self.receipts and session is not None and pdu.registered_delivery:
                    task = asyncio.create_task(self._receipt(session, pdu))
                    self._pending.add(task)
                    task.add_done_callback(self._pending.discard)

    def _keep(self, pdu: ReceivedPdu) -> None:
        """One JSON file per PDU, written atomically (a reader never sees half of one)."""
        if self.directory is None:
            return
        received = datetime.now(UTC)
        try:
            text, part = decode_part(pdu.short_message, pdu.data_coding, pdu.esm_class)
        except (UnicodeDecodeError, ValueError, IndexError) as exc:
            text, part = f"(undecodable: {exc})", None
        record = {
            **{k: v for k, v in asdict(pdu).items() if k != "short_message"},
            "received_at": received.isoformat(),
            "encoding": "UCS-2" if pdu.data_coding == 8 else "GSM-7",
            "part": list(part) if part else None,
            "text": text,
            "short_message_hex": pdu.short_message.hex(),
        }
        name = f"{received:%Y%m%dT%H%M%S%f}-{os.getpid()}-{pdu.smsc_id}.json"
        assert self.directory is not None
        partial = self.directory / f".{name}.part"
        partial.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
        partial.rename(self.directory / name)

    async def _receipt(self, session: smpp34.Esme, pdu: ReceivedPdu) -> None:
        text = (
            f"id:{pdu.smsc_id} sub:001 dlvrd:001 submit date:2601010000 "
            f"done date:2601010000 stat:{self.receipt_state} err:000 text:"
        )
        with contextlib.suppress(smpp34.SmppError):  # the session ended meanwhile
            await session.deliver_sm(
                pdu.source_addr,
                text.encode(),
                source_addr=pdu.destination_addr,
                esm_class=0x04,
            )


class LocalSmsc:
    """The simulator on a thread with its own event loop, for ``reckon up`` and ``main``."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = directory
        self.host = host
        self.port = port or _free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._simulator: SmscSimulator | None = None

    @property
    def url(self) -> str:
        return f"smpp://reckon:secret@{self.host}:{self.port}"

    def start(self) -> LocalSmsc:
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._simulator = loop.run_until_complete(
                    SmscSimulator(directory=self.directory, host=self.host, port=self.port).start()
                )
            except (OSError, smpp34.SmppError) as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._simulator.stop())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="reckon-smsc", daemon=True)
        self._thread.start()
        ready.wait(timeout=10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> LocalSmsc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Reckon's local SMSC simulator (SMPP on loopback)")
    parser.add_argument("--dir", type=Path, required=True, help="where received SMS are written")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    smsc = LocalSmsc(args.dir, host=args.host, port=args.port).start()
    print(f"SMSC simulator on {smsc.host}:{smsc.port} writing {args.dir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        time.sleep(0.2)
    smsc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
