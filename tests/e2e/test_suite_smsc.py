"""`reckon up` starts an SMSC simulator beside the mail catcher (issue 12, item 3).

A suite of notifications alone, on its embedded defaults: SMPP_URL points at the
local SMSC, a low-balance event becomes an SMS that arrives there (kept in
DATA_DIR/sms, shown by `reckon sms list`), and the SMSC's delivery receipt moves
the message to DELIVERED.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from reckon.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from services.common.events import EventEnvelope, stream_for
from services.common.grpc_client import open_sync_channel
from suite.sms_cli import received_sms
from suite.supervisor import SuiteConfig, Supervisor
from tests.e2e.test_suite import embedded_defaults

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[Supervisor]:
    reports: list[str] = []
    supervisor = Supervisor(
        SuiteConfig(
            data_dir=tmp_path / "suite",
            services=["notifications"],
            free_ports=True,
            environ={
                k: v for k, v in embedded_defaults().items() if k not in ("SMTP_URL", "SMPP_URL")
            },
            start_timeout=45,
            stop_grace=5,
        ),
        report=reports.append,
    )
    supervisor.start()
    try:
        assert any(line.startswith("SMSC simulator on") for line in reports), reports
        yield supervisor
    finally:
        supervisor.stop()


def _publish(client: redis.Redis, source: str, event_type: str, payload: dict[str, object]) -> None:
    envelope = EventEnvelope(
        f"evt_{time.time_ns()}", event_type, source, "", datetime.now(UTC), payload
    )
    client.xadd(stream_for(source), {"envelope": envelope.to_json()})


def test_an_sms_reaches_the_suites_smsc_and_is_delivered(suite: Supervisor) -> None:
    assert suite.state is not None
    client = redis.Redis.from_url(suite.state.redis_url)
    _publish(client, "accounts", "CustomerCreated", {
        "customer_id": "cus_sms", "display_name": "Ada", "email": "ada@example.com",
        "phone_number": "+31612345678", "language_code": "en", "group_id": "",
    })  # fmt: skip
    _publish(client, "accounts", "AccountCreated", {
        "account_id": "acc_sms", "customer_id": "cus_sms", "time_zone": "UTC",
    })  # fmt: skip
    _publish(client, "charging", "BalanceLow", {
        "account_id": "acc_sms", "balance": {"amount": "0.40", "currency": "EUR"},
        "threshold": {"amount": "0.50", "currency": "EUR"},
    })  # fmt: skip
    [service] = suite.state.services
    token = suite.token.value if suite.token else ""
    channel = open_sync_channel(service.address, token)
    stub = notifications_pb2_grpc.NotificationsServiceStub(channel)
    deadline = time.monotonic() + 60
    sms: list[notifications_pb2.Message] = []
    while time.monotonic() < deadline:
        reply = stub.ListMessages(notifications_pb2.ListMessagesRequest(customer_id="cus_sms"))
        sms = [m for m in reply.messages if m.channel == notifications_pb2.CHANNEL_SMS]
        if sms and sms[0].status == notifications_pb2.MESSAGE_STATUS_DELIVERED:
            break
        time.sleep(0.3)
    channel.close()
    assert [m.status for m in sms] == [notifications_pb2.MESSAGE_STATUS_DELIVERED]
    [arrived] = received_sms(suite.data_dir)
    assert arrived.destination == "31612345678"
    assert arrived.text == "Reckon: your balance is 0.40 EUR, below 0.50 EUR. Please top up."
