"""A webhook receiver for tests: a real HTTP server that verifies Standard Webhooks signatures.

It answers ``status`` (200 by default) to every POST, after checking the signature
with the ``standardwebhooks`` verifier (its 5-minute window on ``clock``) against
``secrets`` (any of them may match).
``received`` keeps (headers, body, verified) of every request.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.common.clock import Clock, SystemClock


class _VerifierOnClock(Webhook):
    """The library's verifier, its 5-minute window measured on the test clock.

    Only the "now" of the timestamp check changes (the method is the library's own,
    name-mangled); the signature check is the library's, untouched.
    """

    clock: Clock = SystemClock()

    def _Webhook__verify_timestamp(self, timestamp_header: str) -> datetime:
        tolerance = timedelta(minutes=5)
        now = self.clock.now()
        try:
            timestamp = datetime.fromtimestamp(float(timestamp_header), tz=UTC)
        except ValueError:
            raise WebhookVerificationError("Invalid Signature Headers") from None
        if timestamp < now - tolerance:
            raise WebhookVerificationError("Message timestamp too old")
        if timestamp > now + tolerance:
            raise WebhookVerificationError("Message timestamp too new")
        return timestamp


class WebhookReceiver:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.status = 200
        self.secrets: list[str] = []
        self.received: list[tuple[dict[str, str], bytes, bool]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = receiver.verify(headers, body)
                receiver.received.append((headers, body, verified))
                status = receiver.status if verified else 401
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/reckon"

    def verify(self, headers: dict[str, str], body: bytes) -> bool:
        for secret in self.secrets:
            try:
                verifier = _VerifierOnClock(secret)
                verifier.clock = self.clock
                verifier.verify(body, headers)
            except WebhookVerificationError:
                continue
            return True
        return False

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
