"""The gRPC face of the notifications service: proto in, handler, proto out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from reckon.notifications.v1 import notifications_pb2 as pb
from reckon.notifications.v1 import notifications_pb2_grpc
from services.common.customer_scope import check_owner, customer_scope
from services.common.errors import InvalidArgument, Violations
from services.common.proto_convert import timestamp_from_proto
from services.notifications.entrypoints import translate
from services.notifications.service_layer import handlers
from services.notifications.service_layer.unit_of_work import NotificationsUnitOfWork

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["NotificationsService"].full_name

R = TypeVar("R")


# Ids this service issues are short; anything longer is bad input, not an unknown id.
MAX_ID_LENGTH = 64


def _check_ids(request: Any) -> None:
    """INVALID_ARGUMENT naming each top-level ``*_id`` field longer than any id can be."""
    violations = Violations()
    for field, value in request.ListFields():
        if field.name.endswith("_id") and isinstance(value, str) and len(value) > MAX_ID_LENGTH:
            violations.add(field.name, f"must be at most {MAX_ID_LENGTH} characters")
    violations.raise_if_any()


class NotificationsServicer(notifications_pb2_grpc.NotificationsServiceServicer):
    def __init__(
        self,
        uow_factory: Callable[[], NotificationsUnitOfWork],
        *,
        own_ports: frozenset[int],
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self._uow_factory = uow_factory
        self._own_ports = own_ports
        self._on_queued = on_queued

    async def _run(self, call: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        return await asyncio.to_thread(call, self._uow_factory(), *args, **kwargs)

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: Any
    ) -> pb.ListMessagesResponse:
        _check_ids(request)
        key = f"{request.customer_id}|{request.invoice_id}|{request.endpoint_id}"
        size, after = translate.page(request.page_size, request.page_token, key)
        found = await self._run(
            handlers.list_messages,
            customer_id=request.customer_id,
            invoice_id=request.invoice_id,
            endpoint_id=request.endpoint_id,
            after=after,
            limit=size,
        )
        return pb.ListMessagesResponse(
            messages=[translate.message_to_proto(m) for m in found.items],
            next_page_token=translate.next_token(found.next_after, key),
        )

    async def GetMessage(
        self, request: pb.GetMessageRequest, context: Any
    ) -> pb.GetMessageResponse:
        _check_ids(request)
        message = await self._run(handlers.get_message, request.message_id)
        return pb.GetMessageResponse(message=translate.message_to_proto(message))

    async def RetryMessage(
        self, request: pb.RetryMessageRequest, context: Any
    ) -> pb.RetryMessageResponse:
        _check_ids(request)
        message = await self._run(handlers.retry_message, request.message_id)
        self._on_queued()
        return pb.RetryMessageResponse(message=translate.message_to_proto(message))

    async def SetPreference(
        self, request: pb.SetPreferenceRequest, context: Any
    ) -> pb.SetPreferenceResponse:
        _check_ids(request)
        # A customer's own call (the gateway's self-care) sets only their preferences.
        check_owner(
            customer_scope(context),
            request.preference.customer_id,
            reason="CUSTOMER_NOT_FOUND",
            what="customer",
        )
        change = translate.preference_change(request)
        preference = await self._run(handlers.set_preference, change)
        return pb.SetPreferenceResponse(preference=translate.preference_to_proto(preference))

    async def GetPreferences(
        self, request: pb.GetPreferencesRequest, context: Any
    ) -> pb.GetPreferencesResponse:
        _check_ids(request)
        if not request.customer_id:
            raise InvalidArgument.field("customer_id", "required")
        check_owner(
            customer_scope(context),
            request.customer_id,
            reason="CUSTOMER_NOT_FOUND",
            what="customer",
        )
        found = await self._run(handlers.get_preferences, request.customer_id)
        return pb.GetPreferencesResponse(
            preferences=[translate.preference_to_proto(p) for p in found]
        )

    async def CreateWebhookEndpoint(
        self, request: pb.CreateWebhookEndpointRequest, context: Any
    ) -> pb.CreateWebhookEndpointResponse:
        _check_ids(request)
        given = request.endpoint
        endpoint = await self._run(
            handlers.create_endpoint,
            url=given.url,
            event_types=list(given.event_types),
            owner_email=given.owner_email,
            description=given.description,
            own_ports=self._own_ports,
            request_id=request.request_id,
        )
        return pb.CreateWebhookEndpointResponse(endpoint=translate.endpoint_to_proto(endpoint))

    async def GetWebhookEndpoint(
        self, request: pb.GetWebhookEndpointRequest, context: Any
    ) -> pb.GetWebhookEndpointResponse:
        _check_ids(request)

        def get(uow: NotificationsUnitOfWork, endpoint_id: str) -> Any:
            with uow:
                return handlers._endpoint(uow, endpoint_id)

        endpoint = await self._run(get, request.endpoint_id)
        return pb.GetWebhookEndpointResponse(endpoint=translate.endpoint_to_proto(endpoint))

    async def RotateWebhookSecret(
        self, request: pb.RotateWebhookSecretRequest, context: Any
    ) -> pb.RotateWebhookSecretResponse:
        _check_ids(request)
        endpoint = await self._run(handlers.rotate_secret, request.endpoint_id)
        return pb.RotateWebhookSecretResponse(endpoint=translate.endpoint_to_proto(endpoint))

    async def EnableWebhookEndpoint(
        self, request: pb.EnableWebhookEndpointRequest, context: Any
    ) -> pb.EnableWebhookEndpointResponse:
        _check_ids(request)
        endpoint = await self._run(handlers.enable_endpoint, request.endpoint_id)
        return pb.EnableWebhookEndpointResponse(endpoint=translate.endpoint_to_proto(endpoint))

    async def ListWebhookAttempts(
        self, request: pb.ListWebhookAttemptsRequest, context: Any
    ) -> pb.ListWebhookAttemptsResponse:
        _check_ids(request)
        size, after = translate.page(request.page_size, request.page_token, request.endpoint_id)
        found = await self._run(handlers.delivery_log, request.endpoint_id, after=after, limit=size)
        return pb.ListWebhookAttemptsResponse(
            attempts=[translate.attempt_to_proto(a) for a in found.items],
            next_page_token=translate.next_token(found.next_after, request.endpoint_id),
        )

    async def ReplayWebhookMessages(
        self, request: pb.ReplayWebhookMessagesRequest, context: Any
    ) -> pb.ReplayWebhookMessagesResponse:
        _check_ids(request)
        start = timestamp_from_proto(request.start_time) if request.HasField("start_time") else None
        end = timestamp_from_proto(request.end_time) if request.HasField("end_time") else None
        queued = await self._run(
            handlers.replay,
            request.endpoint_id,
            message_id=request.message_id,
            start=start,
            end=end,
        )
        self._on_queued()
        return pb.ReplayWebhookMessagesResponse(queued=queued)
