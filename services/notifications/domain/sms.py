"""SMS text as SMPP sees it: encoding, concatenated parts, delivery receipts.

GSM 03.38 (7-bit default alphabet, data_coding 0) when every character is in it,
else UCS-2 (data_coding 8, UTF-16BE). One SMS holds 160 septets or 70 UCS-2
characters; longer texts are split into parts of 153 septets / 67 characters,
each starting with a concatenation UDH (IEI 0x00, 8-bit reference) and sent with
esm_class UDHI (0x40). Septets travel unpacked, one per octet, as SMPP sends the
default alphabet. A part never ends inside an escape pair or a surrogate pair.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

DATA_CODING_GSM7: Final = 0x00
DATA_CODING_UCS2: Final = 0x08
ESM_CLASS_UDHI: Final = 0x40
ESM_CLASS_RECEIPT: Final = 0x04

_BASIC: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>"
    "?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_EXTENSION: Final = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C,
                     "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}  # fmt: skip
_BASIC_INDEX: Final = {ch: i for i, ch in enumerate(_BASIC) if ch != "\x1b"}


@dataclass(frozen=True)
class SmsPart:
    short_message: bytes  # UDH (if any) + text bytes
    data_coding: int
    esm_class: int


def gsm7_encode(text: str) -> bytes | None:
    """Unpacked GSM-7 septets, or None if a character is not in the alphabet."""
    out = bytearray()
    for ch in text:
        if ch in _BASIC_INDEX:
            out.append(_BASIC_INDEX[ch])
        elif ch in _EXTENSION:
            out += bytes((0x1B, _EXTENSION[ch]))
        else:
            return None
    return bytes(out)


def gsm7_decode(data: bytes) -> str:
    reverse_ext = {v: k for k, v in _EXTENSION.items()}
    out, escape = [], False
    for byte in data:
        if escape:
            out.append(reverse_ext.get(byte, " "))
            escape = False
        elif byte == 0x1B:
            escape = True
        else:
            out.append(_BASIC[byte])
    return "".join(out)


def split_sms(text: str, reference: int) -> list[SmsPart]:
    """The PDUs' payloads for ``text``; ``reference`` (0-255) ties the parts together."""
    encoded = gsm7_encode(text)
    if encoded is not None:
        if len(encoded) <= 160:
            return [SmsPart(encoded, DATA_CODING_GSM7, 0)]
        # An escape (0x1B) must stay with the septet it introduces.
        chunks = _chunks(encoded, 153, back=1, splits=lambda data, end: data[end - 1] == 0x1B)
        coding = DATA_CODING_GSM7
    else:
        encoded = text.encode("utf-16-be")
        if len(encoded) <= 140:
            return [SmsPart(encoded, DATA_CODING_UCS2, 0)]
        # A part must not end on a high surrogate (the pair would be split).
        chunks = _chunks(
            encoded, 134, back=2, splits=lambda data, end: 0xD8 <= data[end - 2] <= 0xDB
        )
        coding = DATA_CODING_UCS2
    if len(chunks) > 255:
        raise ValueError(f"text too long for one concatenated SMS ({len(chunks)} parts)")
    total = len(chunks)
    return [
        SmsPart(bytes((5, 0x00, 3, reference & 0xFF, total, i + 1)) + chunk, coding, ESM_CLASS_UDHI)
        for i, chunk in enumerate(chunks)
    ]


def _chunks(
    data: bytes, size: int, *, back: int, splits: Callable[[bytes, int], bool]
) -> list[bytes]:
    """``size``-byte chunks, each ``back`` bytes shorter where ending it would split a pair."""
    out, start = [], 0
    while start < len(data):
        end = min(start + size, len(data))
        if end < len(data) and splits(data, end):
            end -= back
        out.append(data[start:end])
        start = end
    return out


def decode_part(
    short_message: bytes, data_coding: int, esm_class: int
) -> tuple[str, tuple[int, int, int] | None]:
    """The text of one PDU and its (reference, total, number) when it is a part."""
    header = None
    body = short_message
    if esm_class & ESM_CLASS_UDHI:
        length = short_message[0]
        udh = short_message[1 : 1 + length]
        if len(udh) >= 5 and udh[0] == 0x00:
            header = (udh[2], udh[3], udh[4])
        body = short_message[1 + length :]
    text = body.decode("utf-16-be") if data_coding == DATA_CODING_UCS2 else gsm7_decode(body)
    return text, header


@dataclass(frozen=True)
class DeliveryReceipt:
    message_id: str
    state: str  # DELIVRD, UNDELIV, REJECTD, EXPIRED, DELETED, ACCEPTD, UNKNOWN, ENROUTE

    @property
    def final(self) -> bool:
        return self.state not in ("ENROUTE", "ACCEPTD", "UNKNOWN")

    @property
    def delivered(self) -> bool:
        return self.state == "DELIVRD"


_RECEIPT: Final = re.compile(r"id:(?P<id>\S+).*?stat:(?P<stat>[A-Z]+)", re.DOTALL)


def parse_receipt(text: str) -> DeliveryReceipt | None:
    """The SMPP 3.4 appendix B receipt text ("id:... stat:DELIVRD ..."), or None."""
    found = _RECEIPT.search(text)
    return DeliveryReceipt(found["id"], found["stat"]) if found else None
