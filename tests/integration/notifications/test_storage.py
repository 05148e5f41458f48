"""Storage and the remaining adapters: migrations match the mapping; the unique key is the
last guard against a second message; SMTP refusals, STARTTLS with AUTH; invoicing's
documents over real gRPC."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from reckon.invoicing.v1 import invoicing_pb2 as inv_pb
from reckon.invoicing.v1 import invoicing_pb2_grpc
from services.common.clock import ManualClock
from services.common.db import make_engine
from services.common.errors import Aborted
from services.common.migrations import upgrade_to_head
from services.notifications.adapters.documents import GrpcInvoiceDocuments
from services.notifications.adapters.orm import metadata
from services.notifications.adapters.smtp import SmtpEmailSender
from services.notifications.adapters.unit_of_work import (
    SqlNotificationsUnitOfWork,
    session_factory,
)
from services.notifications.bootstrap import MIGRATIONS
from services.notifications.domain.model import Category, Channel, Message, MessageStatus
from services.notifications.service_layer.ports import (
    OutgoingEmail,
    PermanentFailure,
    TemporaryFailure,
)
from suite.redis_server import free_port
from tests.conftest import TEST_TOKEN, TestDatabase
from tests.integration.notifications.test_channels import sample_pdf

NOW = datetime(2027, 1, 15, 12, tzinfo=UTC)


@pytest.fixture
def engine(database: TestDatabase) -> Iterator[Engine]:
    engine = make_engine(database.url, database.schema, instrument=False)
    upgrade_to_head(engine, MIGRATIONS)
    yield engine
    engine.dispose()


def test_migrations_create_exactly_the_mapped_tables(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), metadata
        )
        tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
    assert differences == []
    assert tables == set(metadata.tables)


def _message(message_id: str) -> Message:
    return Message(message_id, "evt_1", "InvoiceIssued", Channel.EMAIL, "ada@example.com",
                   "cus_1", "inv_1", "invoice_issued", "en", Category.LEGAL, {},
                   MessageStatus.QUEUED, NOW, NOW)  # fmt: skip


def test_the_unique_key_refuses_a_second_message_for_one_recipient(engine: Engine) -> None:
    sessions = session_factory(engine)
    clock = ManualClock(NOW)
    with SqlNotificationsUnitOfWork(sessions, clock=clock) as uow:
        uow.messages.add(_message("msg_1"))
        uow.commit()
    with SqlNotificationsUnitOfWork(sessions, clock=clock) as uow:
        assert uow.messages.exists("evt_1", Channel.EMAIL, "ada@example.com")
        uow.messages.add(_message("msg_2"))  # as a concurrent planner would
        with pytest.raises(Aborted):
            uow.commit()


def test_concurrent_claims_take_each_due_message_once(engine: Engine) -> None:
    # The one-statement claim (UPDATE ... WHERE id IN (due subquery) RETURNING): of
    # dispatchers claiming at the same time each message goes to exactly one.
    sessions = session_factory(engine)
    clock = ManualClock(NOW)
    with SqlNotificationsUnitOfWork(sessions, clock=clock) as uow:
        for n in range(120):
            message = _message(f"msg_{n:03}")
            message.event_id = f"evt_{n}"
            message.next_attempt_at = NOW - timedelta(seconds=n % 7)
            uow.messages.add(message)
        message = _message("msg_later")
        message.event_id = "evt_later"
        message.next_attempt_at = NOW + timedelta(seconds=1)  # not due yet
        uow.messages.add(message)
        uow.commit()
    start = threading.Barrier(4)

    def claim() -> list[str]:
        taken: list[str] = []
        start.wait()
        while True:
            with SqlNotificationsUnitOfWork(sessions, clock=clock) as uow:
                batch = uow.messages.claim_due(NOW, 10, timedelta(minutes=5))
                uow.commit()
            if not batch:
                return taken
            assert all(m.lease_until == NOW + timedelta(minutes=5) for m in batch)
            assert [m.next_attempt_at for m in batch] == sorted(m.next_attempt_at for m in batch)
            taken += [m.message_id for m in batch]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: claim(), range(4)))
    every = [message_id for taken in results for message_id in taken]
    assert sorted(every) == [f"msg_{n:03}" for n in range(120)]  # each once, none twice
    with SqlNotificationsUnitOfWork(sessions, clock=clock) as uow:
        # Held until the lease ends; then due again (a crashed dispatcher's messages).
        assert uow.messages.claim_due(NOW, 500, timedelta(minutes=5)) == []
        later = NOW + timedelta(minutes=5, seconds=1)
        assert len(uow.messages.claim_due(later, 500, timedelta(minutes=5))) == 121


class _Refusing:
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        return "550 5.1.1 no such mailbox" if address.startswith("gone") else "451 4.3.0 try later"


async def test_smtp_refusals_are_permanent_or_temporary_by_code() -> None:
    controller = Controller(_Refusing(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        sender = SmtpEmailSender(f"smtp://127.0.0.1:{controller.port}?starttls=off", "b@x.test")
        with pytest.raises(PermanentFailure, match="550"):
            await sender.send(OutgoingEmail("<a@x>", "gone@example.com", "s", "t", "<p>t</p>"))
        with pytest.raises(TemporaryFailure, match="451"):
            await sender.send(OutgoingEmail("<b@x>", "busy@example.com", "s", "t", "<p>t</p>"))
    finally:
        controller.stop()


class _Keep:
    def __init__(self) -> None:
        self.received: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope)
        return "250 OK"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"mailer", b"s3cret")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def server_tls(tmp_path: Path) -> ssl.SSLContext:
    """A self-signed certificate made by openssl for the test server."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_starttls_and_auth(server_tls: ssl.SSLContext) -> None:
    context = server_tls
    keeper = _Keep()
    controller = Controller(
        keeper, hostname="127.0.0.1", port=free_port(), tls_context=context,
        require_starttls=True, authenticator=_authenticate, auth_required=True,
    )  # fmt: skip
    controller.start()
    try:
        base = f"127.0.0.1:{controller.port}?starttls=require&verify=false"
        good = SmtpEmailSender(f"smtp://mailer:s3cret@{base}", "b@x.test")
        await good.send(OutgoingEmail("<c@x>", "ada@example.com", "s", "t", "<p>t</p>"))
        assert [e.rcpt_tos for e in keeper.received] == [["ada@example.com"]]
        wrong = SmtpEmailSender(f"smtp://mailer:wrong@{base}", "b@x.test")
        with pytest.raises(TemporaryFailure, match="535"):  # fix the password, then it goes
            await wrong.send(OutgoingEmail("<d@x>", "ada@example.com", "s", "t", "<p>t</p>"))
        anonymous = SmtpEmailSender(f"smtp://{base}", "b@x.test")
        with pytest.raises((TemporaryFailure, PermanentFailure), match="530"):
            await anonymous.send(OutgoingEmail("<e@x>", "ada@example.com", "s", "t", "<p>t</p>"))
        assert len(keeper.received) == 1
    finally:
        controller.stop()


class _Invoicing(invoicing_pb2_grpc.InvoicingServiceServicer):
    def __init__(self, pdf: bytes) -> None:
        self.pdf = pdf

    async def GetInvoiceDocument(self, request: Any, context: Any) -> Any:
        if request.invoice_id != "inv_1":
            await context.abort(grpc.StatusCode.NOT_FOUND, "INVOICE_NOT_FOUND")
        assert request.format == inv_pb.DOCUMENT_FORMAT_PDF
        return inv_pb.GetInvoiceDocumentResponse(
            content=self.pdf, media_type="application/pdf", file_name="INV-2027-000001.pdf"
        )


async def test_documents_come_from_invoicing_over_grpc() -> None:
    pdf = sample_pdf(20_000)
    server = grpc.aio.server()
    invoicing_pb2_grpc.add_InvoicingServiceServicer_to_server(_Invoicing(pdf), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    documents = GrpcInvoiceDocuments(f"127.0.0.1:{port}", TEST_TOKEN, timeout=5)
    try:
        attachment = await documents.fetch("inv_1", "invoice_pdf")
        assert (attachment.file_name, attachment.media_type) == (
            "INV-2027-000001.pdf",
            "application/pdf",
        )
        assert attachment.content == pdf
        with pytest.raises(PermanentFailure, match="INVOICE_NOT_FOUND"):
            await documents.fetch("inv_2", "invoice_pdf")
    finally:
        await documents.aclose()
        await server.stop(0)
    with pytest.raises(TemporaryFailure, match="UNAVAILABLE"):
        await GrpcInvoiceDocuments(f"127.0.0.1:{port}", TEST_TOKEN, timeout=2).fetch(
            "inv_1", "invoice_pdf"
        )
    await asyncio.sleep(0)


def test_concurrent_row_claims_take_each_due_message_once(engine: Engine) -> None:
    # The dispatcher's claim (ADR 0080): webhooks as plain rows, e-mails as entities; of
    # dispatchers claiming at the same time each message still goes to exactly one.
    sessions = session_factory(engine)
    clock = ManualClock(NOW)
    with SqlNotificationsUnitOfWork(sessions, clock=clock) as uow:
        for n in range(90):
            message = _message(f"msg_{n:03}")
            message.event_id = f"evt_{n}"
            message.next_attempt_at = NOW - timedelta(seconds=n % 7)
            if n % 3:
                message.channel, message.recipient = Channel.WEBHOOK, "whe_1"
                message.payload = {"body": {"n": n}}
                message.status_version = 2
            uow.messages.add(message)
        uow.commit()
    start = threading.Barrier(3)

    def claim() -> list[str]:
        taken: list[str] = []
        start.wait()
        while True:
            with SqlNotificationsUnitOfWork(sessions, clock=clock) as uow:
                webhooks, others = uow.messages.claim_due_rows(NOW, 10, timedelta(minutes=5))
                uow.commit()
            if not webhooks and not others:
                return taken
            assert all(m.channel is Channel.EMAIL for m in others)
            assert all(m.lease_until == NOW + timedelta(minutes=5) for m in others)
            for webhook in webhooks:
                assert webhook.payload == {"body": {"n": int(webhook.event_id[4:])}}
                assert (webhook.attempts, webhook.status_version, webhook.sent_at) == (0, 2, None)
                assert webhook.created_at == NOW
            due = [w.next_attempt_at for w in webhooks]
            assert due == sorted(due)
            taken += [w.message_id for w in webhooks] + [m.message_id for m in others]

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: claim(), range(3)))
    every = [message_id for taken in results for message_id in taken]
    assert sorted(every) == [f"msg_{n:03}" for n in range(90)]  # each once, none twice
    with SqlNotificationsUnitOfWork(sessions, clock=clock) as uow:
        assert uow.messages.claim_due_rows(NOW, 500, timedelta(minutes=5)) == ([], [])
