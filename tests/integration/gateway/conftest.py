"""The gateway in front of the real services.

Accounts, rating and charging run as ``reckon up`` runs them (child processes on free
ports, embedded Redis), once per module; the gateway app runs in-process (httpx
``TestClient``, its lifespan opening the real gRPC channels and its SQLite store) or,
for the browser, under uvicorn on a free port. A small catalog (two plans, flat
prices, no tax) keeps the figures easy to compute by hand.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.store import CredentialStore
from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.grpc_client import open_sync_channel
from suite.state import SuiteState
from suite.supervisor import SuiteConfig, Supervisor

CATALOG = """\
numbering: {country_code: "31", international_prefix: "00", national_prefix: "0"}
products:
  - {code: voice, unit: second}
  - {code: sms, unit: event}
destinations:
  - {name: NL, prefixes: ["31"]}
tax_regions:
  - code: NL
    taxes: [{code: VAT, name: BTW 0%, percent: "0"}]
plans:
  - code: basic
    name: Basic
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        rates:
          - id: nl
            service: voice
            destination: NL
            first_increment: 60
            next_increment: 60
            prices: {"*": {first: "0.10", next: "0.10"}}
          - {id: sms, service: sms, model: {kind: per_unit, price: "0.10"}}
  - code: plus
    name: Plus
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        rates:
          - id: nl
            service: voice
            destination: NL
            first_increment: 60
            next_increment: 60
            prices: {"*": {first: "0.05", next: "0.05"}}
          - {id: sms, service: sms, model: {kind: per_unit, price: "0.05"}}
"""
OUTSIDE_SETTINGS = (
    "REDIS_URL",
    "DATABASE_URL",
    "RECKON_SERVICE_TOKEN",
    "RECKON_DATA_DIR",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
WAIT_SECONDS = 20.0
# Known to the tests so they can sign provider callbacks as the PSP would.
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"reckon-gateway-test-webhook-key!").decode()


def start_services(data_dir: Path) -> Supervisor:
    environ = {
        name: value
        for name, value in os.environ.items()
        if name not in OUTSIDE_SETTINGS and not name.endswith(("_LISTEN", "_ADDR"))
    }
    supervisor = Supervisor(
        SuiteConfig(
            data_dir=data_dir,
            services=["accounts", "rating", "charging", "invoicing", "payments", "notifications"],
            free_ports=True,
            environ={
                **environ,
                "OTEL_SDK_DISABLED": "true",
                "PAYMENTS_WEBHOOK_SECRET": WEBHOOK_SECRET,
            },
            start_timeout=60,
            stop_grace=5,
        )
    )
    supervisor.start()
    return supervisor


def apply_catalog(state: SuiteState) -> None:
    channel = open_sync_channel(state.address_of("rating") or "", state.token(), traced=False)
    with channel:
        rating_pb2_grpc.RatingServiceStub(channel).ApplyCatalog(
            rating_pb2.ApplyCatalogRequest(
                document=CATALOG,
                format=rating_pb2.CATALOG_FORMAT_YAML,
                source_name="gateway-test.yaml",
                request_id=str(uuid.uuid4()),
            ),
            timeout=30,
        )


def gateway_settings(state: SuiteState, data_dir: Path, **overrides: Any) -> GatewaySettings:
    return GatewaySettings(
        service_token=SecretStr(state.token()),
        redis_url=state.redis_url,
        data_dir=data_dir,
        accounts_addr=state.address_of("accounts") or "",
        rating_addr=state.address_of("rating") or "",
        charging_addr=state.address_of("charging") or "",
        invoicing_addr=state.address_of("invoicing") or "",
        payments_addr=state.address_of("payments") or "",
        notifications_addr=state.address_of("notifications") or "",
        **overrides,
    )


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SuiteState]:
    supervisor = start_services(tmp_path_factory.mktemp("suite"))
    try:
        assert supervisor.state is not None
        apply_catalog(supervisor.state)
        yield supervisor.state
    finally:
        supervisor.stop()


@dataclass
class Gateway:
    """The app under test, its HTTP client and its credential store."""

    app: FastAPI
    http: httpx.Client  # a TestClient in-process, or a plain client of a live server
    store: CredentialStore

    def key(self, *scopes: str) -> dict[str, str]:
        _, key = self.store.add_api_client(f"test-{'-'.join(scopes) or 'none'}", frozenset(scopes))
        return {"Authorization": f"Bearer {key}"}

    def post(self, path: str, headers: dict[str, str], **body: Any) -> Any:
        answer = self.http.post(path, json=body, headers=headers)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()


@pytest.fixture(scope="module")
def gateway(suite: SuiteState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    settings = gateway_settings(suite, tmp_path_factory.mktemp("gateway"))
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver") as http:
        yield Gateway(app, http, app.state.store)


@dataclass
class CustomerSetup:
    customer_id: str
    account_id: str
    subscription_id: str
    login: str
    password: str
    invoice_id: str = ""  # set by tests that invoice the account


def new_customer(
    gw: Gateway, admin: dict[str, str], name: str, plan: str = "basic", mode: str = "PREPAID"
) -> CustomerSetup:
    """A customer with one account on ``plan`` and a self-care login, made through the API."""
    tag = uuid.uuid4().hex[:8]
    customer = gw.post(
        "/v1/customers", admin, display_name=name, email=f"{name.lower()}-{tag}@example.com"
    )
    body: dict[str, Any] = {
        "customer_id": customer["customer_id"],
        "display_name": f"{name}'s phone",
        "currency_code": "EUR",
        "time_zone": "Europe/Amsterdam",
        "tax_region": "NL",
        "payment_mode": f"PAYMENT_MODE_{mode}",
    }
    if mode != "PREPAID":
        body["credit_limit"] = "50"
    account = gw.post("/v1/accounts", admin, **body)
    subscription = gw.post(
        "/v1/subscriptions", admin, account_id=account["account_id"], plan_code=plan
    )
    login, password = f"{name.lower()}-{tag}@example.com", f"pw-{tag}-secret"
    gw.store.add_login(login, password, customer_id=customer["customer_id"])
    return CustomerSetup(
        customer["customer_id"],
        account["account_id"],
        subscription["subscription_id"],
        login,
        password,
    )


def wait_for(what: str, check: Any, timeout: float = WAIT_SECONDS) -> Any:
    """Poll ``check`` until it returns something truthy (services learn through events)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except grpc.RpcError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(0.2)


def top_up(gw: Gateway, admin: dict[str, str], account_id: str, amount: str) -> Any:
    """Top up once charging knows the account (it learns it from AccountCreated)."""

    def attempt() -> Any:
        answer = gw.http.post(
            f"/v1/accounts/{account_id}/top-ups",
            json={"amount": amount, "currency_code": "EUR", "reference": "test"},
            headers={**admin, "Idempotency-Key": f"topup-{account_id}"},
        )
        if answer.status_code == 404:
            return None
        assert answer.status_code == 200, answer.text
        return answer.json()

    return wait_for(f"charging to know {account_id}", attempt)


def import_usage(state: SuiteState, rows: list[tuple[str, str, str, str, int]]) -> Any:
    """Rate ``(record_id, account_id, service, destination, quantity)`` rows, a second
    apart ending now, once rating knows each account's plan (from accounts' events)."""
    channel = open_sync_channel(state.address_of("rating") or "", state.token(), traced=False)
    with channel:
        stub = rating_pb2_grpc.RatingServiceStub(channel)
        for account in {row[1] for row in rows}:
            wait_for(
                f"rating to know {account}",
                lambda account=account: stub.Quote(
                    rating_pb2.QuoteRequest(
                        account_id=account,
                        service="sms",
                        event_time=_stamp(datetime.now(UTC)),
                        quantity=rating_pb2.Quantity(value=1, unit=rating_pb2.QUANTITY_UNIT_EVENT),
                    ),
                    timeout=5,
                ),
            )
        now = datetime.now(UTC) - timedelta(milliseconds=50)
        lines = ["record_id,account_id,service,destination,event_time,quantity"]
        for index, (record, account, service, destination, quantity) in enumerate(rows):
            at = (now - timedelta(milliseconds=10 * (len(rows) - index))).isoformat()
            lines.append(f"{record},{account},{service},{destination},{at},{quantity}")
        reply = stub.ImportUsage(
            iter(
                [
                    rating_pb2.ImportUsageRequest(
                        request_id=str(uuid.uuid4()),
                        file_name=f"usage-{uuid.uuid4().hex[:6]}.csv",
                        options=rating_pb2.UsageFileOptions(
                            format=rating_pb2.USAGE_FILE_FORMAT_CSV, preset="reckon"
                        ),
                        chunk=("\n".join(lines) + "\n").encode(),
                    )
                ]
            ),
            timeout=30,
        )
    assert reply.file.rated == len(rows), list(reply.file.rejects_by_reason)
    return reply.file


def _stamp(value: datetime) -> Any:
    from google.protobuf import timestamp_pb2

    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LiveGateway:
    url: str
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread


def serve_live(settings: GatewaySettings) -> LiveGateway:
    """The app under uvicorn in a thread (for the browser and Schemathesis over HTTP)."""
    port = free_port()
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    return LiveGateway(f"http://127.0.0.1:{port}", app, server, thread)


def stop_live(live: LiveGateway) -> None:
    live.server.should_exit = True
    live.thread.join(timeout=10)


def open_invoice(state: SuiteState, account_id: str, amount: str = "10.00") -> Any:
    """An OPEN invoice of ``amount`` EUR net: a pending item invoiced at once, once
    invoicing knows the account (from accounts' events)."""
    from reckon.invoicing.v1 import invoicing_pb2, invoicing_pb2_grpc
    from services.common.money import Money
    from services.common.proto_convert import money_to_proto

    channel = open_sync_channel(state.address_of("invoicing") or "", state.token(), traced=False)
    with channel:
        stub = invoicing_pb2_grpc.InvoicingServiceStub(channel)
        wait_for(
            f"invoicing to know {account_id}",
            lambda: stub.AddPendingItem(
                invoicing_pb2.AddPendingItemRequest(
                    account_id=account_id,
                    description="Activation",
                    amount=money_to_proto(Money.of(amount, "EUR")),
                    request_id=f"item-{account_id}-{amount}",
                ),
                timeout=10,
            ),
        )
        reply = stub.CreateImmediateInvoice(
            invoicing_pb2.CreateImmediateInvoiceRequest(
                account_id=account_id, finalize=True, request_id=f"inv-{account_id}-{amount}"
            ),
            timeout=30,
        )
    return reply.invoice


def record_payment(state: SuiteState, invoice_id: str, amount: str) -> Any:
    """Allocate ``amount`` EUR received now to the invoice (as payments would)."""
    from reckon.invoicing.v1 import invoicing_pb2, invoicing_pb2_grpc
    from services.common.money import Money
    from services.common.proto_convert import money_to_proto

    channel = open_sync_channel(state.address_of("invoicing") or "", state.token(), traced=False)
    with channel:
        return invoicing_pb2_grpc.InvoicingServiceStub(channel).RecordPayment(
            invoicing_pb2.RecordPaymentRequest(
                invoice_id=invoice_id,
                payment_id=f"pay-{invoice_id[-8:]}-{amount}",
                amount=money_to_proto(Money.of(amount, "EUR")),
                request_id=f"pay-{invoice_id}-{amount}",
            ),
            timeout=30,
        )
