"""The gRPC face of the payments service: proto in, use case in a worker thread, proto out.

Use cases block (SQL, the provider, peers' blocking stubs), so each runs in a
thread that inherits the call's trace context. Errors are ``ReckonError``s that
the kit's interceptor maps to rich statuses.

A call carrying a customer scope (``x-reckon-customer-id``: the gateway calling for
a logged-in customer) reaches only that customer's accounts, methods and payments:
anything else answers NOT_FOUND exactly as an unknown id does (lists: empty, as for
an account payments has not met yet), and the operator's
RPCs (refunds and chargebacks, also of one's own payments, retry schedules,
statements, reconciliation, callbacks) are refused
(``services.common.customer_scope``, ADR 0073).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from reckon.payments.v1 import payments_pb2 as pb
from reckon.payments.v1 import payments_pb2_grpc
from services.common.customer_scope import check_owner, customer_scope
from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Violations,
)
from services.payments.entrypoints import translate
from services.payments.entrypoints.callbacks import CallbackRejected, ProviderCallbacks
from services.payments.service_layer import commands as cmd
from services.payments.service_layer.collection import Collector
from services.payments.service_layer.methods import MethodsService
from services.payments.service_layer.statements import Statements

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PaymentsService"].full_name
R = TypeVar("R")
# A statement file larger than this is refused rather than parsed.
MAX_STATEMENT_BYTES = 20 * 1024 * 1024


async def _run(call: Callable[[], R]) -> R:
    return await asyncio.to_thread(call)


def _operators_only(context: Any) -> None:
    if customer_scope(context) is not None:
        raise PermissionDenied("not available to a customer's call", reason="SCOPE_MISSING")


class PaymentsServicer(payments_pb2_grpc.PaymentsServiceServicer):
    def __init__(
        self,
        methods: MethodsService,
        collector: Collector,
        statements: Statements,
        callbacks: ProviderCallbacks | None = None,
    ) -> None:
        self._methods = methods
        self._collector = collector
        self._statements = statements
        self._callbacks = callbacks

    async def _check_account(self, context: Any, account_id: str) -> None:
        """NOT_FOUND unless a scoped call's customer owns the account (a no-op unscoped)."""
        scope = customer_scope(context)
        if scope is not None:
            owner = await _run(lambda: self._methods.account_owner(account_id))
            check_owner(scope, owner, reason="ACCOUNT_NOT_FOUND", what="account")

    async def _check_payment(self, context: Any, payment_id: str) -> None:
        scope = customer_scope(context)
        if scope is not None:
            owner = await _run(lambda: self._methods.payment_owner(payment_id))
            check_owner(scope, owner, reason="PAYMENT_NOT_FOUND", what="payment")

    async def HandleProviderCallback(
        self, request: pb.HandleProviderCallbackRequest, context: Any
    ) -> pb.HandleProviderCallbackResponse:
        """A webhook passed on by the gateway: verified here, where the secret is."""
        _operators_only(context)
        if self._callbacks is None:
            raise FailedPrecondition("callbacks are not set up", reason="CALLBACKS_UNAVAILABLE")
        callbacks = self._callbacks
        headers = {key.lower(): value for key, value in request.headers.items()}
        try:
            applied = await _run(lambda: callbacks.receive(request.body, headers))
        except CallbackRejected as exc:
            raise PermissionDenied(f"callback refused: {exc}", reason="CALLBACK_REJECTED") from None
        return pb.HandleProviderCallbackResponse(applied=bool(applied))

    async def AddPaymentMethod(
        self, request: pb.AddPaymentMethodRequest, context: Any
    ) -> pb.AddPaymentMethodResponse:
        command = translate.add_method_command(request)
        scope = customer_scope(context)
        if scope is not None:
            check_owner(scope, command.customer_id, reason="CUSTOMER_NOT_FOUND", what="customer")
            owner = await _run(lambda: self._methods.account_owner(command.account_id))
            # Not yet known here (a first method) is the customer's to register.
            if owner is not None:
                check_owner(scope, owner, reason="ACCOUNT_NOT_FOUND", what="account")
        method = await _run(lambda: self._methods.add_method(command))
        settings = await _run(lambda: self._methods.get_settings(method.account_id))
        return pb.AddPaymentMethodResponse(
            payment_method=translate.method_to_proto(method, settings.default_method_id)
        )

    async def ListPaymentMethods(
        self, request: pb.ListPaymentMethodsRequest, context: Any
    ) -> pb.ListPaymentMethodsResponse:
        if not request.account_id:
            raise InvalidArgument.field("account_id", "is required")
        scope = customer_scope(context)
        if scope is not None:
            owner = await _run(lambda: self._methods.account_owner(request.account_id))
            # Someone else's account lists as empty, like one never registered here: a
            # customer's own new account has no settings yet, so both must look alike.
            if owner != scope:
                return pb.ListPaymentMethodsResponse()
        methods = await _run(lambda: self._methods.list_methods(request.account_id))
        default = ""
        if methods:
            default = (
                await _run(lambda: self._methods.get_settings(request.account_id))
            ).default_method_id
        return pb.ListPaymentMethodsResponse(
            payment_methods=[translate.method_to_proto(m, default) for m in methods]
        )

    async def RemovePaymentMethod(
        self, request: pb.RemovePaymentMethodRequest, context: Any
    ) -> pb.RemovePaymentMethodResponse:
        if not request.method_id:
            raise InvalidArgument.field("method_id", "is required")
        scope = customer_scope(context)
        if scope is not None:
            owner = await _run(lambda: self._methods.method_owner(request.method_id))
            check_owner(scope, owner, reason="METHOD_NOT_FOUND", what="payment method")
        method = await _run(lambda: self._methods.remove_method(request.method_id))
        return pb.RemovePaymentMethodResponse(payment_method=translate.method_to_proto(method))

    async def GetPaymentSettings(
        self, request: pb.GetPaymentSettingsRequest, context: Any
    ) -> pb.GetPaymentSettingsResponse:
        await self._check_account(context, request.account_id)
        settings = await _run(lambda: self._methods.get_settings(request.account_id))
        return pb.GetPaymentSettingsResponse(settings=translate.settings_to_proto(settings))

    async def UpdatePaymentSettings(
        self, request: pb.UpdatePaymentSettingsRequest, context: Any
    ) -> pb.UpdatePaymentSettingsResponse:
        if not request.account_id:
            raise InvalidArgument.field("account_id", "is required")
        await self._check_account(context, request.account_id)
        command = cmd.UpdateSettings(
            account_id=request.account_id,
            auto_collect=request.auto_collect if request.HasField("auto_collect") else None,
            default_method_id=request.default_method_id,
            group_id=request.group_id if request.HasField("group_id") else None,
        )
        settings = await _run(lambda: self._methods.update_settings(command))
        return pb.UpdatePaymentSettingsResponse(settings=translate.settings_to_proto(settings))

    async def SetRetrySchedule(
        self, request: pb.SetRetryScheduleRequest, context: Any
    ) -> pb.SetRetryScheduleResponse:
        _operators_only(context)
        days = list(request.retry_days)
        if not days:
            raise InvalidArgument.field("retry_days", "is required")
        text = await _run(lambda: self._methods.set_retry_schedule(request.group_id, days))
        return pb.SetRetryScheduleResponse(retry_days=[int(d) for d in text.split(",")])

    async def CreatePayment(
        self, request: pb.CreatePaymentRequest, context: Any
    ) -> pb.CreatePaymentResponse:
        command = translate.create_payment_command(request)
        await self._check_account(context, command.account_id)
        payment = await _run(lambda: self._collector.create_payment(command))
        return pb.CreatePaymentResponse(payment=translate.payment_to_proto(payment))

    async def GetPayment(
        self, request: pb.GetPaymentRequest, context: Any
    ) -> pb.GetPaymentResponse:
        await self._check_payment(context, request.payment_id)
        payment = await _run(lambda: self._methods.get_payment(request.payment_id))
        return pb.GetPaymentResponse(payment=translate.payment_to_proto(payment))

    async def ListPayments(
        self, request: pb.ListPaymentsRequest, context: Any
    ) -> pb.ListPaymentsResponse:
        query = translate.history_query(request)
        scope = customer_scope(context)
        if scope is not None:
            if query.customer_id:
                check_owner(scope, query.customer_id, reason="CUSTOMER_NOT_FOUND", what="customer")
            if query.account_id:
                owner = await _run(lambda: self._methods.account_owner(query.account_id))
                if owner != scope:  # as for a new account of one's own: no history
                    return pb.ListPaymentsResponse()
        found = list(await _run(lambda: self._methods.history(query)))
        return pb.ListPaymentsResponse(
            payments=[translate.payment_to_proto(p) for p in found],
            next_page_token=translate.next_page_token(found, query.limit),
        )

    async def RefundPayment(
        self, request: pb.RefundPaymentRequest, context: Any
    ) -> pb.RefundPaymentResponse:
        command = cmd.Refund(
            payment_id=request.payment_id,
            amount=translate.optional_amount(request.amount, request.HasField("amount"), "amount"),
            request_id=request.request_id,
            reason=request.reason,
        )
        _require_request(request.payment_id, request.request_id)
        await self._check_payment(context, request.payment_id)
        _operators_only(context)  # even one's own: refunds are an operator's decision
        refund = await _run(lambda: self._methods.refund(command))
        return pb.RefundPaymentResponse(refund=translate.payment_to_proto(refund))

    async def RecordChargeback(
        self, request: pb.RecordChargebackRequest, context: Any
    ) -> pb.RecordChargebackResponse:
        command = cmd.RecordChargeback(
            payment_id=request.payment_id,
            amount=translate.optional_amount(request.amount, request.HasField("amount"), "amount"),
            request_id=request.request_id,
            reason=request.reason,
        )
        _require_request(request.payment_id, request.request_id)
        await self._check_payment(context, request.payment_id)
        _operators_only(context)  # the provider reports chargebacks, not customers
        chargeback = await _run(lambda: self._methods.chargeback(command))
        return pb.RecordChargebackResponse(chargeback=translate.payment_to_proto(chargeback))

    async def ImportBankStatement(
        self, request: pb.ImportBankStatementRequest, context: Any
    ) -> pb.ImportBankStatementResponse:
        _operators_only(context)
        if request.camt053 and request.mt940:
            raise InvalidArgument.field("mt940", "send camt053 or mt940, not both")
        field = "mt940" if request.mt940 else "camt053"
        document = request.mt940 or request.camt053
        if not document or len(document) > MAX_STATEMENT_BYTES:
            raise InvalidArgument.field(field, "is required (at most 20 MiB)")
        statements = self._statements
        if request.mt940:
            imported = await _run(lambda: statements.import_mt940(document))
        else:
            imported = await _run(lambda: statements.import_document(document))
        statement_id, lines = imported
        return pb.ImportBankStatementResponse(
            statement_id=statement_id,
            lines=[translate.statement_line_to_proto(line) for line in lines],
        )

    async def GetReconciliationReport(
        self, request: pb.GetReconciliationReportRequest, context: Any
    ) -> pb.GetReconciliationReportResponse:
        _operators_only(context)
        day = translate.date_from_proto(request.date, "date")
        report = await _run(lambda: self._statements.report(day))
        return translate.report_to_proto(report)


def _require_request(payment_id: str, request_id: str) -> None:
    v = Violations()
    v.require(payment_id, "payment_id")
    v.require(request_id, "request_id")
    v.raise_if_any()
