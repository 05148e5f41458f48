"""A webhook receiver process for the benchmark: verifies every Standard Webhooks signature.

``python -m bench.notifications.receiver PORT SECRET`` answers 204 to a POST whose
signature the ``standardwebhooks`` verifier accepts (401 otherwise) and counts both;
GET /count answers "verified rejected".
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    port, secret = int(sys.argv[1]), sys.argv[2]
    verifier = Webhook(secret)
    counts = {"verified": 0, "rejected": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            try:
                verifier.verify(body, {k.lower(): v for k, v in self.headers.items()})
                key, status = "verified", 204
            except WebhookVerificationError:
                key, status = "rejected", 401
            with lock:
                counts[key] += 1
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            text = f"{counts['verified']} {counts['rejected']}".encode()
            self.send_response(200)
            self.send_header("content-length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256  # 16 clients connecting at once
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
