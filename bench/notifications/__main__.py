"""Notifications benchmark: ``python -m bench.notifications [--emails N] [--webhooks N]``.

E-mails: N invoice e-mails with a 50 kB PDF attached, sent by the service's own
dispatcher (SQL send queue on SQLite, Jinja2 rendering, aiosmtplib, one SMTP
connection per message as in production, 16 at once) to the local mail catcher
running as its own process; beside it the floor: the same MIME messages sent with
raw ``smtplib`` (one connection per message, sequential; and over one reused
connection). Webhooks: N events delivered by the dispatcher (signing, delivery
log, status updates) to a receiver process that verifies every signature with
``standardwebhooks``; the floor: the same signed bodies posted raw with httpx
(same concurrency, no queue, no signing, no bookkeeping). Loopback only, bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import smtplib
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import httpx

from services.common.clock import SystemClock
from services.common.db import make_engine
from services.common.events import EventEnvelope
from services.common.ids import new_id
from services.common.migrations import upgrade_to_head
from services.notifications.adapters.smtp import SmtpEmailSender, build_mime
from services.notifications.adapters.templates import JinjaRenderer
from services.notifications.adapters.unit_of_work import (
    SqlNotificationsUnitOfWork,
    session_factory,
)
from services.notifications.adapters.webhook_http import HttpWebhookSender
from services.notifications.bootstrap import MIGRATIONS, load_rules
from services.notifications.config import DEFAULT_RULES
from services.notifications.domain.model import WebhookEndpoint
from services.notifications.domain.signing import sign
from services.notifications.service_layer import handlers
from services.notifications.service_layer.dispatcher import (
    Dispatcher,
    DispatchSettings,
    email_message_id,
)
from services.notifications.service_layer.ports import Attachment, OutgoingEmail
from suite.redis_server import free_port

PDF = b"%PDF-1.4\n" + os.urandom(50_000 - 9)
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Documents:
    async def fetch(self, invoice_id: str, kind: str) -> Attachment:
        return Attachment(f"{invoice_id}.pdf", "application/pdf", PDF)


def _wait_port(port: int) -> None:
    import socket

    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _counts(port: int) -> tuple[int, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count") as answer:
        verified, rejected = map(int, answer.read().split())
    return verified, rejected


def _envelope(event_type: str, payload: dict[str, object]) -> EventEnvelope:
    return EventEnvelope(new_id("evt"), event_type, "invoicing", "", datetime.now(UTC), payload)


async def bench(emails: int, webhooks: int, workdir: Path) -> None:
    smtp_port, http_port = free_port(), free_port()
    catcher = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
        [sys.executable, "-m", "suite.mail_catcher", "--dir", str(workdir / "mail"),
         "--port", str(smtp_port)], stdout=subprocess.DEVNULL,
    )  # fmt: skip
    receiver = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "bench.notifications.receiver", str(http_port), SECRET]
    )
    try:
        _wait_port(smtp_port)
        _wait_port(http_port)
        engine = make_engine(f"sqlite:///{workdir / 'n.db'}", instrument=False)
        upgrade_to_head(engine, MIGRATIONS)
        sessions = session_factory(engine)
        clock = SystemClock()

        def uow() -> SqlNotificationsUnitOfWork:
            return SqlNotificationsUnitOfWork(sessions, clock=clock)

        renderer = JinjaRenderer()
        planning = handlers.Planning(load_rules(DEFAULT_RULES, renderer))
        url = f"smtp://127.0.0.1:{smtp_port}?starttls=off"
        dispatcher = Dispatcher(
            uow, clock, renderer=renderer, email=SmtpEmailSender(url, "b@reckon.test"),
            sms=None, webhooks=HttpWebhookSender(), documents=Documents(),
            settings=DispatchSettings(batch_size=500, concurrency=16),
        )  # fmt: skip
        handlers.plan_event(
            _envelope("CustomerCreated", {"customer_id": "cus_1", "email": "ada@example.com",
                                          "display_name": "Ada", "language_code": "en"}),
            uow(), planning,
        )  # fmt: skip

        # -- e-mails --------------------------------------------------------------------
        started = time.perf_counter()
        for number in range(emails):
            handlers.plan_event(
                _envelope("InvoiceIssued", {"invoice_id": f"inv_{number}", "customer_id": "cus_1",
                    "number": f"INV-{number}", "issue_date": "2027-01-15", "due_date": "2027-01-29",
                    "amount_due": {"amount": "121.00", "currency": "EUR"}}),
                uow(), planning,
            )  # fmt: skip
        planned = time.perf_counter() - started
        started = time.perf_counter()
        while await dispatcher.dispatch_once():
            pass
        service_s = time.perf_counter() - started
        mails = list((workdir / "mail").glob("*.eml"))
        assert len(mails) == emails + 0, f"{len(mails)} e-mails arrived, {emails} sent"
        assert all(len(p.read_bytes()) > 60_000 for p in mails[:5])

        samples = [
            build_mime(
                OutgoingEmail(email_message_id(f"evt_{i}", "a@example.com", "x"), "a@example.com",
                              f"Invoice INV-{i}", "text", "<p>html</p>",
                              [Attachment(f"inv_{i}.pdf", "application/pdf", PDF)]),
                "b@reckon.test",
            )
            for i in range(emails)
        ]  # fmt: skip
        started = time.perf_counter()
        for mime in samples:
            with smtplib.SMTP("127.0.0.1", smtp_port) as client:
                client.send_message(mime)
        floor_s = time.perf_counter() - started
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            for mime in samples:
                client.send_message(mime)
        reused_s = time.perf_counter() - started
        print(f"e-mails with a 50 kB PDF, {emails} each:")
        print(f"  planning {emails / planned:,.0f} events/s (not in the rates below)")
        print(f"  service: dispatcher, aiosmtplib, 16 at once    {emails / service_s:8,.0f} /s")
        print(f"  floor: raw smtplib, a connection per message   {emails / floor_s:8,.0f} /s")
        print(f"  raw smtplib over one reused connection          {emails / reused_s:8,.0f} /s")
        print(f"  service / floor = {floor_s / service_s:.2f}")

        # -- webhooks -------------------------------------------------------------------
        with uow() as unit:
            unit.endpoints.add(WebhookEndpoint(
                new_id("whe"), f"http://127.0.0.1:{http_port}/hook", ["InvoiceVoided"], SECRET,
                "ops@example.com", "bench", True, clock.now(),
            ))  # fmt: skip
            unit.commit()
        for number in range(webhooks):
            handlers.plan_event(
                _envelope("InvoiceVoided", {"invoice_id": f"inv_{number}", "reason": "bench"}),
                uow(), planning,
            )  # fmt: skip
        started = time.perf_counter()
        while await dispatcher.dispatch_once():
            pass
        hooks_s = time.perf_counter() - started
        bodies = [
            b'{"type":"InvoiceVoided","timestamp":"2027-01-15T12:00:00+00:00","data":{"invoice_id":"inv_%d"}}'
            % i
            for i in range(webhooks)
        ]
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16)) as http:
            gate = asyncio.Semaphore(16)

            async def post(i: int, body: bytes) -> None:
                now = datetime.now(UTC)
                headers = {"webhook-id": f"evt_{i}", "webhook-timestamp": str(int(now.timestamp())),
                           "webhook-signature": sign([SECRET], f"evt_{i}", now, body),
                           "content-type": "application/json"}  # fmt: skip
                async with gate:
                    await http.post(f"http://127.0.0.1:{http_port}/hook", headers=headers,
                                    content=body)  # fmt: skip

            started = time.perf_counter()
            await asyncio.gather(*(post(i, b) for i, b in enumerate(bodies)))
            raw_s = time.perf_counter() - started
        verified, rejected = await asyncio.to_thread(_counts, http_port)
        print(f"webhooks, {webhooks} each, 16 at once, receiver verifying every signature:")
        print(f"  service (sign, post, log, status)   {webhooks / hooks_s:8,.0f} /s")
        print(f"  floor: raw httpx posts               {webhooks / raw_s:8,.0f} /s")
        print(f"  service / floor = {raw_s / hooks_s:.2f}; receiver verified {verified}, "
              f"rejected {rejected}")  # fmt: skip
        assert verified == 2 * webhooks
        assert rejected == 0
    finally:
        for process in (catcher, receiver):
            process.terminate()
            process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--emails", type=int, default=300)
    parser.add_argument("--webhooks", type=int, default=1000)
    args = parser.parse_args()
    if not 1 <= args.emails <= 5000 or not 1 <= args.webhooks <= 20000:
        parser.error("keep it bounded: 1-5000 e-mails, 1-20000 webhooks")
    with tempfile.TemporaryDirectory(prefix="reckon-bench-notifications-") as workdir:
        asyncio.run(bench(args.emails, args.webhooks, Path(workdir)))


if __name__ == "__main__":
    main()
