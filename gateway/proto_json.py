"""Proto messages <-> the gateway's JSON, and the OpenAPI schemas of that JSON.

One set of rules, derived from the message descriptors, so JSON shapes follow the
protos' field names without a hand-written model per message (ADR 0044):

- field names are the proto names (``account_id``, not ``accountId``);
- ``google.type.Money`` is ``{"currency_code": "EUR", "amount": "12.34"}``: an exact
  decimal string, never a float;
- ``google.protobuf.Timestamp`` is an RFC 3339 string, ``google.type.Date``
  ``YYYY-MM-DD``, ``null`` when unset;
- enums are their value names (``ACCOUNT_STATE_ACTIVE``);
- a message field that is not set is ``null``; repeated fields are lists; every
  scalar is always present (its default when unset), so a shape never varies.

``model_for`` builds a pydantic model per message (cached) for the OpenAPI document;
``to_json`` is the fast path the routes use (no pydantic on the way out: the
Schemathesis test checks that what ``to_json`` writes matches the models).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, Literal

from fastapi.responses import JSONResponse
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.type import money_pb2
from pydantic import BaseModel, ConfigDict, Field, create_model

from services.common.json_codec import dumps_bytes

_NANOS = Decimal(10) ** 9
_MONEY = "google.type.Money"
_TIMESTAMP = "google.protobuf.Timestamp"
_DATE = "google.type.Date"
_FIELD_MASK = "google.protobuf.FieldMask"
_SKIPPED = {_FIELD_MASK}


class MoneyJson(BaseModel):
    """An amount of money: exact decimal string and ISO 4217 currency."""

    model_config = ConfigDict(title="Money")
    currency_code: str = Field(examples=["EUR"])
    amount: str = Field(pattern=r"^-?\d+(\.\d+)?$", examples=["12.50"])


def money_to_json(money: money_pb2.Money) -> dict[str, str]:
    if not money.nanos:  # whole units (most balances and prices): the integer's digits
        return {"currency_code": money.currency_code, "amount": str(money.units)}
    amount = Decimal(money.units) + Decimal(money.nanos) / _NANOS
    # Normalised but never in exponent form ("1E+2"), so every client parses it.
    text = format(amount.normalize(), "f") if amount else "0"
    return {"currency_code": money.currency_code, "amount": text}


def money_from_decimal(amount: Decimal, currency: str) -> money_pb2.Money:
    units = int(amount)
    nanos = int((amount - units) * _NANOS)
    return money_pb2.Money(currency_code=currency, units=units, nanos=nanos)


def _timestamp_text(message: Any) -> str:
    instant = datetime.fromtimestamp(message.seconds, UTC).replace(
        microsecond=message.nanos // 1000
    )
    return instant.isoformat().replace("+00:00", "Z")


Getter = Callable[[Any], Any]
# Per message type, one getter per field that yields the field's JSON: the descriptor is
# walked once per type, not on every message (ADR 0076).
_PLANS: dict[str, tuple[tuple[str, Getter], ...]] = {}


def to_json(message: Message) -> dict[str, Any]:
    """The JSON object of ``message`` by the rules above."""
    descriptor: Any = message.DESCRIPTOR
    plan = _PLANS.get(descriptor.full_name)
    if plan is None:
        plan = _plan(descriptor)
    return {name: get(message) for name, get in plan}


def _date_text(value: Any) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def _converter(field: Any) -> Getter | None:
    """How one value of ``field`` becomes JSON; ``None`` when it is JSON already."""
    if field.message_type is not None:
        name = field.message_type.full_name
        if name == _MONEY:
            return money_to_json
        if name == _TIMESTAMP:
            return _timestamp_text
        if name == _DATE:
            return _date_text
        return to_json
    if field.enum_type is not None:
        names = {value.number: value.name for value in field.enum_type.values}

        def enum_name(number: int) -> str:
            known = names.get(number)
            return known if known is not None else str(number)

        return enum_name
    return None


def _getter(field: Any) -> Getter:
    name = field.name
    read = attrgetter(name)
    if _is_map(field):
        convert_value = _converter(field.message_type.fields_by_name["value"])
        if convert_value is None:
            return lambda message: dict(read(message))
        return lambda message: {k: convert_value(v) for k, v in read(message).items()}
    convert = _converter(field)
    if field.is_repeated:
        if convert is None:
            return lambda message: list(read(message))
        return lambda message: [convert(item) for item in read(message)]
    if field.message_type is not None or field.containing_oneof is not None:
        # Unset message fields and unset oneof members are null.
        def present(message: Any) -> Any:
            if not message.HasField(name):
                return None
            value = read(message)
            return value if convert is None else convert(value)

        return present
    if convert is None:
        return read
    return lambda message: convert(read(message))


def _plan(descriptor: Any) -> tuple[tuple[str, Getter], ...]:
    plan = tuple(
        (field.name, _getter(field))
        for field in descriptor.fields
        if not (field.message_type is not None and field.message_type.full_name in _SKIPPED)
    )
    _PLANS[descriptor.full_name] = plan
    return plan


class JsonBody(JSONResponse):
    """``JSONResponse`` written by orjson (services.common.json_codec): the same compact
    UTF-8 JSON as Starlette's ``json.dumps`` call, several times faster."""

    def render(self, content: Any) -> bytes:
        return dumps_bytes(content)


def _is_map(field: Any) -> bool:
    return bool(
        field.is_repeated
        and field.message_type is not None
        and field.message_type.GetOptions().map_entry
    )


_MODELS: dict[str, type[BaseModel]] = {}
_SCALARS: dict[int, Any] = {
    FieldDescriptor.CPPTYPE_STRING: str,
    FieldDescriptor.CPPTYPE_BOOL: bool,
    FieldDescriptor.CPPTYPE_INT32: int,
    FieldDescriptor.CPPTYPE_INT64: int,
    FieldDescriptor.CPPTYPE_UINT32: int,
    FieldDescriptor.CPPTYPE_UINT64: int,
    FieldDescriptor.CPPTYPE_DOUBLE: float,
    FieldDescriptor.CPPTYPE_FLOAT: float,
}


def _enum_type(enum: EnumDescriptor) -> Any:
    return Literal[tuple(value.name for value in enum.values)]


def _value_type(field: Any) -> Any:
    if field.message_type is not None:
        name = field.message_type.full_name
        if name == _MONEY:
            return MoneyJson
        if name in (_TIMESTAMP, _DATE):
            return str
        return model_for(field.message_type)
    if field.enum_type is not None:
        return _enum_type(field.enum_type)
    if (
        field.cpp_type == FieldDescriptor.CPPTYPE_STRING
        and field.type == FieldDescriptor.TYPE_BYTES
    ):
        return str
    return _SCALARS[field.cpp_type]


def model_for(descriptor: Any) -> type[BaseModel]:
    """The pydantic model of ``descriptor``'s JSON (for OpenAPI), built once."""
    cached = _MODELS.get(descriptor.full_name)
    if cached is not None:
        return cached
    fields: dict[str, Any] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.full_name in _SKIPPED:
            continue
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            fields[field.name] = (dict[str, _value_type(value_field)], ...)  # type: ignore[misc]
        elif field.is_repeated:
            fields[field.name] = (list[_value_type(field)], ...)  # type: ignore[misc]
        elif field.message_type is not None or field.containing_oneof is not None:
            fields[field.name] = (_value_type(field) | None, ...)
        else:
            fields[field.name] = (_value_type(field), ...)
    # The package's version in the name keeps e.g. charging's and rating's Quantity apart.
    parts = descriptor.full_name.split(".")
    title = parts[-1] if len(parts) < 3 else f"{parts[-3].title()}{parts[-1]}"
    model: type[BaseModel] = create_model(title, __config__=ConfigDict(title=title), **fields)
    _MODELS[descriptor.full_name] = model
    return model


def page_model(name: str, item: Any, items_field: str) -> type[BaseModel]:
    """A page of a list: the items under ``items_field`` and ``next_page_token``."""
    item_list: Any = list[model_for(item)]  # type: ignore[misc]
    fields: dict[str, Any] = {items_field: (item_list, ...), "next_page_token": (str, ...)}
    model: type[BaseModel] = create_model(name, __config__=ConfigDict(title=name), **fields)
    return model
