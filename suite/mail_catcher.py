"""The local mail catcher: a real SMTP server (aiosmtpd) that keeps every message.

``reckon up`` starts it beside the services and points ``SMTP_URL`` at it; each
message it accepts is written as ``<data>/mail/<received>-<n>.eml`` (the bytes as
received, plus ``X-Reckon-Envelope-*`` headers with the envelope), browsable with
``reckon mail list|show``. Tests use it as their SMTP server. It accepts every
recipient: it is a catcher, not a relay, and it binds loopback only.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

DEFAULT_PORT = 1025


def mail_dir(data_dir: Path) -> Path:
    return data_dir / "mail"


class _Keeper:
    """aiosmtpd handler: one .eml file per accepted message, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        received = datetime.now(UTC)
        with self._lock:
            number = next(self._counter)
        name = f"{received:%Y%m%dT%H%M%S%f}-{os.getpid()}-{number:06d}.eml"
        header = (
            f"X-Reckon-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Reckon-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        content = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else str(content).encode()
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / f".{name}.part"
        partial.write_bytes(header + data)
        partial.rename(self.directory / name)
        return "250 Message accepted for delivery"


class MailCatcher:
    """The catcher in this process (a thread): ``start``/``stop``, for tests and ``main``."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = directory
        self.host = host
        self.port = port or _free_port()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}?starttls=off"

    def start(self) -> MailCatcher:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(
            _Keeper(self.directory),
            hostname=self.host,
            port=self.port,
            # Invoices with attachments are large; 32 MiB like common providers.
            data_size_limit=32 * 1024 * 1024,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self) -> list[Path]:
        return sorted(self.directory.glob("*.eml"))

    def __enter__(self) -> MailCatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    from suite.redis_server import free_port

    return free_port()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Reckon's local mail catcher (SMTP on loopback)")
    parser.add_argument("--dir", type=Path, required=True, help="where .eml files are written")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    catcher = MailCatcher(args.dir, host=args.host, port=args.port).start()
    print(f"mail catcher on {catcher.host}:{catcher.port} writing {args.dir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        time.sleep(0.2)
    catcher.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
