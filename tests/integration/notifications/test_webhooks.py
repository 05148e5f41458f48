"""Webhooks end to end: registered through the API, signed, verified by an independent
receiver, retried on the conventions' schedule, disabled after 5 days, replayed, rotated."""

from __future__ import annotations

import json
from datetime import timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from reckon.notifications.v1 import notifications_pb2 as pb
from services.notifications.domain.model import WEBHOOK_SCHEDULE, Channel, MessageStatus
from tests.integration.notifications.conftest import Notifications


async def endpoint(n: Notifications, *types: str) -> pb.WebhookEndpoint:
    reply = await n.stub.CreateWebhookEndpoint(
        pb.CreateWebhookEndpointRequest(
            endpoint=pb.WebhookEndpoint(
                url=n.receiver.url,
                event_types=list(types),
                owner_email="ops@crm.example.com",
                description="CRM",
            ),
            request_id="req-1",
        )
    )
    n.receiver.secrets = [reply.endpoint.secret]
    created: pb.WebhookEndpoint = reply.endpoint
    return created


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


async def test_every_business_event_is_delivered_signed(notifications: Notifications) -> None:
    n = notifications
    hook = await endpoint(n)
    assert hook.secret.startswith("whsec_")
    again = await n.stub.CreateWebhookEndpoint(
        pb.CreateWebhookEndpointRequest(
            endpoint=pb.WebhookEndpoint(
                url=n.receiver.url, owner_email="ops@crm.example.com", description="CRM"
            ),
            request_id="req-1",
        )
    )
    assert again.endpoint.endpoint_id == hook.endpoint_id  # the request_id replays
    await n.customer()
    event_id = await n.publish("payments", "PaymentFailed", {
        "payment_id": "pay_1", "customer_id": "cus_ada",
        "amount": {"amount": "9.99", "currency": "EUR"},
    })  # fmt: skip
    await n.wait_messages(4)  # 2 accounts events + payment (webhook) + payment (e-mail)
    while await n.dispatch():
        pass
    bodies = [json.loads(body) for _, body, _ in n.receiver.received]
    assert sorted(b["type"] for b in bodies) == [
        "AccountCreated",
        "CustomerCreated",
        "PaymentFailed",
    ]
    assert all(verified for _, _, verified in n.receiver.received)
    [(headers, body, _)] = [r for r in n.receiver.received if b"PaymentFailed" in r[1]]
    assert headers["webhook-id"] == event_id
    assert json.loads(body)["data"]["payment_id"] == "pay_1"
    log = await n.stub.ListWebhookAttempts(
        pb.ListWebhookAttemptsRequest(endpoint_id=hook.endpoint_id)
    )
    assert [a.response_code for a in log.attempts] == [200, 200, 200]


async def test_retry_schedule_then_failed_and_replay(notifications: Notifications) -> None:
    n = notifications
    hook = await endpoint(n, "InvoiceVoided")
    n.receiver.status = 503
    await n.publish("invoicing", "InvoiceVoided", {"invoice_id": "inv_9", "reason": "typo"})
    [message] = await n.wait_messages(1)
    start = n.clock.now()
    delays = []
    for _ in WEBHOOK_SCHEDULE:
        assert await n.dispatch() == 1
        [message] = n.all_messages()
        assert message.status is MessageStatus.QUEUED
        delays.append(message.next_attempt_at - n.clock.now())
        n.clock.set(message.next_attempt_at - timedelta(milliseconds=1))
        assert await n.dispatch() == 0  # a millisecond early: not attempted
        n.clock.set(message.next_attempt_at)
    assert delays == list(WEBHOOK_SCHEDULE)
    assert await n.dispatch() == 1  # the eighth attempt, the schedule's end
    [message] = n.all_messages()
    assert message.status is MessageStatus.FAILED
    assert message.response_code == 503
    assert n.clock.now() - start == sum(WEBHOOK_SCHEDULE, timedelta())
    assert len(n.receiver.received) == 8

    n.receiver.status = 200
    replayed = await n.stub.ReplayWebhookMessages(
        pb.ReplayWebhookMessagesRequest(endpoint_id=hook.endpoint_id, message_id=message.message_id)
    )
    assert replayed.queued == 1
    assert await n.dispatch() == 1
    assert n.all_messages()[0].status is MessageStatus.SENT
    # A time range: everything the endpoint got in the last two days, again.
    since, until = Timestamp(), Timestamp()
    since.FromDatetime(start - timedelta(days=1))
    until.FromDatetime(n.clock.now())
    replayed = await n.stub.ReplayWebhookMessages(
        pb.ReplayWebhookMessagesRequest(
            endpoint_id=hook.endpoint_id, start_time=since, end_time=until
        )
    )
    assert replayed.queued == 1
    assert await n.dispatch() == 1
    assert len(n.receiver.received) == 10
    assert len({h["webhook-id"] for h, _, _ in n.receiver.received}) == 1


async def test_an_endpoint_failing_for_five_days_is_disabled_and_its_owner_told(
    notifications: Notifications,
) -> None:
    n = notifications
    hook = await endpoint(n, "InvoiceVoided")
    n.receiver.status = 500
    for day in range(6):
        await n.publish("invoicing", "InvoiceVoided", {"invoice_id": f"inv_{day}", "reason": "x"})
        await n.wait_messages(day + 1)
        await n.dispatch()
        n.clock.advance(timedelta(days=1))
    got = await n.stub.GetWebhookEndpoint(
        pb.GetWebhookEndpointRequest(endpoint_id=hook.endpoint_id)
    )
    assert not got.endpoint.enabled
    assert "5 days" in got.endpoint.disabled_reason
    [notice] = [m for m in n.all_messages() if m.channel is Channel.EMAIL]
    assert (notice.recipient, notice.template) == ("ops@crm.example.com", "webhook_disabled")
    await n.dispatch()
    [mail] = n.catcher.messages()
    assert b"was disabled" in mail.read_bytes()
    # Nothing more goes to a disabled endpoint, until it is enabled again.
    sent_before = len(n.receiver.received)
    await n.publish("invoicing", "InvoiceVoided", {"invoice_id": "inv_x", "reason": "x"})
    n.clock.advance(timedelta(days=1))
    await n.dispatch()
    assert len(n.receiver.received) == sent_before
    enabled = await n.stub.EnableWebhookEndpoint(
        pb.EnableWebhookEndpointRequest(endpoint_id=hook.endpoint_id)
    )
    assert enabled.endpoint.enabled


async def test_a_delivery_after_failures_clears_the_failure_record(
    notifications: Notifications,
) -> None:
    # Successes clear an endpoint's failure record without loading it (one conditional
    # UPDATE, the version moved on): 5 days of failure then count from the next failure.
    n = notifications
    hook = await endpoint(n, "InvoiceVoided")

    def record() -> tuple[object, int]:
        with n.service.app.uow_factory() as uow:
            found = uow.endpoints.get(hook.endpoint_id)
            assert found is not None
            return found.failing_since, found.version

    n.receiver.status = 500
    await n.publish("invoicing", "InvoiceVoided", {"invoice_id": "inv_1", "reason": "x"})
    await n.wait_messages(1)
    await n.dispatch()
    failing_since, version = record()
    assert failing_since == n.clock.now()
    n.clock.advance(timedelta(days=4))
    n.receiver.status = 200
    await n.publish("invoicing", "InvoiceVoided", {"invoice_id": "inv_2", "reason": "x"})
    await n.wait_messages(2)
    await n.dispatch()  # inv_1's retry is due too: both delivered
    assert record() == (None, version + 1)
    n.clock.advance(timedelta(days=2))
    n.receiver.status = 500
    await n.publish("invoicing", "InvoiceVoided", {"invoice_id": "inv_3", "reason": "x"})
    await n.wait_messages(3)
    await n.dispatch()
    got = await n.stub.GetWebhookEndpoint(
        pb.GetWebhookEndpointRequest(endpoint_id=hook.endpoint_id)
    )
    assert got.endpoint.enabled  # 6 days after the first failure, but it delivered since
    assert record()[0] == n.clock.now()
    assert [m.status for m in n.all_messages()] == [
        MessageStatus.SENT,
        MessageStatus.SENT,
        MessageStatus.QUEUED,
    ]


async def test_secret_rotation_keeps_both_secrets_valid_for_a_while(
    notifications: Notifications,
) -> None:
    n = notifications
    hook = await endpoint(n, "InvoiceVoided")
    rotated = await n.stub.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(endpoint_id=hook.endpoint_id)
    )
    assert rotated.endpoint.secret != hook.secret
    assert rotated.endpoint.previous_secret_expire_time.ToDatetime() > n.clock.now().replace(
        tzinfo=None
    )
    n.receiver.secrets = [hook.secret]  # a receiver not yet updated still verifies
    await n.publish("invoicing", "InvoiceVoided", {"invoice_id": "inv_1", "reason": "x"})
    await n.wait_messages(1)
    await n.dispatch()
    assert [v for _, _, v in n.receiver.received] == [True]
    n.clock.advance(timedelta(hours=25))  # the old secret no longer signs
    await n.publish("invoicing", "InvoiceVoided", {"invoice_id": "inv_2", "reason": "x"})
    await n.wait_messages(2)
    await n.dispatch()
    assert [v for _, _, v in n.receiver.received] == [True, False]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://crm.example.com/hook", "scheme must be http or https"),
        ("file:///etc/passwd", "scheme must be http or https"),
        ("http://127.0.0.1:50051/x", "suite's own service port 50051"),
        ("http://localhost:50057/", "suite's own service port 50057"),
        ("https://user:pw@crm.example.com/", "credentials in the URL"),
    ],
)
async def test_bad_webhook_targets_are_refused_naming_the_field(
    notifications: Notifications, url: str, problem: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifications.stub.CreateWebhookEndpoint(
            pb.CreateWebhookEndpointRequest(
                endpoint=pb.WebhookEndpoint(url=url, owner_email="ops@crm.example.com")
            )
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert problem in violations(caught.value)["endpoint.url"]
