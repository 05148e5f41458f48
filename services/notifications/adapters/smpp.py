"""SMS over SMPP 3.4 with smpplib: one transceiver session per process.

``SMPP_URL`` is ``smpp://system_id:password@host:port``;
a sender with letters goes out alphanumeric (TON 5). Each text is split
by ``domain.sms`` (GSM-7 or UCS-2, concatenated parts with a UDH) and every part
asks for a delivery receipt (``registered_delivery=1``). The session is used from
one thread at a time (a lock): smpplib's client is synchronous, so calls run in a
worker thread and receipts that arrive between submits are kept for ``receipts``.
A broken session is dropped and bound again on the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

from services.notifications.domain.sms import (
    ESM_CLASS_RECEIPT,
    parse_receipt,
    split_sms,
)
from services.notifications.service_layer.ports import PermanentFailure, TemporaryFailure

log = logging.getLogger(__name__)

# submit_sm_resp statuses that no retry will change: bad addresses, bad message.
_PERMANENT = {
    smpplib.consts.SMPP_ESME_RINVDSTADR,
    smpplib.consts.SMPP_ESME_RINVSRCADR,
    smpplib.consts.SMPP_ESME_RINVMSGLEN,
}


@dataclass(frozen=True)
class SmppTarget:
    host: str
    port: int
    system_id: str
    password: str


def parse_smpp_url(url: str) -> SmppTarget:
    parts = urlsplit(url)
    if parts.scheme != "smpp" or not parts.hostname:
        raise ValueError("SMPP_URL: expected smpp://system_id:password@host:port")
    return SmppTarget(
        host=parts.hostname,
        port=parts.port or 2775,
        system_id=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


class SmppGateway:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.target = parse_smpp_url(url)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._client: Any = None
        self._receipts: list[tuple[str, bool, str]] = []

    # -- the SmsGateway port ----------------------------------------------------------------
    async def send(self, sender: str, to: str, text: str, reference: int) -> list[str]:
        return await asyncio.to_thread(self._send, sender, to, text, reference)

    async def receipts(self) -> list[tuple[str, bool, str]]:
        return await asyncio.to_thread(self._poll)

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- the session --------------------------------------------------------------------------
    def _session(self) -> Any:
        if self._client is not None:
            return self._client
        client = smpplib.client.Client(
            self.target.host, self.target.port, timeout=self._timeout, allow_unknown_opt_params=True
        )
        try:
            client.connect()
            client.bind_transceiver(system_id=self.target.system_id, password=self.target.password)
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as exc:
            with contextlib.suppress(Exception):  # already broken
                client.disconnect()
            raise TemporaryFailure(f"SMSC unavailable: {exc}") from exc
        self._client = client
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # the socket is gone already
                client.disconnect()

    def _send(self, sender: str, to: str, text: str, reference: int) -> list[str]:
        parts = split_sms(text, reference)
        alphanumeric = not sender.lstrip("+").isdigit()
        with self._lock:
            client = self._session()
            ids = []
            try:
                for part in parts:
                    pdu = client.send_message(
                        source_addr_ton=smpplib.consts.SMPP_TON_ALNUM
                        if alphanumeric
                        else smpplib.consts.SMPP_TON_INTL,
                        source_addr_npi=smpplib.consts.SMPP_NPI_UNK
                        if alphanumeric
                        else smpplib.consts.SMPP_NPI_ISDN,
                        source_addr=sender.lstrip("+"),
                        dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                        dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                        destination_addr=to.lstrip("+"),
                        short_message=part.short_message,
                        data_coding=part.data_coding,
                        esm_class=part.esm_class,
                        registered_delivery=1,
                    )
                    ids.append(self._await_response(client, pdu.sequence))
            except (TimeoutError, smpplib.exceptions.ConnectionError, OSError) as exc:
                self._drop()
                raise TemporaryFailure(f"SMSC connection lost: {exc}") from exc
            return ids

    def _await_response(self, client: Any, sequence: int) -> str:
        while True:
            pdu = client.read_pdu()
            if pdu.command == "submit_sm_resp" and pdu.sequence == sequence:
                if pdu.status != 0:
                    text = smpplib.consts.DESCRIPTIONS.get(pdu.status, "unknown")
                    failure = PermanentFailure if pdu.status in _PERMANENT else TemporaryFailure
                    raise failure(f"SMSC refused the message: {pdu.status:#x} {text}")
                raw = pdu.message_id
                return raw.decode() if isinstance(raw, bytes) else str(raw)
            self._other(client, pdu)

    def _other(self, client: Any, pdu: Any) -> None:
        if pdu.command == "deliver_sm":
            self._deliver(client, pdu)
        elif pdu.command == "enquire_link":
            resp = smpplib.smpp.make_pdu("enquire_link_resp", client=client)
            resp.sequence = pdu.sequence
            client.send_pdu(resp)

    def _deliver(self, client: Any, pdu: Any) -> None:
        if int(pdu.esm_class or 0) & ESM_CLASS_RECEIPT:
            # Receipt texts are ASCII ("id:... stat:DELIVRD ..."), whatever data_coding says.
            receipt = parse_receipt(bytes(pdu.short_message or b"").decode("latin-1"))
            receipted = getattr(pdu, "receipted_message_id", None)
            if receipt is not None and receipt.final:
                message_id = receipt.message_id
                if isinstance(receipted, bytes) and receipted:
                    message_id = receipted.decode()
                self._receipts.append((message_id, receipt.delivered, receipt.state))
        resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=client)
        resp.sequence = pdu.sequence
        client.send_pdu(resp)

    def _poll(self) -> list[tuple[str, bool, str]]:
        with self._lock:
            try:
                while self._client is not None:
                    readable, _, _ = select.select([self._client._socket], [], [], 0)
                    if not readable:
                        break
                    self._other(self._client, self._client.read_pdu())
            except (smpplib.exceptions.ConnectionError, OSError) as exc:
                log.warning("SMSC session lost while reading receipts: %s", exc)
                self._drop()
            found, self._receipts = self._receipts, []
            return found
