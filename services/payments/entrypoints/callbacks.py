"""Provider result callbacks, verified per Standard Webhooks before they are believed.

The sandbox delivers them in process; a message whose signature does not verify
with ``PAYMENTS_WEBHOOK_SECRET``, or that is older than five minutes, is refused
and changes nothing. A verified one settles the attempt it names (idempotently:
a second delivery finds the attempt final already).
"""

from __future__ import annotations

import logging

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.payments.domain.provider import ProviderResult, ProviderStatus
from services.payments.service_layer.collection import Collector

log = logging.getLogger(__name__)


class CallbackRejected(Exception):
    """A callback that failed verification or names nothing known."""


class ProviderCallbacks:
    def __init__(self, collector: Collector, secret: str) -> None:
        self._collector = collector
        self._verifier = Webhook(secret)

    def receive(self, body: bytes, headers: dict[str, str]) -> bool:
        try:
            message = self._verifier.verify(body, headers)
        except WebhookVerificationError as exc:
            log.warning("provider callback refused: %s", exc)
            raise CallbackRejected(str(exc)) from None
        try:
            status = ProviderStatus(str(message["status"]))
            key = str(message["idempotency_key"])
        except (KeyError, ValueError, TypeError):
            raise CallbackRejected("callback without a status and key") from None
        result = ProviderResult(
            status, str(message.get("provider_reference", "")), str(message.get("decline_code", ""))
        )
        return self._collector.apply_callback(key, result)
