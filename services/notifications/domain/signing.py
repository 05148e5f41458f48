"""Standard Webhooks signatures (the ``standardwebhooks`` library, no home-made crypto).

``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``; during a
secret rotation both secrets sign and the header carries both signatures,
space-separated, so a receiver holding either secret verifies the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from standardwebhooks.webhooks import Webhook


@lru_cache(maxsize=256)
def _signer(secret: str) -> Webhook:
    # The secret's key is decoded once, not for every delivery.
    return Webhook(secret)


def sign(secrets: Sequence[str], message_id: str, timestamp: datetime, body: bytes) -> str:
    return " ".join(_signer(secret).sign(message_id, timestamp, body) for secret in secrets)
