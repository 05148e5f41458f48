"""Gift vouchers: codes of one value that a customer redeems once (CHG-8).

Codes are derived from a server secret, the batch id and the code's position
(HMAC-SHA256), so the same batch request can be answered again with the same
codes (AIP-155) while only their SHA-256 hashes are stored: a leaked table
reveals no usable code. A code is 16 characters of Crockford base32 shown in
groups of four; dashes, spaces and case are ignored when redeemed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from services.charging.domain.units import Quantity

_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH: Final = 16
MAX_BATCH: Final = 10_000


def voucher_code(secret: bytes, batch_id: str, index: int) -> str:
    digest = hmac.new(secret, f"{batch_id}:{index}".encode(), hashlib.sha256).digest()
    value = int.from_bytes(digest[:10], "big")
    chars = []
    for _ in range(CODE_LENGTH):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    code = "".join(chars)
    return "-".join(code[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def normalise_code(code: str) -> str:
    cleaned = code.replace("-", "").replace(" ", "").upper()
    # Crockford: I and L read as 1, O as 0.
    return cleaned.translate(str.maketrans("ILO", "110"))


def code_hash(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def is_well_formed(code: str) -> bool:
    cleaned = normalise_code(code)
    return len(cleaned) == CODE_LENGTH and all(c in _ALPHABET for c in cleaned)


@dataclass(frozen=True, slots=True)
class Voucher:
    voucher_id: str
    batch_id: str
    value: Quantity
    expire_time: datetime
    redeemed_by: str | None = None
    redeem_request: str | None = None
    redeemed_at: datetime | None = None

    def usable_at(self, instant: datetime) -> bool:
        return instant < self.expire_time
