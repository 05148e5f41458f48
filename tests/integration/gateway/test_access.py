"""Who may call what, generated from the app's route table.

Every route must either carry an access policy (``require(scope)`` or the self-care
``customer`` dependency) or be listed in ``PUBLIC``; so a new endpoint cannot be
forgotten. For each route: no credentials -> 401; credentials without the scope ->
403; a customer naming another customer's resource -> 404 (no existence leak). The
services check the customer scope again: called directly with the scope metadata,
they refuse another customer's account too.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel, SecretStr

from gateway import selfcare
from gateway.app import create_app
from gateway.auth import CSRF_HEADER, SESSION_COOKIE
from gateway.config import GatewaySettings
from reckon.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from reckon.charging.v1 import charging_pb2, charging_pb2_grpc
from reckon.invoicing.v1 import invoicing_pb2, invoicing_pb2_grpc
from reckon.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from reckon.payments.v1 import payments_pb2, payments_pb2_grpc
from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.common.customer_scope import CUSTOMER_SCOPE_KEY
from services.common.grpc_client import open_sync_channel
from suite.state import SuiteState
from tests.integration.gateway.conftest import (
    CustomerSetup,
    Gateway,
    gateway_settings,
    import_usage,
    new_customer,
    open_invoice,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# Routes open to anyone, on purpose: each is named with why.
PUBLIC = {
    ("GET", "/healthz"),  # probes
    ("GET", "/docs"),  # the API's documentation
    ("GET", "/openapi.json"),
    ("GET", "/"),  # redirects to self-care
    ("POST", "/oauth/token"),  # authenticates by its own form fields
    ("GET", "/selfcare/login"),
    ("POST", "/selfcare/login"),
    ("POST", "/selfcare/logout"),  # ends whatever session the cookie names
    ("POST", "/v1/psp/{provider}/webhook"),  # proves itself by its signature (payments checks)
}
# A JSON body valid enough to pass validation, per body model (a new model needs one).
BODIES: dict[str, dict[str, Any]] = {
    "CustomerIn": {"display_name": "Mallory", "email": "m@example.com"},
    "AccountIn": {
        "customer_id": "cus_x",
        "currency_code": "EUR",
        "payment_mode": "PAYMENT_MODE_PREPAID",
    },
    "SubscriptionIn": {"account_id": "acc_x", "plan_code": "basic"},
    "PlanChangeIn": {"plan_code": "plus"},
    "AddOnIn": {"add_on_code": "extra"},
    "TopUpIn": {"amount": "1", "currency_code": "EUR"},
    "PayIn": {
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    },
    "PreferenceIn": {"channel": "CHANNEL_SMS", "quiet_start": "22:00", "quiet_end": "07:00"},
    "CardMethodIn": {
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    },
}
FORMS: dict[str, dict[str, str]] = {
    "/selfcare/notification-preferences": {"channel": "CHANNEL_SMS", "opted_in": "true"},
    "/selfcare/subscriptions/{subscription_id}/plan": {"plan_code": "plus"},
    "/selfcare/subscriptions/{subscription_id}/add-ons": {"add_on_code": "extra"},
    "/selfcare/invoices/{invoice_id}/pay": {
        "card_number": "4242424242424242",
        "exp_month": "12",
        "exp_year": "2030",
        "cvc": "123",
    },
}


@dataclass(frozen=True)
class Policy:
    scope: str  # read, write, admin, or "customer" for the self-care pages
    self_care: bool


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    policy: Policy
    body_model: str | None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def policy_of(route: APIRoute) -> Policy | None:
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        call: Callable[..., Any] | None = dependency.call
        marked = getattr(call, "__reckon_scope__", None)
        if marked is not None:
            return Policy(marked[0], marked[1])
        if call is selfcare.customer:
            return Policy("customer", True)
        stack.extend(dependency.dependencies)
    return None


def api_routes(routes: Any) -> Iterator[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI >= 0.120 keeps an included
    router as one entry of the app's table and its routes under ``original_router``)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)


def endpoints() -> list[Endpoint]:
    # The route table only: the app is not started, so nothing is dialled or opened.
    settings = GatewaySettings(service_token=SecretStr("x" * 20), redis_url="redis://127.0.0.1:1")
    found = []
    for route in api_routes(create_app(settings).routes):
        for method in sorted(route.methods or ()):
            if (method, route.path) in PUBLIC:
                continue
            policy = policy_of(route)
            assert policy is not None, (
                f"{method} {route.path} has no access policy: add require(...) or list it "
                "in PUBLIC with why"
            )
            models = [
                hint.__name__
                for hint in typing.get_type_hints(route.endpoint).values()
                if isinstance(hint, type) and issubclass(hint, BaseModel)
            ]
            body = models[0] if models else None
            found.append(Endpoint(method, route.path, policy, body))
    return found


ENDPOINTS = endpoints()


def test_the_route_table_was_read() -> None:
    paths = {e.path for e in ENDPOINTS}
    assert "/v1/accounts/{account_id}/balance" in paths
    assert "/selfcare/" in paths
    assert len(ENDPOINTS) >= 20


@dataclass
class World:
    alice: CustomerSetup
    bob: CustomerSetup
    alice_session: str
    alice_csrf: str
    operator_session: str
    operator_csrf: str


@pytest.fixture(scope="module")
def world(gateway: Gateway, suite: SuiteState) -> World:
    admin = gateway.key("admin")
    alice = new_customer(gateway, admin, "Alice")
    bob = new_customer(gateway, admin, "Bob")
    import_usage(suite, [(f"bob-sms-{bob.account_id[-6:]}", bob.account_id, "sms", "", 1)])
    alice.invoice_id = open_invoice(suite, alice.account_id).invoice_id
    bob.invoice_id = open_invoice(suite, bob.account_id).invoice_id
    login = gateway.store.verify_password(alice.login, alice.password)
    assert login is not None
    token, session = gateway.store.open_session(login, 1)
    operator = gateway.store.add_login(
        f"ops-{alice.account_id[-6:]}@example.com",
        "operator-secret",
        customer_id=None,
        scopes=frozenset({"admin"}),
    )
    op_token, op_session = gateway.store.open_session(operator, 1)
    return World(alice, bob, token, session.csrf_token, op_token, op_session.csrf_token)


def url_for(endpoint: Endpoint, owner: CustomerSetup) -> str:
    values = {
        "customer_id": owner.customer_id,
        "account_id": owner.account_id,
        "subscription_id": owner.subscription_id,
        "invoice_id": owner.invoice_id,
        "add_on_code": "extra",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], endpoint.path)


def send(
    gateway: Gateway,
    endpoint: Endpoint,
    owner: CustomerSetup,
    headers: dict[str, str],
    csrf: str = "",
) -> Any:
    url = url_for(endpoint, owner)
    if endpoint.method == "GET":
        return gateway.http.get(url, headers=headers, follow_redirects=False)
    if endpoint.path.startswith("/selfcare"):
        form = {**FORMS.get(endpoint.path, {}), "csrf_token": csrf}
        return gateway.http.post(url, data=form, headers=headers, follow_redirects=False)
    body = BODIES[endpoint.body_model] if endpoint.body_model else None
    return gateway.http.post(url, json=body, headers={**headers, CSRF_HEADER: csrf})


def cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={token}"}


@pytest.fixture(autouse=True)
def fresh_cookies(gateway: Gateway) -> Iterator[None]:
    gateway.http.cookies.clear()
    yield
    gateway.http.cookies.clear()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_without_credentials_it_is_401(gateway: Gateway, world: World, endpoint: Endpoint) -> None:
    answer = send(gateway, endpoint, world.bob, {})
    assert answer.status_code == 401, answer.text
    bad_key = {"Authorization": "Bearer cli_00000000000000000000000000.wrong"}
    assert send(gateway, endpoint, world.bob, bad_key).status_code == 401
    assert send(gateway, endpoint, world.bob, cookie("not-a-session")).status_code == 401


WRONG_SCOPES = {"read": {"write"}, "write": {"read"}, "admin": {"read", "write"}}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_without_the_scope_it_is_403(gateway: Gateway, world: World, endpoint: Endpoint) -> None:
    if endpoint.policy.scope == "customer":
        # Self-care is for customers: an operator's session is the wrong kind of login.
        answer = send(
            gateway, endpoint, world.bob, cookie(world.operator_session), world.operator_csrf
        )
        assert answer.status_code == 403, answer.text
        return
    key = gateway.key(*sorted(WRONG_SCOPES[endpoint.policy.scope]))
    answer = send(gateway, endpoint, world.bob, key)
    assert answer.status_code == 403, answer.text
    assert "SCOPE_MISSING" in answer.text  # the problem's reason (or the page showing it)
    if not endpoint.policy.self_care:
        customer = send(gateway, endpoint, world.bob, cookie(world.alice_session), world.alice_csrf)
        assert customer.status_code == 403, customer.text


OWNED = [e for e in ENDPOINTS if e.policy.self_care and "{" in e.path]


@pytest.mark.parametrize("endpoint", OWNED, ids=str)
def test_a_customer_asking_for_another_customers_resource_gets_404(
    gateway: Gateway, world: World, endpoint: Endpoint
) -> None:
    answer = send(gateway, endpoint, world.bob, cookie(world.alice_session), world.alice_csrf)
    assert answer.status_code == 404, answer.text
    # ...and the same call on her own resource is allowed (the 404 is about ownership).
    own = send(gateway, endpoint, world.alice, cookie(world.alice_session), world.alice_csrf)
    assert own.status_code in (200, 201, 303, 409), own.text


def test_a_customer_cannot_list_another_customers_accounts(gateway: Gateway, world: World) -> None:
    mine = gateway.http.get("/v1/accounts", headers=cookie(world.alice_session)).json()
    assert [a["account_id"] for a in mine["accounts"]] == [world.alice.account_id]
    other = gateway.http.get(
        "/v1/accounts",
        params={"customer_id": world.bob.customer_id},
        headers=cookie(world.alice_session),
    )
    assert other.status_code == 404


def test_a_cookie_write_without_the_csrf_token_is_refused(gateway: Gateway, world: World) -> None:
    answer = gateway.http.post(
        f"/v1/subscriptions/{world.alice.subscription_id}/add-ons",
        json={"add_on_code": "extra"},
        headers=cookie(world.alice_session),
    )
    assert answer.status_code == 403
    assert answer.json()["reason"] == "CSRF_TOKEN_INVALID"


def test_the_services_check_the_customer_scope_again(suite: SuiteState, world: World) -> None:
    scope = ((CUSTOMER_SCOPE_KEY, world.alice.customer_id),)
    token = suite.token()
    with open_sync_channel(suite.address_of("accounts") or "", token, traced=False) as channel:
        accounts = accounts_pb2_grpc.AccountsServiceStub(channel)
        own = accounts.GetAccount(
            accounts_pb2.GetAccountRequest(account_id=world.alice.account_id), metadata=scope
        )
        assert own.account.customer_id == world.alice.customer_id
        refusals: list[Callable[[], Any]] = [
            lambda: accounts.GetAccount(
                accounts_pb2.GetAccountRequest(account_id=world.bob.account_id), metadata=scope
            ),
            lambda: accounts.GetCustomer(
                accounts_pb2.GetCustomerRequest(customer_id=world.bob.customer_id), metadata=scope
            ),
            lambda: accounts.ListAccounts(
                accounts_pb2.ListAccountsRequest(customer_id=world.bob.customer_id), metadata=scope
            ),
        ]
        for call in refusals:
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        # Unscoped (an operator's call), Bob's account is there.
        assert (
            accounts.GetAccount(
                accounts_pb2.GetAccountRequest(account_id=world.bob.account_id)
            ).account.customer_id
            == world.bob.customer_id
        )
    with open_sync_channel(suite.address_of("invoicing") or "", token, traced=False) as channel:
        invoicing = invoicing_pb2_grpc.InvoicingServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            invoicing.GetInvoice(
                invoicing_pb2.GetInvoiceRequest(invoice_id=world.bob.invoice_id), metadata=scope
            )
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as refused:
            invoicing.SearchInvoices(
                invoicing_pb2.SearchInvoicesRequest(customer_id=world.bob.customer_id),
                metadata=scope,
            )
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        own = invoicing.GetInvoice(
            invoicing_pb2.GetInvoiceRequest(invoice_id=world.alice.invoice_id), metadata=scope
        )
        assert own.invoice.customer_id == world.alice.customer_id
    with open_sync_channel(suite.address_of("rating") or "", token, traced=False) as channel:
        rating = rating_pb2_grpc.RatingServiceStub(channel)
        request = rating_pb2.ListRatedUsageRequest(account_id=world.bob.account_id)
        with pytest.raises(grpc.RpcError) as refused:
            rating.ListRatedUsage(request, metadata=scope)
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError):  # no account named: nothing to scope to
            rating.ListRatedUsage(rating_pb2.ListRatedUsageRequest(), metadata=scope)
        assert len(rating.ListRatedUsage(request).rated_usage) == 1
    with open_sync_channel(suite.address_of("charging") or "", token, traced=False) as channel:
        charging = charging_pb2_grpc.ChargingServiceStub(channel)
        # Charging learns whose an account is from AccountCreated: wait until it knows hers.
        wait_for(
            "charging to know Alice's account",
            lambda: charging.GetBalance(
                charging_pb2.GetBalanceRequest(account_id=world.alice.account_id), metadata=scope
            ),
        )
        with pytest.raises(grpc.RpcError) as refused:
            charging.GetBalance(
                charging_pb2.GetBalanceRequest(account_id=world.bob.account_id), metadata=scope
            )
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        assert (
            charging.GetBalance(
                charging_pb2.GetBalanceRequest(account_id=world.bob.account_id)
            ).account_id
            == world.bob.account_id
        )
    with open_sync_channel(suite.address_of("payments") or "", token, traced=False) as channel:
        payments = payments_pb2_grpc.PaymentsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            payments.ListPayments(
                payments_pb2.ListPaymentsRequest(customer_id=world.bob.customer_id),
                metadata=scope,
            )
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    with open_sync_channel(suite.address_of("notifications") or "", token, traced=False) as channel:
        notifications = notifications_pb2_grpc.NotificationsServiceStub(channel)
        for call in (
            lambda: notifications.GetPreferences(
                notifications_pb2.GetPreferencesRequest(customer_id=world.bob.customer_id),
                metadata=scope,
            ),
            lambda: notifications.SetPreference(
                notifications_pb2.SetPreferenceRequest(
                    preference=notifications_pb2.Preference(
                        customer_id=world.bob.customer_id,
                        channel=notifications_pb2.CHANNEL_SMS,
                        opted_out=True,
                    ),
                    request_id="alice-sets-bobs",
                ),
                metadata=scope,
            ),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        unscoped = notifications.GetPreferences(
            notifications_pb2.GetPreferencesRequest(customer_id=world.bob.customer_id)
        )
        assert not [p for p in unscoped.preferences if p.opted_out]  # Alice changed nothing


def test_login_attempts_are_rate_limited(suite: SuiteState, tmp_path_factory) -> None:
    from fastapi.testclient import TestClient

    settings = gateway_settings(
        suite, tmp_path_factory.mktemp("logins"), login_attempts_per_minute=3
    )
    with TestClient(create_app(settings)) as http:
        form = {"login": "nobody@example.com", "password": "wrong-password"}
        codes = [http.post("/selfcare/login", data=form).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
