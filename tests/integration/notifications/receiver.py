"""A webhook receiver for tests: a real HTTP server that verifies Standard Webhooks signatures.

It answers ``status`` (200 by default) to every POST, after checking the signature
with the ``standardwebhooks`` verifier against ``secrets`` (any of them may match).
``received`` keeps (headers, body, verified) of every request.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class WebhookReceiver:
    def __init__(self) -> None:
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
                Webhook(secret).verify(body, headers)
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
