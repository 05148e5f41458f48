"""Notification preferences (issue 14 item 3): how a customer may be reached.

Per channel (e-mail, SMS): consent for messages that need it, no messages at all,
no marketing, the language of the messages, SMS quiet hours, and the e-invoice
beside the PDF. Kept by the notifications service (``SetPreference`` /
``GetPreferences``); the gateway only translates. JSON under
``/v1/customers/{customer_id}/notification-preferences``; the self-care page's
section posts ``/selfcare/notification-preferences``. Customers reach only their own
(404 otherwise); notifications checks the scope metadata again.
"""

from __future__ import annotations

from typing import Any, Literal

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from gateway import api
from gateway.auth import Principal
from gateway.clients import scope_metadata
from gateway.i18n import LANGUAGES
from gateway.problems import operation_id
from gateway.proto_json import JsonBody, model_for, to_json
from reckon.accounts.v1 import accounts_pb2 as apb
from reckon.notifications.v1 import notifications_pb2 as npb

router = APIRouter(prefix="/v1", responses=api.PROBLEMS, generate_unique_id_function=operation_id)
CHANNELS = ("CHANNEL_EMAIL", "CHANNEL_SMS")
HHMM = r"^(([01][0-9]|2[0-3]):[0-5][0-9])?$"


class PreferenceIn(BaseModel):
    """One channel's choices; replaces what was set for that channel."""

    channel: Literal["CHANNEL_EMAIL", "CHANNEL_SMS"]
    opted_in: bool = Field(
        default=False, description="Consent for messages that need it (an SMS on each charge)."
    )
    opted_out: bool = Field(default=False, description="No messages at all on this channel.")
    marketing_opted_out: bool = Field(
        default=False, description="No marketing; invoices and service messages still come."
    )
    language_code: str = Field(
        default="",
        max_length=35,
        pattern=r"^([A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*)?$",
        description="BCP-47 language of the messages; empty: the customer's.",
    )
    quiet_start: str = Field(
        default="", pattern=HHMM, description="SMS quiet hours start, `HH:MM` local time."
    )
    quiet_end: str = Field(default="", pattern=HHMM, description="SMS quiet hours end, `HH:MM`.")
    wants_einvoice: bool = Field(
        default=False, description="E-mail: attach the e-invoice XML beside the PDF."
    )


async def check_customer(request: Request, principal: Principal, customer_id: str) -> None:
    """404 unless the caller may see the customer: customers only themselves; API
    clients any customer accounts knows (notifications alone would accept any id)."""
    if principal.customer_id is not None:
        if customer_id != principal.customer_id:
            raise api.not_found("customer", "CUSTOMER_NOT_FOUND")
        return
    await api.call(
        request,
        api.clients_of(request).accounts.GetCustomer,
        apb.GetCustomerRequest(customer_id=customer_id),
        principal,
    )


async def preferences_of(
    request: Request, principal: Principal, customer_id: str
) -> list[npb.Preference]:
    answer = await api.call(
        request,
        api.clients_of(request).notifications.GetPreferences,
        npb.GetPreferencesRequest(customer_id=customer_id),
        principal,
    )
    return list(answer.preferences)


async def set_preference(
    request: Request, principal: Principal, customer_id: str, body: PreferenceIn, key: str | None
) -> npb.Preference:
    answer = await api.call(
        request,
        api.clients_of(request).notifications.SetPreference,
        npb.SetPreferenceRequest(
            preference=npb.Preference(
                customer_id=customer_id,
                channel=npb.Channel.Value(body.channel),
                opted_in=body.opted_in,
                opted_out=body.opted_out,
                marketing_opted_out=body.marketing_opted_out,
                language_code=body.language_code,
                quiet_start=body.quiet_start,
                quiet_end=body.quiet_end,
                wants_einvoice=body.wants_einvoice,
            ),
            request_id=api.request_id(key),
        ),
        principal,
    )
    preference: npb.Preference = answer.preference
    return preference


@router.get(
    "/customers/{customer_id}/notification-preferences",
    response_model=model_for(npb.GetPreferencesResponse.DESCRIPTOR),
    tags=["notifications"],
)
async def get_notification_preferences(
    request: Request, principal: api.SelfReader, customer_id: api.Id
) -> JSONResponse:
    """The customer's choices per channel (only channels with a choice set)."""
    await check_customer(request, principal, customer_id)
    found = await preferences_of(request, principal, customer_id)
    return JsonBody({"preferences": [to_json(p) for p in found]})


@router.post(
    "/customers/{customer_id}/notification-preferences",
    response_model=model_for(npb.Preference.DESCRIPTOR),
    tags=["notifications"],
)
async def set_notification_preference(
    request: Request,
    principal: api.SelfWriter,
    customer_id: api.Id,
    body: PreferenceIn,
    idempotency_key: api.IdempotencyKey = None,
) -> JSONResponse:
    """Replace the customer's choices for one channel; answers the stored preference."""
    await check_customer(request, principal, customer_id)
    stored = await set_preference(request, principal, customer_id, body, idempotency_key)
    return JsonBody(to_json(stored))


async def page_preferences(request: Request, principal: Principal) -> dict[str, Any] | None:
    """The self-care section's view: every channel, defaults where nothing is set;
    None when the notifications service cannot be reached (the page goes on)."""
    clients = api.clients_of(request)
    try:
        answer = await clients.notifications.GetPreferences(
            npb.GetPreferencesRequest(customer_id=principal.customer_id or ""),
            metadata=scope_metadata(principal),
            timeout=clients.timeout,
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise
        return None
    by_channel = {npb.Channel.Name(p.channel): p for p in answer.preferences}
    return {
        channel: by_channel.get(channel, npb.Preference(channel=npb.Channel.Value(channel)))
        for channel in CHANNELS
    }


LANGUAGE_CHOICES = ("", *LANGUAGES)
