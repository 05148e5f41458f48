"""The gateway's credential store on SQLite and PostgreSQL, and its pure pieces:
proto -> JSON, problem details, rate limits, aging buckets, SVG charts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from google.type import date_pb2, money_pb2

from gateway.charts import bar_chart
from gateway.problems import from_details
from gateway.proto_json import model_for, to_json
from gateway.ratelimit import MemoryRateLimiter
from gateway.reports import aging_bucket
from gateway.store import CredentialStore
from reckon.charging.v1 import charging_pb2
from reckon.invoicing.v1 import invoicing_pb2
from services.common.grpc_errors import details_of_status
from tests.conftest import TestDatabase


@pytest.fixture
def store(database: TestDatabase) -> Iterator[CredentialStore]:
    opened = CredentialStore.open(database.url, database.schema)
    yield opened
    opened.engine.dispose()


def test_api_keys_are_kept_as_hashes_and_verified(store: CredentialStore) -> None:
    client, key = store.add_api_client("crm", frozenset({"read", "write"}))
    client_id, secret = key.split(".", 1)
    assert store.verify_client(client_id, secret) == client
    assert store.verify_client(client_id, secret + "x") is None
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT secret_sha256 FROM gateway_api_clients").scalar()
    assert secret not in str(stored)
    assert store.disable_client(client_id)
    assert store.verify_client(client_id, secret) is None


def test_logins_hash_passwords_and_sessions_expire(store: CredentialStore) -> None:
    with pytest.raises(ValueError, match="8 characters"):
        store.add_login("short@example.com", "short", customer_id="cus_1")
    login = store.add_login("Ann@Example.com", "correct horse", customer_id="cus_1")
    assert login.login == "ann@example.com"
    assert store.verify_password("ANN@example.com", "correct horse") == login
    assert store.verify_password("ann@example.com", "wrong horse") is None
    assert store.verify_password("nobody@example.com", "correct horse") is None
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT password_hash FROM gateway_logins").scalar()
    assert str(stored).startswith("$argon2id$")
    token, session = store.open_session(login, hours=1)
    found = store.session(token)
    assert found is not None
    assert found.login.customer_id == "cus_1"
    assert found.csrf_token == session.csrf_token
    store.close_session(token)
    assert store.session(token) is None


def test_the_audit_log_pages_in_order(store: CredentialStore) -> None:
    for status in (201, 400, 404):
        store.audit(
            principal="client:cli_x",
            customer_id=None,
            method="POST",
            path="/v1/customers",
            status=status,
            request_id=f"k{status}",
            remote="127.0.0.1",
        )
    first = store.audit_page(0, 2)
    assert [e.status for e in first] == [201, 400]
    assert [e.status for e in store.audit_page(first[-1].seq, 2)] == [404]


def test_json_follows_the_protos_with_exact_money_and_dates() -> None:
    invoice = invoicing_pb2.Invoice(invoice_id="inv_1", status=invoicing_pb2.INVOICE_STATUS_OPEN)
    invoice.total_gross.CopyFrom(money_pb2.Money(currency_code="EUR", units=12, nanos=500_000_000))
    invoice.amount_due.CopyFrom(money_pb2.Money(currency_code="EUR", units=-1, nanos=-10_000_000))
    invoice.due_date.CopyFrom(date_pb2.Date(year=2027, month=1, day=5))
    body = to_json(invoice)
    assert body["total_gross"] == {"currency_code": "EUR", "amount": "12.5"}
    assert body["amount_due"] == {"currency_code": "EUR", "amount": "-1.01"}
    assert body["due_date"] == "2027-01-05"
    assert body["status"] == "INVOICE_STATUS_OPEN"
    assert body["issue_date"] is None
    assert body["lines"] == []
    model_for(invoicing_pb2.Invoice.DESCRIPTOR).model_validate(body)
    big = money_pb2.Money(currency_code="EUR", units=10**15, nanos=1)
    assert (
        to_json(charging_pb2.Quantity(money=big))["money"]["amount"] == "1000000000000000.000000001"
    )


def test_a_rich_status_becomes_problem_details() -> None:
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad")
    for detail in (
        error_details_pb2.ErrorInfo(reason="UNKNOWN_PLAN", domain="reckon.accounts"),
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field="plan_code", description="no")
            ]
        ),
    ):
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    answer = from_details(details_of_status(status))
    assert answer.status_code == 400
    assert answer.media_type == "application/problem+json"
    assert b'"reason":"UNKNOWN_PLAN"' in bytes(answer.body)
    assert b'"field":"plan_code"' in bytes(answer.body)
    assert details_of_status(status).code is grpc.StatusCode.INVALID_ARGUMENT


def test_the_rate_limiter_refills_over_time() -> None:
    limiter = MemoryRateLimiter(per_minute=120)  # 2 per second
    assert all(limiter.take_now("k") == 0 for _ in range(120))
    wait = limiter.take_now("k")
    assert 0 < wait <= 0.5
    assert limiter.take_now("other") == 0
    time.sleep(0.6)
    assert limiter.take_now("k") == 0


def test_the_rate_limiter_forgets_idle_keys_when_it_has_too_many(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    clock = [1000.0]
    monkeypatch.setattr("gateway.ratelimit.time.monotonic", lambda: clock[0])
    monkeypatch.setattr(MemoryRateLimiter, "MAX_KEYS", 3)
    limiter = MemoryRateLimiter(per_minute=60)  # a bucket refills completely in 60 s
    for key in ("a", "b", "c", "d"):
        limiter.take_now(key)
    clock[0] += 30
    limiter.take_now("e")  # too many keys, but none is full again yet: all kept
    assert set(limiter._buckets) == {"a", "b", "c", "d", "e"}
    clock[0] += 31
    limiter.take_now("f")  # a-d refilled (61 s), e not (31 s)
    assert set(limiter._buckets) == {"e", "f"}


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (-3, "not_due"),
        (0, "not_due"),
        (1, "0-30"),
        (30, "0-30"),
        (31, "31-60"),
        (60, "31-60"),
        (61, "61-90"),
        (90, "61-90"),
        (91, "90+"),
    ],
)
def test_aging_buckets_have_the_documented_edges(days: int, bucket: str) -> None:
    assert aging_bucket(days) == bucket


def test_charts_escape_labels_and_scale_to_the_largest_value() -> None:
    svg = bar_chart(["<b>", "x"], [Decimal("2"), Decimal("1")], title="t & t")
    assert "<b>" not in svg.replace("<title>", "")
    assert "&lt;b&gt;" in svg
    assert "t &amp; t" in svg
    assert svg.count("<rect") == 2


def test_service_calls_carry_the_token_the_scope_and_the_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gateway import clients

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sent: dict[str, str] = {}

    class Stub:
        async def GetAccount(self, request: object, metadata: object, timeout: float) -> str:  # noqa: ASYNC109
            sent.update(dict(metadata))  # type: ignore[call-overload]
            return "answer"

    stub = clients.TracedStub(
        Stub(), "reckon.accounts.v1.AccountsService", "s3cret-token", tracer_provider=provider
    )
    scope = (("x-reckon-customer-id", "cus_1"),)
    assert asyncio.run(stub.GetAccount("request", metadata=scope, timeout=1.0)) == "answer"
    assert sent["authorization"] == "Bearer s3cret-token"
    assert sent["x-reckon-customer-id"] == "cus_1"
    (span,) = exporter.get_finished_spans()
    assert span.name == "/reckon.accounts.v1.AccountsService/GetAccount"
    assert span.context is not None
    assert f"{span.context.trace_id:032x}" in sent["traceparent"]


def test_every_language_has_every_preference_word() -> None:
    from gateway.i18n import LANGUAGES, TEXTS
    from gateway.i18n_preferences import PREFERENCE_TEXTS

    assert set(PREFERENCE_TEXTS) == set(LANGUAGES)
    keys = set(PREFERENCE_TEXTS["en"])
    for lang in LANGUAGES:
        assert set(PREFERENCE_TEXTS[lang]) == keys, lang
        assert keys <= set(TEXTS[lang])
        assert all(TEXTS[lang][key].strip() for key in keys)
