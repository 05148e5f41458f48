"""An SMSC simulator on loopback for tests: smpp34's SMPP server, recording every submit_sm.

Each accepted ``submit_sm`` gets an id ``smsc-<n>``; with ``receipts`` on, a delivery
receipt (``deliver_sm`` with esm_class 0x04 and the appendix-B text) goes back to the
session that submitted it, saying ``receipt_state`` (DELIVRD by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass

import smpp34

from suite.redis_server import free_port


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


class SmscSimulator:
    def __init__(self, *, receipts: bool = True, receipt_state: str = "DELIVRD") -> None:
        self.port = free_port()
        self.receipts = receipts
        self.receipt_state = receipt_state
        self.received: list[ReceivedPdu] = []
        self._sessions: dict[str, smpp34.Esme] = {}
        self._ids = itertools.count(1)
        self._server = smpp34.Server("127.0.0.1", self.port, system_id="reckon-test-smsc")
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()  # receipts on their way

    @property
    def url(self) -> str:
        return f"smpp://reckon:secret@127.0.0.1:{self.port}"

    async def start(self) -> SmscSimulator:
        await self._server.start()
        self._task = asyncio.create_task(self._serve())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
                event.accept(smsc_id)
                session = self._sessions.get(event.session_id)
                if self.receipts and session is not None and pdu.registered_delivery:
                    self._pending.add(asyncio.create_task(self._receipt(session, pdu)))

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
