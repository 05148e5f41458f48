"""The ``reckon.charging.v1.ChargingService`` servicer: proto in, handler call, proto out.

Nothing here decides anything: requests are validated and translated
(``converters``), handed to ``ChargingHandlers``, and answers translated back.
Errors are ``ReckonError`` raised by either; the kit's interceptor maps them to
rich statuses. The streaming RPCs (one request per message, or batches of up
to 1000) handle each request concurrently (up to ``max_in_flight`` per stream),
so one stream keeps many Redis scripts in the same pipeline, and answer each as
it completes, errors included, without ending the stream; the batched one sends
every answer ready at once in one message.

A call carrying a customer scope (``x-reckon-customer-id``: the gateway calling for
a logged-in customer) reaches only that customer's accounts; another's answers
NOT_FOUND exactly as an unknown account does (``services.common.customer_scope``,
ADR 0073). On their own account customers may read (balance, ledger, policy,
sessions) and redeem vouchers; policy, buckets, top-ups, adjustments and session
releases are the operators'. Catalog and voucher batches, and credit control (network
elements, never customers), are refused to such a call. The hot paths pay one metadata scan; the
owner lookup (SQL) happens only when the scope is there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from google.rpc import status_pb2

from reckon.charging.v1 import charging_pb2 as pb
from reckon.charging.v1 import charging_pb2_grpc
from services.charging.domain.units import Quantity, Unit, UnitKind
from services.charging.domain.vouchers import is_well_formed
from services.charging.entrypoints import converters as cv
from services.charging.service_layer.commands import (
    Adjust,
    CloseBucket,
    CreateBucket,
    CreateVoucherBatch,
    DefineService,
    RedeemVoucher,
    ReleaseSession,
    SetPolicy,
    TopUp,
    UpdateBucket,
)
from services.charging.service_layer.handlers import ChargingHandlers
from services.common.customer_scope import check_owner, customer_scope
from services.common.errors import InvalidArgument, PermissionDenied, ReckonError, Violations
from services.common.grpc_errors import to_rpc_status
from services.common.grpc_server import ServiceBinding
from services.common.proto_convert import (
    decode_page_token,
    encode_page_token,
    page_size_from_proto,
    timestamp_from_proto,
)

log = logging.getLogger(__name__)

SERVICE_NAME = "reckon.charging.v1.ChargingService"
# What UpdateBucket may change: the unit, scope and start of a bucket are what it was sold as.
_UPDATABLE_BUCKET_FIELDS = ("priority", "valid_until", "label")
_UPDATABLE_TEXT = ", ".join(_UPDATABLE_BUCKET_FIELDS)
DOMAIN = "reckon.charging"


def error_status(error: ReckonError) -> status_pb2.Status:
    """The google.rpc.Status of an error (as the unary path would send it)."""
    grpc_status = to_rpc_status(error, domain=DOMAIN)
    for key, value in grpc_status.trailing_metadata:
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return status_pb2.Status(code=grpc_status.code.value[0], message=grpc_status.details)


def _scope(context: Any) -> str | None:
    # No context: called in-process (bench.charging.in_process), never for a customer.
    return None if context is None else customer_scope(context)


def _operators_only(context: Any) -> None:
    """Refuse a call made for a customer: what follows is not a customer's to do."""
    if _scope(context) is not None:
        raise PermissionDenied("not available to a customer's call", reason="SCOPE_MISSING")


class ChargingServicer(charging_pb2_grpc.ChargingServiceServicer):
    def __init__(self, handlers: ChargingHandlers, *, max_in_flight: int = 1024) -> None:
        self._handlers = handlers
        self._max_in_flight = max_in_flight

    async def _check_scope(
        self, context: Any, account_id: str, *, operators_only: bool = False
    ) -> None:
        """NOT_FOUND unless a scoped call's customer owns the account (no-op unscoped);
        ``operators_only``: even on their own account a customer may not (money and
        policy are granted by operators, not taken), PERMISSION_DENIED after the owner
        check, so the answer tells nothing about other customers' accounts."""
        scope = _scope(context)
        if scope is not None:
            owner = await self._handlers.account_owner(account_id)
            check_owner(scope, owner, reason="ACCOUNT_NOT_FOUND", what="account")
            if operators_only:
                raise PermissionDenied("not available to a customer's call", reason="SCOPE_MISSING")

    # -- policy and services ---------------------------------------------------------------
    async def SetAccountPolicy(
        self, request: pb.SetAccountPolicyRequest, context: Any
    ) -> pb.SetAccountPolicyResponse:
        v = Violations()
        policy = cv.policy_from_proto(request.policy, v)
        rid = cv.request_id(request.request_id, v)
        v.raise_if_any()
        assert policy is not None
        await self._check_scope(context, policy.account_id, operators_only=True)
        view = await self._handlers.set_policy(SetPolicy(policy, rid))
        return pb.SetAccountPolicyResponse(policy=cv.policy_to_proto(view))

    async def GetAccountPolicy(
        self, request: pb.GetAccountPolicyRequest, context: Any
    ) -> pb.GetAccountPolicyResponse:
        v = Violations()
        cv.account_id(request.account_id, "account_id", v)
        v.raise_if_any()
        await self._check_scope(context, request.account_id)
        view = await self._handlers.get_policy(request.account_id)
        return pb.GetAccountPolicyResponse(policy=cv.policy_to_proto(view))

    async def DefineService(
        self, request: pb.DefineServiceRequest, context: Any
    ) -> pb.DefineServiceResponse:
        _operators_only(context)
        v = Violations()
        definition = cv.service_from_proto(request.service, v)
        rid = cv.request_id(request.request_id, v)
        v.raise_if_any()
        assert definition is not None
        stored = await self._handlers.define_service(DefineService(definition, rid))
        return pb.DefineServiceResponse(service=cv.service_to_proto(stored))

    async def ListServices(
        self, request: pb.ListServicesRequest, context: Any
    ) -> pb.ListServicesResponse:
        v = Violations()
        size = page_size_from_proto(request.page_size, v)
        cursor = decode_page_token(request.page_token, v)
        v.raise_if_any()
        after = int(cursor.get("rg", "0")) if cursor else 0
        services = [s for s in await self._handlers.list_services() if s.rating_group > after]
        page = services[:size]
        token = ""
        if len(services) > size:
            token = encode_page_token({"rg": str(page[-1].rating_group)})
        return pb.ListServicesResponse(
            services=[cv.service_to_proto(s) for s in page], next_page_token=token
        )

    # -- buckets and credits -----------------------------------------------------------------
    async def CreateBucket(
        self, request: pb.CreateBucketRequest, context: Any
    ) -> pb.CreateBucketResponse:
        v = Violations()
        b = request.bucket
        with v.nested("bucket") as bv:
            cv.account_id(b.account_id, "account_id", bv)
            kind = cv.UNIT_KINDS.get(b.unit_kind)
            if kind is None:
                bv.add("unit_kind", "is required")
            cv.text(b.label, "label", bv, limit=256)
            for i, service in enumerate(b.services):
                if not cv.SERVICE_NAME.match(service):
                    bv.add(f"services[{i}]", "is not a service name")
            for i, group in enumerate(b.rating_groups):
                if group < 1:
                    bv.add(f"rating_groups[{i}]", "must be 1 or more")
            if not -1_000_000 <= b.priority <= 1_000_000:
                bv.add("priority", "must be between -1000000 and 1000000")
        valid_from = cv.instant_or_none(b, "valid_from")
        valid_until = cv.instant_or_none(b, "valid_until")
        if valid_from and valid_until and valid_until <= valid_from:
            v.add("bucket.valid_until", "must be after valid_from")
        elif valid_until and valid_until <= self._handlers.clock.now():
            # Its amount could never be drawn; maintenance would only forfeit it.
            v.add("bucket.valid_until", "must be in the future")
        initial = None
        if request.HasField("initial_amount"):
            initial = cv.quantity_from_proto(request.initial_amount, "initial_amount", v)
        rid = cv.request_id(request.request_id, v)
        unit = None
        if kind is not None:
            unit = self._bucket_unit(kind, b, initial, v)
        v.raise_if_any()
        await self._check_scope(context, b.account_id, operators_only=True)
        assert unit is not None
        line = await self._handlers.create_bucket(
            CreateBucket(
                account_id=b.account_id,
                unit=unit,
                initial=initial.amount if initial else 0,
                priority=b.priority or 100,
                valid_from=valid_from,
                valid_until=valid_until,
                services=frozenset(b.services),
                rating_groups=frozenset(b.rating_groups),
                label=b.label,
                request_id=rid,
            )
        )
        return pb.CreateBucketResponse(balance=cv.balance_to_proto(line))

    @staticmethod
    def _bucket_unit(
        kind: UnitKind, b: pb.Bucket, initial: Quantity | None, v: Violations
    ) -> Unit | None:
        try:
            if kind is UnitKind.MONEY:
                unit = Unit(kind, b.currency_code)
            elif kind is UnitKind.SERVICE_UNITS:
                name = b.unit_name or "unit"
                if not cv.UNIT_NAME.match(name):
                    v.add("bucket.unit_name", "must be 1-32 lower-case letters, digits or _")
                    return None
                unit = Unit(kind, name)
            else:
                unit = Unit(kind)
        except ValueError:
            v.add("bucket.currency_code", "must be an ISO 4217 (or supported crypto) code")
            return None
        if initial is not None and initial.unit != unit:
            v.add("initial_amount", f"must be in the bucket's unit ({unit.key})")
            return None
        return unit

    async def TopUp(self, request: pb.TopUpRequest, context: Any) -> pb.TopUpResponse:
        v = Violations()
        cv.account_id(request.account_id, "account_id", v)
        amount = cv.quantity_from_proto(request.amount, "amount", v)
        if amount is not None and amount.amount <= 0:
            v.add("amount", "must be positive")
        cv.bucket_id(
            request.bucket_id,
            "bucket_id",
            v,
            required=amount is not None and not amount.unit.is_money,
        )
        cv.text(request.reference, "reference", v, limit=256)
        rid = cv.request_id(request.request_id, v)
        v.raise_if_any()
        await self._check_scope(context, request.account_id, operators_only=True)
        assert amount is not None
        credited = await self._handlers.top_up(
            TopUp(request.account_id, amount, request.bucket_id, request.reference, rid)
        )
        return cv.credited_to_proto(pb.TopUpResponse(), credited)

    async def Adjust(self, request: pb.AdjustRequest, context: Any) -> pb.AdjustResponse:
        v = Violations()
        cv.account_id(request.account_id, "account_id", v)
        cv.bucket_id(request.bucket_id, "bucket_id", v, required=True)
        delta = cv.quantity_from_proto(request.delta, "delta", v, signed=True)
        if delta is not None and delta.amount == 0:
            v.add("delta", "must not be zero")
        cv.text(request.reason, "reason", v, required=True)
        rid = cv.request_id(request.request_id, v)
        v.raise_if_any()
        await self._check_scope(context, request.account_id, operators_only=True)
        assert delta is not None
        credited = await self._handlers.adjust(
            Adjust(request.account_id, request.bucket_id, delta, request.reason, rid)
        )
        return cv.credited_to_proto(pb.AdjustResponse(), credited)

    async def CloseBucket(
        self, request: pb.CloseBucketRequest, context: Any
    ) -> pb.CloseBucketResponse:
        v = Violations()
        cv.account_id(request.account_id, "account_id", v)
        cv.bucket_id(request.bucket_id, "bucket_id", v, required=True)
        cv.text(request.reason, "reason", v, required=True)
        rid = cv.request_id(request.request_id, v)
        v.raise_if_any()
        await self._check_scope(context, request.account_id, operators_only=True)
        closed = await self._handlers.close_bucket(
            CloseBucket(request.account_id, request.bucket_id, request.reason, rid)
        )
        return cv.credited_to_proto(pb.CloseBucketResponse(), closed)

    async def UpdateBucket(
        self, request: pb.UpdateBucketRequest, context: Any
    ) -> pb.UpdateBucketResponse:
        v = Violations()
        b = request.bucket
        paths = list(request.update_mask.paths)
        if not paths:
            v.add("update_mask", "is required: priority, valid_until or label")
        for path in paths:
            if path not in _UPDATABLE_BUCKET_FIELDS:
                v.add("update_mask", f"{path!r} cannot be changed: only {_UPDATABLE_TEXT}")
        priority: int | None = None
        valid_until: datetime | None = None
        label: str | None = None
        with v.nested("bucket") as bv:
            cv.account_id(b.account_id, "account_id", bv)
            cv.bucket_id(b.bucket_id, "bucket_id", bv, required=True)
            if "priority" in paths:
                if not -1_000_000 <= b.priority <= 1_000_000:
                    bv.add("priority", "must be between -1000000 and 1000000")
                priority = b.priority
            if "valid_until" in paths:
                valid_until = cv.instant_or_none(b, "valid_until")
                if valid_until is not None and valid_until <= self._handlers.clock.now():
                    bv.add("valid_until", "must be in the future")
            if "label" in paths:
                label = cv.text(b.label, "label", bv, limit=256)
        rid = cv.request_id(request.request_id, v)
        v.raise_if_any()
        await self._check_scope(context, b.account_id, operators_only=True)
        updated = await self._handlers.update_bucket(
            UpdateBucket(
                b.account_id,
                b.bucket_id,
                priority=priority,
                valid_until=valid_until,
                clear_valid_until="valid_until" in paths and valid_until is None,
                label=label,
                request_id=rid,
            )
        )
        return pb.UpdateBucketResponse(balance=cv.balance_to_proto(updated.balance))

    async def CreateVoucherBatch(
        self, request: pb.CreateVoucherBatchRequest, context: Any
    ) -> pb.CreateVoucherBatchResponse:
        _operators_only(context)
        v = Violations()
        if not 1 <= request.count <= 10_000:
            v.add("count", "must be between 1 and 10000")
        value = cv.quantity_from_proto(request.value, "value", v)
        if value is not None and value.amount <= 0:
            v.add("value", "must be positive")
        if not request.HasField("expire_time"):
            v.add("expire_time", "is required")
        elif timestamp_from_proto(request.expire_time, "expire_time") <= self._handlers.clock.now():
            v.add("expire_time", "must be in the future")
        cv.text(request.label, "label", v, limit=256)
        rid = cv.request_id(request.request_id, v)
        v.raise_if_any()
        assert value is not None
        batch = await self._handlers.create_voucher_batch(
            CreateVoucherBatch(
                request.count, value, timestamp_from_proto(request.expire_time), request.label, rid
            )
        )
        response = pb.CreateVoucherBatchResponse(batch_id=batch.batch_id, codes=batch.codes)
        response.expire_time.FromDatetime(batch.expire_time)
        return response

    async def RedeemVoucher(
        self, request: pb.RedeemVoucherRequest, context: Any
    ) -> pb.RedeemVoucherResponse:
        v = Violations()
        cv.account_id(request.account_id, "account_id", v)
        if not request.code:
            v.add("code", "is required")
        elif not is_well_formed(request.code):
            v.add("code", "is not a voucher code (16 letters and digits)")
        rid = cv.request_id(request.request_id, v)
        v.raise_if_any()
        await self._check_scope(context, request.account_id)
        credited = await self._handlers.redeem_voucher(
            RedeemVoucher(request.account_id, request.code, rid)
        )
        return cv.credited_to_proto(pb.RedeemVoucherResponse(), credited)

    async def GetBalance(
        self, request: pb.GetBalanceRequest, context: Any
    ) -> pb.GetBalanceResponse:
        v = Violations()
        cv.account_id(request.account_id, "account_id", v)
        v.raise_if_any()
        await self._check_scope(context, request.account_id)
        balance = await self._handlers.balance(request.account_id)
        return pb.GetBalanceResponse(
            account_id=balance.account_id,
            buckets=[cv.balance_to_proto(line) for line in balance.lines],
            state=cv.STATES_OUT[balance.state],
            billing_mode=cv.MODES_OUT[balance.policy.mode],
        )

    # -- credit-control sessions (ADR 0035) ----------------------------------------------------
    async def GetCreditControlSession(
        self, request: pb.GetCreditControlSessionRequest, context: Any
    ) -> pb.GetCreditControlSessionResponse:
        v = Violations()
        cv.account_id(request.account_id, "account_id", v)
        cv.session_id(request.session_id, "session_id", v)
        v.raise_if_any()
        await self._check_scope(context, request.account_id)
        view = await self._handlers.get_session(request.account_id, request.session_id)
        return pb.GetCreditControlSessionResponse(session=cv.session_to_proto(view))

    async def ListCreditControlSessions(
        self, request: pb.ListCreditControlSessionsRequest, context: Any
    ) -> pb.ListCreditControlSessionsResponse:
        v = Violations()
        cv.account_id(request.account_id, "account_id", v)
        size = page_size_from_proto(request.page_size, v)
        cursor = decode_page_token(request.page_token, v)
        after = ""
        if cursor is not None:
            if cursor.get("account") != request.account_id or not cursor.get("after"):
                v.add("page_token", "belongs to another listing")
            else:
                after = cursor["after"]
        v.raise_if_any()
        await self._check_scope(context, request.account_id)
        views, last = await self._handlers.list_open_sessions(request.account_id, after, size)
        token = encode_page_token({"account": request.account_id, "after": last}) if last else ""
        return pb.ListCreditControlSessionsResponse(
            sessions=[cv.session_to_proto(view) for view in views], next_page_token=token
        )

    async def ReleaseCreditControlSession(
        self, request: pb.ReleaseCreditControlSessionRequest, context: Any
    ) -> pb.ReleaseCreditControlSessionResponse:
        v = Violations()
        cv.account_id(request.account_id, "account_id", v)
        cv.session_id(request.session_id, "session_id", v)
        cv.text(request.reason, "reason", v, required=True)
        rid = cv.request_id(request.request_id, v)
        v.raise_if_any()
        await self._check_scope(context, request.account_id, operators_only=True)
        view = await self._handlers.release_session(
            ReleaseSession(request.account_id, request.session_id, request.reason, rid)
        )
        return pb.ReleaseCreditControlSessionResponse(session=cv.session_to_proto(view))

    async def ListLedgerEntries(
        self, request: pb.ListLedgerEntriesRequest, context: Any
    ) -> pb.ListLedgerEntriesResponse:
        v = Violations()
        cv.account_id(request.account_id, "account_id", v)
        cv.bucket_id(request.bucket_id, "bucket_id", v, required=False)
        size = page_size_from_proto(request.page_size, v)
        cursor = decode_page_token(request.page_token, v)
        after = 0
        if cursor is not None:
            if cursor.get("account") != request.account_id or not cursor.get("seq", "").isdigit():
                v.add("page_token", "belongs to another listing")
            else:
                after = int(cursor["seq"])
        v.raise_if_any()
        await self._check_scope(context, request.account_id)
        entries = await self._handlers.ledger_page(
            request.account_id, request.bucket_id or None, after, size + 1
        )
        token = ""
        if len(entries) > size:
            entries = entries[:size]
            token = encode_page_token({"account": request.account_id, "seq": str(entries[-1].seq)})
        return pb.ListLedgerEntriesResponse(
            entries=[cv.entry_to_proto(e) for e in entries], next_page_token=token
        )

    # -- credit control --------------------------------------------------------------------------
    async def _credit_control(self, request: pb.CreditControlRequest) -> pb.CreditControlResponse:
        v = Violations()
        command = cv.cc_request_from_proto(request, v)
        v.raise_if_any()
        assert command is not None
        return cv.cc_answer_to_proto(await self._handlers.credit_control(command))

    async def CreditControl(
        self, request: pb.CreditControlRequest, context: Any
    ) -> pb.CreditControlResponse:
        _operators_only(context)
        return await self._credit_control(request)

    async def StreamCreditControl(
        self, request_iterator: AsyncIterator[pb.StreamCreditControlRequest], context: Any
    ) -> AsyncIterator[pb.StreamCreditControlResponse]:
        _operators_only(context)
        stream = _CreditControlStream(self._credit_control, self._max_in_flight)

        async def feed() -> None:
            async for message in request_iterator:
                await stream.submit(message.request if message.HasField("request") else None)

        async for ready in stream.answers(feed):
            for answer in ready:
                yield answer

    async def StreamCreditControlBatches(
        self, request_iterator: AsyncIterator[pb.StreamCreditControlBatchesRequest], context: Any
    ) -> AsyncIterator[pb.StreamCreditControlBatchesResponse]:
        _operators_only(context)
        stream = _CreditControlStream(self._credit_control, self._max_in_flight)

        async def feed() -> None:
            async for batch in request_iterator:
                v = Violations()
                requests = cv.cc_batch_from_proto(batch, v)
                if v:  # the batch as a whole: one answer without a session id
                    stream.add(_stream_error_of(None, InvalidArgument(v.items)))
                for request in requests:
                    await stream.submit(request)

        async for ready in stream.answers(feed, most=cv.MAX_BATCH_REQUESTS):
            yield pb.StreamCreditControlBatchesResponse(answers=ready)


class _CreditControlStream:
    """The answering side of one credit-control stream, plain or batched.

    Each submitted request runs in a task of its own, at most ``max_in_flight`` at a
    time (counted in requests, whatever the messages carry them), so one stream keeps
    many Redis scripts in the same pipeline and a slow request holds back no other.
    Answers, errors included, wait in ``ready`` until the writer takes all of them
    (up to ``most``) at once.
    """

    def __init__(
        self,
        credit_control: Callable[[pb.CreditControlRequest], Awaitable[pb.CreditControlResponse]],
        max_in_flight: int,
    ) -> None:
        self._credit_control = credit_control
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: set[asyncio.Task[None]] = set()
        self._ready: list[pb.StreamCreditControlResponse] = []
        self._wake = asyncio.Event()
        self._finished = False  # fed, and every request fed answered

    async def submit(self, request: pb.CreditControlRequest | None) -> None:
        """Start answering ``request`` (None: the stream message carried none) once a
        slot is free."""
        await self._slots.acquire()
        task = asyncio.ensure_future(self._answer(request))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def add(self, answer: pb.StreamCreditControlResponse) -> None:
        self._ready.append(answer)
        self._wake.set()

    async def _answer(self, request: pb.CreditControlRequest | None) -> None:
        try:
            if request is None:
                raise InvalidArgument.field("request", "is required")
            answer = pb.StreamCreditControlResponse(
                session_id=request.session_id,
                request_number=request.request_number,
                response=await self._credit_control(request),
            )
        except ReckonError as error:
            answer = _stream_error_of(request, error)
        except Exception:
            log.exception("credit control on the stream failed")
            answer = _stream_error_of(request, ReckonError("internal error"))
        finally:
            self._slots.release()
        self.add(answer)

    async def _read(self, feed: Callable[[], Awaitable[None]]) -> None:
        try:
            await feed()
            if self._pending:
                await asyncio.gather(*list(self._pending), return_exceptions=True)
        finally:
            self._finished = True
            self._wake.set()

    async def answers(
        self, feed: Callable[[], Awaitable[None]], *, most: int | None = None
    ) -> AsyncIterator[list[pb.StreamCreditControlResponse]]:
        """Run ``feed`` (which submits the stream's requests) and yield the answers ready
        at each turn, until every request fed has been answered."""
        reader = asyncio.ensure_future(self._read(feed))
        try:
            while self._ready or not self._finished:
                if not self._ready:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if most is None or len(self._ready) <= most:
                    ready, self._ready = self._ready, []
                else:
                    ready, self._ready = self._ready[:most], self._ready[most:]
                yield ready
            await reader
        finally:
            if not reader.done():
                reader.cancel()
            for task in list(self._pending):
                task.cancel()


def _stream_error_of(
    request: pb.CreditControlRequest | None, error: ReckonError
) -> pb.StreamCreditControlResponse:
    if request is None:
        return pb.StreamCreditControlResponse(error=error_status(error))
    return pb.StreamCreditControlResponse(
        session_id=request.session_id,
        request_number=request.request_number,
        error=error_status(error),
    )


def binding(handlers: ChargingHandlers) -> ServiceBinding:
    return ServiceBinding(
        SERVICE_NAME,
        charging_pb2_grpc.add_ChargingServiceServicer_to_server,
        ChargingServicer(handlers),
    )


__all__ = ["ChargingServicer", "binding", "error_status"]
