"""The dispatcher: sends queued messages, records each attempt, schedules retries.

Each message is taken with a lease (a conditional UPDATE, so of several
dispatchers one sends it), built (template rendered, documents fetched), handed
to its channel, and the outcome recorded afterwards, with other outcomes, in one
transaction per batch (ADR 0068):
- accepted: SENT (SMS: DELIVERED or BOUNCED later, from the delivery receipt);
- temporary failure (server down, 4xx, timeout, webhook non-2xx): queued again
  after the channel's next delay (ADR 0031), never dropped;
- permanent failure (5xx for the recipient, a template that fails to render):
  FAILED or BOUNCED with the reason; ``RetryMessage`` queues it again.
A crash between the server's acceptance and the record leaves the lease to
expire and the message (at most its batch) is sent again with the same
Message-ID / webhook-id, so the receiver recognises the repeat (ADR 0031).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from opentelemetry import trace
from opentelemetry.propagate import extract

from services.common.clock import Clock
from services.common.errors import Aborted
from services.common.ids import new_id
from services.common.telemetry import tracer
from services.notifications.domain.model import (
    Category,
    Channel,
    Message,
    MessageStatus,
    WebhookEndpoint,
    next_attempt_at,
)
from services.notifications.domain.signing import sign
from services.notifications.service_layer.handlers import announce
from services.notifications.service_layer.ports import (
    Attachment,
    EmailSender,
    InvoiceDocuments,
    OutgoingEmail,
    PermanentFailure,
    Renderer,
    SmsGateway,
    TemplateProblem,
    TemporaryFailure,
    WebhookSender,
)
from services.notifications.service_layer.unit_of_work import (
    ClaimedWebhook,
    DeliveryAttempt,
    NotificationsUnitOfWork,
)

log = logging.getLogger(__name__)

_RECORD_ATTEMPTS = 10


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, recorded with others in one transaction.

    ``kind``: ``sent``, ``retry`` (temporary failure), ``failed``, ``bounced``, or
    ``webhook`` (a delivery: ``detail`` empty on success, else the error).
    """

    # As claimed: an entity (detached) the record applies the outcome to, or a webhook's
    # plain row whose outcome the record writes as the entity's transition would (ADR 0080).
    message: Message | ClaimedWebhook
    kind: str
    detail: str
    refs: tuple[str, ...] = ()
    code: int = 0
    elapsed_ms: int = 0
    attempted_at: datetime | None = None

    @property
    def message_id(self) -> str:
        return self.message.message_id


class _Recorder:
    """Collects outcomes as attempts finish and records them by group commit.

    An outcome is written as soon as no write is in flight; while one is, the
    outcomes that finish meanwhile collect and go in the next write (at most
    ``size`` a transaction). So the sends never wait for the database, batches grow
    only as far as the database is slower than the sends, and a crash re-sends only
    the few outcomes not yet written (the write in flight and what finished during
    it), never a fixed batch. Writes happen one after the other. ``close``
    writes what is left and raises the first failure: the messages of a batch that
    could not be written keep their lease and are attempted again when it ends.
    """

    def __init__(self, record: Callable[[Sequence[Outcome]], None], size: int) -> None:
        self._record = record
        self._size = size
        self._pending: list[Outcome] = []
        self._writes: list[asyncio.Task[None]] = []

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        if len(self._pending) >= self._size or not self._writes or self._writes[-1].done():
            self._start()

    def _start(self) -> None:
        batch, self._pending = self._pending, []
        previous = self._writes[-1] if self._writes else None

        async def write() -> None:
            if previous is not None:
                # One write at a time; the previous one's failure is close()'s to raise.
                await asyncio.wait([previous])
            await asyncio.to_thread(self._record, batch)

        self._writes.append(asyncio.create_task(write()))

    async def close(self) -> None:
        if self._pending:
            self._start()
        outcomes = await asyncio.gather(*self._writes, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise failures[0]


@dataclass(frozen=True)
class DispatchSettings:
    mail_from: str = "Reckon <billing@reckon.localhost>"
    message_id_domain: str = "notifications.reckon"
    sms_sender: str = "Reckon"
    lease: timedelta = timedelta(minutes=5)
    batch_size: int = 100
    concurrency: int = 16
    # At most this many outcomes per transaction. Outcomes are written by group commit
    # (as soon as the previous write is done), so a crash re-sends only those not yet
    # written, with the same Message-ID / webhook-id, once their lease ends.
    record_batch: int = 50


def email_message_id(event_id: str, recipient: str, domain: str) -> str:
    """Message-ID of the e-mail for this event and recipient: a resend carries the same one."""
    digest = hashlib.sha256(recipient.lower().encode()).hexdigest()[:16]
    return f"<{event_id}.{digest}@{domain}>"


def sms_reference(message_id: str) -> int:
    return hashlib.sha256(message_id.encode()).digest()[0]


class Dispatcher:
    def __init__(
        self,
        uow_factory: Callable[[], NotificationsUnitOfWork],
        clock: Clock,
        *,
        renderer: Renderer,
        email: EmailSender | None,
        sms: SmsGateway | None,
        webhooks: WebhookSender | None,
        documents: InvoiceDocuments | None,
        settings: DispatchSettings = DispatchSettings(),
        poll_interval: float = 0.5,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._renderer = renderer
        self._email = email
        self._sms = sms
        self._webhooks = webhooks
        self._documents = documents
        self.settings = settings
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # This process's writes to the queue, one at a time: on SQLite concurrent writers
        # wait in the busy handler's sleeps (most of a send's cost at 16 at once), and
        # each write is one short transaction anyway.
        self._writing = threading.Lock()

    def notify(self) -> None:
        """Wake the dispatcher (from any thread): new messages were queued."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                sent = await self.dispatch_once()
                await self.poll_receipts()
            except Exception:
                log.exception("notifications dispatcher pass failed; retrying")
                sent = 0
            if sent < self.settings.batch_size:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval)

    async def dispatch_once(self) -> int:
        """Attempt every message due now; returns how many were attempted.

        The batch is claimed in one statement and loaded in one query; the
        messages go out ``concurrency`` at once over the channels' pooled
        connections, and their outcomes are recorded ``record_batch`` at a time,
        each batch in one transaction (status updates, SMS refs, the delivery log
        and the outbox rows together).
        """
        claimed, endpoints = await asyncio.to_thread(self._claim_due)
        if not claimed:
            return 0
        recorder = _Recorder(self._record_batch, self.settings.record_batch)
        # ``concurrency`` workers take the messages one after the other from one iterator
        # (each message to one worker): no task and no semaphore wait per message.
        queue = iter(claimed)

        async def worker() -> None:
            for message in queue:
                recorder.add(await self._attempt_claimed(message, endpoints))

        workers = min(self.settings.concurrency, len(claimed))
        try:
            await asyncio.gather(*(worker() for _ in range(workers)))
        finally:
            await recorder.close()
        return len(claimed)

    def _claim_due(
        self,
    ) -> tuple[list[Message | ClaimedWebhook], dict[str, WebhookEndpoint]]:
        """Take the due messages for one attempt each (with a lease), and load them.

        Webhooks come as plain rows (ADR 0080), e-mails and SMS as entities; together
        oldest due first, as claimed."""
        with self._writing, self._uow_factory() as uow:
            now = self._clock.now()
            webhooks, others = uow.messages.claim_due_rows(
                now, self.settings.batch_size, self.settings.lease
            )
            endpoints = uow.endpoints.get_many(sorted({w.recipient for w in webhooks}))
            uow.commit()
        claimed: list[Message | ClaimedWebhook] = (
            list(heapq.merge(webhooks, others, key=_DUE)) if others else list(webhooks)
        )
        return claimed, endpoints

    async def attempt(self, message_id: str) -> bool:
        """Attempt one message now if it is queued and no dispatcher holds it."""

        def claim() -> tuple[Message | None, dict[str, WebhookEndpoint]]:
            with self._writing, self._uow_factory() as uow:
                now = self._clock.now()
                if not uow.messages.claim_many([message_id], now, self.settings.lease):
                    return None, {}
                message = uow.messages.get(message_id)
                endpoints = uow.endpoints.get_many([message.recipient] if message else [])
                uow.commit()
            return message, endpoints

        message, endpoints = await asyncio.to_thread(claim)
        if message is None:
            return False  # another dispatcher has it, or it is no longer queued
        outcome = await self._attempt_claimed(message, endpoints)
        await asyncio.to_thread(self._record_batch, [outcome])
        return True

    async def _attempt_claimed(
        self, message: Message | ClaimedWebhook, endpoints: Mapping[str, WebhookEndpoint]
    ) -> Outcome:
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            # No tracer provider is set up (telemetry off): the span would be a no-op that
            # still cost about 10 us a send (ADR 0079). Once one is set, every send has it.
            return await self._attempt_untraced(message, endpoints)
        with tracer().start_as_current_span(
            f"reckon.notifications.send {message.channel.value}",
            context=extract(message.trace_context or {}),
            kind=trace.SpanKind.CLIENT,
            attributes={
                "reckon.message.id": message.message_id,
                "reckon.event.id": message.event_id,
                "reckon.event.type": message.event_type,
            },
        ):
            return await self._attempt_untraced(message, endpoints)

    async def _attempt_untraced(
        self, message: Message | ClaimedWebhook, endpoints: Mapping[str, WebhookEndpoint]
    ) -> Outcome:
        try:
            if isinstance(message, ClaimedWebhook) or message.channel is Channel.WEBHOOK:
                return await self._attempt_webhook(message, endpoints.get(message.recipient))
            return await self._attempt(message)
        except Exception as exc:  # a bug or an unforeseen failure: retried, never lost
            log.exception("message %s: attempt failed unexpectedly", message.message_id)
            return Outcome(message, "retry", f"{type(exc).__name__}: {exc}")

    async def _attempt(self, message: Message) -> Outcome:
        refs: list[str] = []
        try:
            if message.channel is Channel.EMAIL:
                answer = await self._send_email(message)
            else:
                refs = await self._send_sms(message)
                answer = ",".join(refs)
        except TemplateProblem as exc:
            return Outcome(message, "failed", str(exc))
        except PermanentFailure as exc:
            return Outcome(message, "bounced", str(exc))
        except (TemporaryFailure, OSError, TimeoutError) as exc:
            return Outcome(message, "retry", str(exc) or type(exc).__name__)
        return Outcome(message, "sent", answer, refs=tuple(refs))

    async def _send_email(self, message: Message) -> str:
        if self._email is None:
            raise TemporaryFailure("no SMTP server is configured (SMTP_URL)")
        rendered = self._renderer.email(message.template, message.language, message.payload)
        attachments: list[Attachment] = []
        for kind in message.payload.get("attach", []):
            if self._documents is None:
                raise TemporaryFailure("invoicing is not configured (INVOICING_ADDR)")
            attachments.append(await self._documents.fetch(message.invoice_id, kind))
        email_id = email_message_id(
            message.event_id, message.recipient, self.settings.message_id_domain
        )
        await self._email.send(
            OutgoingEmail(
                message_id=email_id,
                to=message.recipient,
                subject=rendered.subject,
                text=rendered.text,
                html=rendered.html,
                attachments=attachments,
                headers={"X-Reckon-Event-Id": message.event_id},
            )
        )
        return email_id

    async def _send_sms(self, message: Message) -> list[str]:
        if self._sms is None:
            raise TemporaryFailure("no SMSC is configured (SMPP_URL)")
        text = self._renderer.sms(message.template, message.language, message.payload)
        return await self._sms.send(
            self.settings.sms_sender,
            message.recipient,
            text,
            sms_reference(message.message_id),
        )

    # -- webhooks ---------------------------------------------------------------------------
    async def _attempt_webhook(
        self, message: Message | ClaimedWebhook, endpoint: WebhookEndpoint | None
    ) -> Outcome:
        if endpoint is None or not endpoint.enabled or self._webhooks is None:
            reason = "endpoint disabled" if endpoint is not None else "endpoint deleted"
            if self._webhooks is None:
                reason = "webhook delivery is not configured"
            return Outcome(message, "failed", reason)
        now = self._clock.now()
        body = _json_bytes(message.payload["body"])
        headers = {
            "content-type": "application/json",
            "webhook-id": message.event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": sign(endpoint.signing_secrets(now), message.event_id, now, body),
            "user-agent": "Reckon-Webhooks/1",
        }
        started = time.perf_counter()
        code, error = 0, ""
        try:
            response = await self._webhooks.post(endpoint.url, headers, body)
            code = response.status_code
            if not 200 <= code < 300:
                error = f"HTTP {code}: {response.body[:200]}"
        except TemporaryFailure as exc:
            error = str(exc) or "no answer"
        elapsed = int((time.perf_counter() - started) * 1000)
        return Outcome(message, "webhook", error, code=code, elapsed_ms=elapsed, attempted_at=now)

    # -- recording outcomes -----------------------------------------------------------------
    def _record_batch(self, outcomes: Sequence[Outcome]) -> None:
        """Apply the outcomes to the claimed messages and write them in one transaction.

        While a dispatcher holds a message's lease nobody else changes it (RetryMessage
        and replays leave queued messages alone), so the outcome is applied to the
        message as claimed and written with one executemany UPDATE, not read again.
        """
        now = self._clock.now()
        refs: list[tuple[str, str]] = []
        attempts: list[DeliveryAttempt] = []
        deliveries: list[tuple[str, bool]] = []  # (endpoint, delivered) in order
        rows: list[dict[str, object]] = []  # outcomes of webhooks claimed as plain rows
        messages: list[Message] = []
        for outcome in outcomes:
            message = outcome.message
            if isinstance(message, ClaimedWebhook):
                if outcome.kind == "webhook":
                    attempts.append(
                        DeliveryAttempt(
                            new_id("wha"),
                            message.recipient,
                            message.message_id,
                            message.event_type,
                            outcome.attempted_at or now,
                            outcome.code,
                            outcome.detail[:1000],
                            outcome.elapsed_ms,
                        )
                    )
                    deliveries.append((message.recipient, not outcome.detail))
                row = _claimed_outcome_row(message, outcome, now)
                rows.append(row)
                if outcome.kind != "webhook":
                    log.warning("message %s: %s", message.message_id, row["b_last_error"])
                continue
            messages.append(message)
            if outcome.kind == "webhook":
                attempts.append(
                    DeliveryAttempt(
                        attempt_id=new_id("wha"),
                        endpoint_id=message.recipient,
                        message_id=message.message_id,
                        event_type=message.event_type,
                        attempted_at=outcome.attempted_at or now,
                        response_code=outcome.code,
                        error=outcome.detail[:1000],
                        duration_ms=outcome.elapsed_ms,
                    )
                )
                deliveries.append((message.recipient, not outcome.detail))
                if not outcome.detail:
                    message.sent(now, f"HTTP {outcome.code}", response_code=outcome.code)
                else:
                    message.failed_for_now(now, outcome.detail, response_code=outcome.code)
            elif outcome.kind == "sent":
                message.sent(now, outcome.detail)
                refs.extend((ref, message.message_id) for ref in outcome.refs)
            elif outcome.kind == "retry":
                message.failed_for_now(now, outcome.detail)
                log.warning(
                    "message %s: %s; attempt %d",
                    message.message_id,
                    outcome.detail,
                    message.attempts,
                )
            else:
                message.failed(now, outcome.detail, bounced=outcome.kind == "bounced")
                log.warning(
                    "message %s %s: %s", message.message_id, message.status.value, outcome.detail
                )
        # Webhook outcomes change their endpoint's failure record (a versioned row) and a
        # dispatcher in another process may change it too: the loser writes again.
        for attempt in range(1, _RECORD_ATTEMPTS + 1):
            try:
                with self._writing:
                    self._write_outcomes(messages, rows, refs, attempts, deliveries, now)
                return
            except Aborted:
                if attempt == _RECORD_ATTEMPTS:
                    raise

    def _write_outcomes(
        self,
        messages: Sequence[Message],
        rows: Sequence[dict[str, object]],
        refs: Sequence[tuple[str, str]],
        attempts: Sequence[DeliveryAttempt],
        deliveries: Sequence[tuple[str, bool]],
        now: datetime,
    ) -> None:
        with self._uow_factory() as uow:
            uow.messages.save_outcomes(messages)
            uow.messages.save_outcome_rows(rows)
            uow.messages.add_sms_refs(refs)
            uow.messages.log_attempts(attempts)
            for message in messages:
                if message.status is not MessageStatus.QUEUED:
                    announce(uow, message, now)
            # An endpoint whose deliveries in this batch all succeeded is cleared of any
            # failure with one UPDATE (usually of no row); those with a failure are loaded
            # and given each outcome in order (the first failure starts the 5 days).
            failing = {e for e, delivered in deliveries if not delivered}
            uow.endpoints.clear_failures(sorted({e for e, _ in deliveries} - failing))
            endpoints = uow.endpoints.get_many(sorted(failing))
            for endpoint_id, delivered in deliveries:
                if endpoint_id not in failing:
                    continue
                endpoint = endpoints.get(endpoint_id)
                if endpoint is None:
                    continue
                if delivered:
                    endpoint.delivered()
                elif endpoint.delivery_failed(now):
                    self._tell_owner(uow, endpoint_id, now)
            uow.commit()

    def _tell_owner(self, uow: NotificationsUnitOfWork, endpoint_id: str, now: datetime) -> None:
        endpoint = uow.endpoints.get(endpoint_id)
        assert endpoint is not None
        log.warning("webhook endpoint %s disabled: %s", endpoint_id, endpoint.disabled_reason)
        event_id = f"{endpoint_id}.disabled.{int(now.timestamp())}"
        notice = Message(
            message_id=new_id("msg"),
            event_id=event_id,
            event_type="WebhookEndpointDisabled",
            channel=Channel.EMAIL,
            recipient=endpoint.owner_email,
            customer_id="",
            invoice_id="",
            template="webhook_disabled",
            language="en",
            category=Category.SERVICE,
            payload={
                "event": {"endpoint_id": endpoint_id, "url": endpoint.url},
                "customer": {"display_name": "", "email": endpoint.owner_email},
                "attach": [],
            },
            status=MessageStatus.QUEUED,
            created_at=now,
            next_attempt_at=now,
            updated_at=now,
        )
        uow.messages.add(notice)
        announce(uow, notice, now)

    # -- SMS delivery receipts --------------------------------------------------------------
    async def poll_receipts(self) -> int:
        if self._sms is None:
            return 0
        receipts = await self._sms.receipts()
        if receipts:
            await asyncio.to_thread(self._apply_receipts, receipts)
        return len(receipts)

    def _apply_receipts(self, receipts: list[tuple[str, bool, str]]) -> None:
        with self._uow_factory() as uow:
            now = self._clock.now()
            for provider_id, delivered, state in receipts:
                message = uow.messages.by_sms_ref(provider_id)
                if message is None:
                    log.info("delivery receipt for unknown SMS %s (%s)", provider_id, state)
                    continue
                if message.receipt(now, delivered, f"SMSC: {state}"):
                    announce(uow, message, now)
            uow.commit()


_DUE = attrgetter("next_attempt_at")


def _claimed_outcome_row(
    claimed: ClaimedWebhook, outcome: Outcome, now: datetime
) -> dict[str, object]:
    """The attempt columns of a webhook claimed as a row, after ``outcome``: what
    ``Message.sent`` (delivered), ``Message.failed_for_now`` (not delivered, or retried
    after an unexpected error) and ``Message.failed`` (endpoint gone or disabled) would
    leave in the entity, without one (ADR 0080; tests compare the two)."""
    attempts = claimed.attempts + 1
    row: dict[str, object] = {
        "b_message_id": claimed.message_id,
        "b_status": MessageStatus.QUEUED,
        "b_attempts": attempts,
        "b_last_error": outcome.detail[:1000],
        "b_provider_ref": claimed.provider_ref,
        "b_response_code": outcome.code,
        "b_sent_at": claimed.sent_at,
        "b_updated_at": now,
        "b_lease_until": None,
        "b_next_attempt_at": claimed.next_attempt_at,
        "b_status_version": claimed.status_version,
    }
    if outcome.kind == "webhook" and not outcome.detail:
        row["b_status"] = MessageStatus.SENT
        row["b_status_version"] = claimed.status_version + 1
        row["b_provider_ref"] = f"HTTP {outcome.code}"
        row["b_sent_at"] = now
    elif outcome.kind in ("webhook", "retry"):
        retry_at = next_attempt_at(Channel.WEBHOOK, claimed.created_at, attempts, now)
        if retry_at is None:
            row["b_status"] = MessageStatus.FAILED
            row["b_status_version"] = claimed.status_version + 1
            row["b_last_error"] = f"gave up after {attempts} attempts: {row['b_last_error']}"
        else:
            row["b_next_attempt_at"] = retry_at
    else:  # failed or bounced: final, the response code stays the last one received
        row["b_status"] = (
            MessageStatus.BOUNCED if outcome.kind == "bounced" else MessageStatus.FAILED
        )
        row["b_status_version"] = claimed.status_version + 1
        row["b_response_code"] = claimed.response_code
    return row


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
