"""Payments checks the customer scope a call carries, itself (issue 14 item 2).

Called over gRPC directly, as the gateway calls it for a logged-in customer
(``x-reckon-customer-id``): another customer's account, method or payment answers
exactly as an unknown id does, nothing is charged or changed, and the operator's
RPCs are refused. Unscoped calls (operators, other services) see everything.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.type import date_pb2

from reckon.payments.v1 import payments_pb2 as pb
from services.common.customer_scope import CUSTOMER_SCOPE_KEY
from services.common.grpc_errors import details_of
from tests.integration.payments.test_grpc_api import (  # noqa: F401 - fixtures
    Api,
    add_card,
    api,
    eur,
    spans,
)

ALICE = (("x-reckon-customer-id", "cus_alice1"),)
assert ALICE[0][0] == CUSTOMER_SCOPE_KEY


async def refused(call: Any) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    details = details_of(raised.value)
    return raised.value.code(), details.reason, raised.value.details() or ""


async def paid(api: Api, account: str) -> tuple[pb.PaymentMethod, pb.Payment]:  # noqa: F811
    method = await add_card(api, account, "4242424242424242")
    api.invoicing.issue(f"inv-{account}", account, "10")
    reply = await api.stub.CreatePayment(
        pb.CreatePaymentRequest(
            account_id=account,
            amount=eur(10),
            channel=pb.CHANNEL_ONLINE_CARD,
            invoice_ids=[f"inv-{account}"],
            request_id=f"pay-{account}",
        )
    )
    assert reply.payment.state == pb.PAYMENT_STATE_SUCCEEDED
    return method, reply.payment


async def test_a_customer_scoped_call_reaches_only_that_customers_data(api: Api) -> None:  # noqa: F811
    # add_card registers account X to customer cus_X.
    alice_method, alice_payment = await paid(api, "alice1")
    bob_method, bob_payment = await paid(api, "bob1")
    stub = api.stub
    charges = api.sandbox.charges_made

    # Her own data, scoped.
    own = await stub.GetPayment(
        pb.GetPaymentRequest(payment_id=alice_payment.payment_id), metadata=ALICE
    )
    assert own.payment.customer_id == "cus_alice1"
    history = await stub.ListPayments(pb.ListPaymentsRequest(account_id="alice1"), metadata=ALICE)
    assert [p.payment_id for p in history.payments] == [alice_payment.payment_id]
    methods = await stub.ListPaymentMethods(
        pb.ListPaymentMethodsRequest(account_id="alice1"), metadata=ALICE
    )
    assert [m.method_id for m in methods.payment_methods] == [alice_method.method_id]
    settings = await stub.GetPaymentSettings(
        pb.GetPaymentSettingsRequest(account_id="alice1"), metadata=ALICE
    )
    assert settings.settings.account_id == "alice1"

    # Bob's, by id: the same answer as for an id that does not exist.
    pairs = [
        (
            stub.GetPayment(
                pb.GetPaymentRequest(payment_id=bob_payment.payment_id), metadata=ALICE
            ),
            stub.GetPayment(pb.GetPaymentRequest(payment_id="pay_nothere"), metadata=ALICE),
        ),
        (
            stub.GetPaymentSettings(
                pb.GetPaymentSettingsRequest(account_id="bob1"), metadata=ALICE
            ),
            stub.GetPaymentSettings(
                pb.GetPaymentSettingsRequest(account_id="nobody"), metadata=ALICE
            ),
        ),
        (
            stub.UpdatePaymentSettings(
                pb.UpdatePaymentSettingsRequest(account_id="bob1", auto_collect=False),
                metadata=ALICE,
            ),
            stub.UpdatePaymentSettings(
                pb.UpdatePaymentSettingsRequest(account_id="nobody", auto_collect=False),
                metadata=ALICE,
            ),
        ),
        (
            stub.RemovePaymentMethod(
                pb.RemovePaymentMethodRequest(method_id=bob_method.method_id), metadata=ALICE
            ),
            stub.RemovePaymentMethod(
                pb.RemovePaymentMethodRequest(method_id="pm_nothere"), metadata=ALICE
            ),
        ),
        (
            stub.CreatePayment(
                pb.CreatePaymentRequest(
                    account_id="bob1",
                    amount=eur(5),
                    channel=pb.CHANNEL_ONLINE_CARD,
                    purpose=pb.PAYMENT_PURPOSE_TOP_UP,
                    request_id="alice-pays-bobs",
                ),
                metadata=ALICE,
            ),
            stub.CreatePayment(
                pb.CreatePaymentRequest(
                    account_id="nobody",
                    amount=eur(5),
                    channel=pb.CHANNEL_ONLINE_CARD,
                    purpose=pb.PAYMENT_PURPOSE_TOP_UP,
                    request_id="alice-pays-nobodys",
                ),
                metadata=ALICE,
            ),
        ),
        (
            stub.RefundPayment(
                pb.RefundPaymentRequest(payment_id=bob_payment.payment_id, request_id="r1"),
                metadata=ALICE,
            ),
            stub.RefundPayment(
                pb.RefundPaymentRequest(payment_id="pay_nothere", request_id="r2"),
                metadata=ALICE,
            ),
        ),
    ]
    for others, unknown in pairs:
        answer = await refused(others)
        assert answer[0] is grpc.StatusCode.NOT_FOUND, answer
        assert answer == await refused(unknown)  # code, reason and message: nothing leaks

    # Registering a card: on Bob's account, or in Bob's name.
    for account, customer in (("bob1", "cus_alice1"), ("bob1", "cus_bob1"), ("new1", "cus_bob1")):
        code, _, _ = await refused(
            stub.AddPaymentMethod(
                pb.AddPaymentMethodRequest(
                    account_id=account,
                    customer_id=customer,
                    currency_code="EUR",
                    kind=pb.PAYMENT_METHOD_KIND_CARD,
                    card=pb.CardInput(
                        number="4242424242424242", exp_month=12, exp_year=2030, cvc="123"
                    ),
                    request_id=f"pm-{account}-{customer}",
                ),
                metadata=ALICE,
            )
        )
        assert code is grpc.StatusCode.NOT_FOUND

    # Lists: Bob's account lists as empty, exactly like an account payments never met.
    for account in ("bob1", "nobody"):
        listed = await stub.ListPaymentMethods(
            pb.ListPaymentMethodsRequest(account_id=account), metadata=ALICE
        )
        assert list(listed.payment_methods) == []
        history = await stub.ListPayments(
            pb.ListPaymentsRequest(account_id=account), metadata=ALICE
        )
        assert list(history.payments) == []
    code, _, _ = await refused(
        stub.ListPayments(pb.ListPaymentsRequest(customer_id="cus_bob1"), metadata=ALICE)
    )
    assert code is grpc.StatusCode.NOT_FOUND

    # The operator's RPCs are not a customer's, even on her own payments.
    operator_calls = [
        stub.RefundPayment(
            pb.RefundPaymentRequest(payment_id=alice_payment.payment_id, request_id="r3"),
            metadata=ALICE,
        ),
        stub.SetRetrySchedule(
            pb.SetRetryScheduleRequest(group_id="g", retry_days=[3]), metadata=ALICE
        ),
        stub.ImportBankStatement(pb.ImportBankStatementRequest(camt053=b"<x/>"), metadata=ALICE),
        stub.GetReconciliationReport(
            pb.GetReconciliationReportRequest(date=date_pb2.Date(year=2026, month=1, day=1)),
            metadata=ALICE,
        ),
        stub.RecordChargeback(
            pb.RecordChargebackRequest(payment_id=alice_payment.payment_id, request_id="cb"),
            metadata=ALICE,
        ),
        stub.HandleProviderCallback(
            pb.HandleProviderCallbackRequest(provider="sandbox", body=b"{}"), metadata=ALICE
        ),
    ]
    for call in operator_calls:
        code, reason, _ = await refused(call)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_MISSING")

    # Nothing of Bob's moved; unscoped, everything is there.
    assert api.sandbox.charges_made == charges
    bobs = await stub.ListPaymentMethods(pb.ListPaymentMethodsRequest(account_id="bob1"))
    assert [m.method_id for m in bobs.payment_methods] == [bob_method.method_id]
    assert (
        await stub.GetPaymentSettings(pb.GetPaymentSettingsRequest(account_id="bob1"))
    ).settings.auto_collect
    again = await stub.GetPayment(pb.GetPaymentRequest(payment_id=bob_payment.payment_id))
    assert again.payment.state == pb.PAYMENT_STATE_SUCCEEDED
