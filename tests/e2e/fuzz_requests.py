"""A request fuzzer generated from a running server's own descriptors (server reflection).

Nothing here knows any Reckon service: it asks the server which services it
hosts, builds every method's request type from the descriptors reflection
returns, and fills each field, one at a time and then all at once, with values a
careless or hostile client could send. Examples are Timestamps before year 1 or
with ``nanos=-1``, int64 max, unknown enum values, 100 kB strings, ids that were
never issued, and empty messages. A service that joins the suite's registry is
fuzzed by the same test with no change.

A finding is an answer with status INTERNAL or UNKNOWN, or a streamed answer
that carries a ``google.rpc.Status`` with one of those codes: bad input must be
INVALID_ARGUMENT (or NOT_FOUND, FAILED_PRECONDITION...), never a crash. Two
consistency rules of the error model are findings too (issue 9 item 14): a
NOT_FOUND without a ``ResourceInfo``, and NOT_FOUND for an id far longer than
any id (that is INVALID_ARGUMENT).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from services.common.grpc_errors import details_of

INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)
INT32_MAX, INT32_MIN = 2**31 - 1, -(2**31)
BAD_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
BAD_STATUS_NUMBERS = {code.value[0] for code in BAD_CODES}
MAX_DEPTH = 3

F = FieldDescriptor
STRINGS: tuple[str, ...] = (
    "",
    " ",
    "x" * 100_000,  # far beyond any id or label limit, well under gRPC's 4 MB
    "nope-0000000000",  # an id nobody issued
    "../../etc/passwd",
    "\x00\x01",
    "Ω≈ç√∫" * 40,
    "' OR 1=1 --",
    "-1",
)
INTS_64 = (INT64_MAX, INT64_MIN, -1)
INTS_32 = (INT32_MAX, INT32_MIN, -1)
FLOATS = (math.nan, math.inf, -math.inf, -1e308)
WELL_KNOWN: dict[str, tuple[dict[str, Any], ...]] = {
    "google.protobuf.Timestamp": (
        {"seconds": -62_135_596_801},  # one second before year 1
        {"nanos": -1},
        {"seconds": INT64_MAX},
        {"seconds": INT64_MIN},
        {"seconds": 253_402_300_800},  # year 10000
        {"seconds": 1_800_000_000, "nanos": 1_000_000_000},
    ),
    "google.protobuf.Duration": (
        {"seconds": INT64_MAX},
        {"seconds": INT64_MIN},
        {"seconds": 1, "nanos": -1},
        {"nanos": 1_000_000_000},
    ),
    "google.type.Money": (
        {"currency_code": "EUR", "units": INT64_MAX},
        {"currency_code": "EUR", "units": INT64_MIN},
        {"currency_code": "EUR", "units": INT64_MAX, "nanos": 999_999_999},
        {"currency_code": "EUR", "nanos": -1},
        {"currency_code": "EUR", "units": 1, "nanos": -5},
        {"currency_code": "EUR", "nanos": INT32_MAX},
        {"currency_code": "XXX", "units": 1},
        {"currency_code": "eur", "units": 1},
        {"currency_code": "x" * 1000, "units": 1},
        {"units": 1},
    ),
    "google.protobuf.FieldMask": ({"paths": ["nope"]}, {"paths": ["x" * 1000, ""]}),
}


def scalar_values(field: Any) -> tuple[Any, ...]:
    kind = field.type
    if kind == F.TYPE_STRING:
        return STRINGS
    if kind == F.TYPE_BYTES:
        return (b"", b"\xff" * 200)
    if kind == F.TYPE_BOOL:
        return (True,)
    if kind == F.TYPE_ENUM:
        # Proto3 enums are open: a number the server does not know arrives as-is.
        return (999, -1, max(v.number for v in field.enum_type.values))
    if kind in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
        return INTS_64
    if kind in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return INTS_32
    if kind in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return (2**64 - 1, 2**63)
    if kind in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return (2**32 - 1,)
    if kind in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return FLOATS if kind == F.TYPE_DOUBLE else (math.nan, math.inf, -3.4e38)
    return ()


Setter = tuple[str, Any]  # a dotted path and the value put there


def field_variants(descriptor: Any, prefix: str = "", depth: int = 0) -> Iterator[Setter]:
    """Every (path, bad value) pair of a message type, nested messages included."""
    for field in descriptor.fields:
        path = f"{prefix}{field.name}"
        if field.type == F.TYPE_MESSAGE:
            message_type = field.message_type
            if message_type.GetOptions().map_entry:
                for value in (*STRINGS[:4], ""):
                    yield path, {"__map__": value}
                continue
            known = WELL_KNOWN.get(message_type.full_name)
            if known is not None:
                for values in known:
                    yield path, {"__message__": values}
            elif depth < MAX_DEPTH:
                yield path, {"__message__": {}}  # present but empty
                yield from field_variants(message_type, f"{path}.", depth + 1)
            continue
        for value in scalar_values(field):
            yield path, value


def _apply(message: Message, path: str, value: Any) -> None:
    head, _, rest = path.partition(".")
    field: Any = message.DESCRIPTOR.fields_by_name[head]
    repeated = field.is_repeated
    if rest:
        target = getattr(message, head)
        child = target.add() if repeated else target
        _apply(child, rest, value)
        return
    if isinstance(value, dict) and "__map__" in value:
        entry = field.message_type
        key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
        key = value["__map__"] if key_field.type == F.TYPE_STRING else 0
        container = getattr(message, head)
        if value_field.type == F.TYPE_MESSAGE:
            container[key].SetInParent()
        elif value_field.type == F.TYPE_STRING:
            container[key] = value["__map__"]
        else:
            container[key] = scalar_values(value_field)[0]
        return
    if isinstance(value, dict) and "__message__" in value:
        target = getattr(message, head)
        child = target.add() if repeated else target
        child.SetInParent()
        for name, inner in value["__message__"].items():
            if isinstance(inner, list):
                getattr(child, name).extend(inner)
            else:
                setattr(child, name, inner)
        return
    if repeated:
        getattr(message, head).extend([value, value])
    else:
        setattr(message, head, value)


@dataclass(frozen=True)
class Probe:
    what: str
    request: Message
    # An id field set to a string far longer than any id: must not be NOT_FOUND.
    long_id: bool = False


def _is_long_id(path: str, value: Any) -> bool:
    name = path.rsplit(".", 1)[-1]
    return name.endswith(("_id", "_code")) and isinstance(value, str) and len(value) > 1000


def probes_for(request_type: type[Message], budget: int, seed: str) -> list[Probe]:
    """The empty message, each field's bad values alone, then every field bad at once."""
    variants = list(field_variants(request_type.DESCRIPTOR))
    singles: list[Probe] = []
    for path, value in variants:
        message = request_type()
        try:
            _apply(message, path, value)
        except (TypeError, ValueError, KeyError):
            continue  # a value this field's type cannot hold on the wire
        singles.append(Probe(f"{path}={_short(value)}", message, _is_long_id(path, value)))
    together: list[Probe] = []
    for round_ in range(4):
        message = request_type()
        seen: dict[str, int] = {}
        for path, value in variants:
            index = seen.get(path, 0)
            seen[path] = index + 1
            if index == round_ % max(1, _count(variants, path)):
                try:
                    _apply(message, path, value)
                except (TypeError, ValueError, KeyError):
                    continue
        together.append(Probe(f"every field bad at once (round {round_})", message))
    rng = random.Random(seed)
    # Over-long ids are always tried (a consistency rule); the rest is sampled.
    long_ids = [probe for probe in singles if probe.long_id and "." not in probe.what.split("=")[0]]
    others = [probe for probe in singles if probe not in long_ids]
    room = max(0, budget - 1 - len(together) - len(long_ids))
    chosen = others if len(others) <= room else rng.sample(others, room)
    return [Probe("empty message", request_type()), *together, *long_ids, *chosen]


def _count(variants: list[Setter], path: str) -> int:
    return sum(1 for p, _ in variants if p == path)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} chars)"


@dataclass(frozen=True)
class Finding:
    method: str
    probe: str
    code: str
    details: str

    def __str__(self) -> str:
        return f"{self.method} [{self.probe}] -> {self.code}: {self.details[:300]}"


@dataclass
class Method:
    full_name: str  # /pkg.Service/Method
    descriptor: MethodDescriptor
    request_type: type[Message]
    response_type: type[Message]


def discover(address: str, skip_prefixes: tuple[str, ...] = ("grpc.",)) -> list[Method]:
    """Every method of every service the server at ``address`` says it hosts."""
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = descriptor_pool.DescriptorPool(database)
        methods = []
        for service_name in sorted(database.get_services()):
            if service_name.startswith(skip_prefixes):
                continue
            service = pool.FindServiceByName(service_name)
            for method in service.methods:
                methods.append(
                    Method(
                        f"/{service.full_name}/{method.name}",
                        method,
                        message_factory.GetMessageClass(method.input_type),
                        message_factory.GetMessageClass(method.output_type),
                    )
                )
    return methods


def bad_statuses_inside(message: Message) -> list[str]:
    """google.rpc.Status values with code INTERNAL/UNKNOWN anywhere in a streamed answer."""
    found: list[str] = []
    descriptor: Any = message.DESCRIPTOR
    if descriptor.full_name == "google.rpc.Status":
        code = getattr(message, "code", 0)
        if code in BAD_STATUS_NUMBERS:
            found.append(f"status {code}: {getattr(message, 'message', '')}")
    fields: Any = message.ListFields()
    for field, value in fields:
        if field.type != F.TYPE_MESSAGE or field.message_type.GetOptions().map_entry:
            continue
        for item in value if field.is_repeated else [value]:
            found.extend(bad_statuses_inside(item))
    return found


CORE_WRITE_RACE = "Internal error from Core"
_TARGETS: dict[int, str] = {}


def channel_target(channel: grpc.aio.Channel) -> str:
    return _TARGETS[id(channel)]


def call_sync(
    address: str, method: Method, probe: Probe, token: str, deadline: float
) -> tuple[grpc.StatusCode, str]:
    """A client-streaming call through the sync client: its status is the server's."""
    with grpc.insecure_channel(address) as channel:
        streamed = channel.stream_stream if method.descriptor.server_streaming else None
        kwargs: dict[str, Any] = {
            "request_serializer": method.request_type.SerializeToString,
            "response_deserializer": method.response_type.FromString,
        }
        metadata = (("authorization", f"Bearer {token}"),)
        try:
            if streamed is not None:
                for _ in streamed(method.full_name, **kwargs)(
                    iter([probe.request] * 2), metadata=metadata, timeout=deadline
                ):
                    pass
            else:
                channel.stream_unary(method.full_name, **kwargs)(
                    iter([probe.request] * 2), metadata=metadata, timeout=deadline
                )
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, ""


async def call(
    channel: grpc.aio.Channel, method: Method, probe: Probe, token: str, deadline: float
) -> Finding | None:
    metadata = (("authorization", f"Bearer {token}"),)
    kwargs: dict[str, Any] = {
        "request_serializer": method.request_type.SerializeToString,
        "response_deserializer": method.response_type.FromString,
    }
    client_streams = method.descriptor.client_streaming
    server_streams = method.descriptor.server_streaming

    async def requests() -> AsyncIterator[Message]:
        for _ in range(2):
            yield probe.request

    answers: list[Message] = []
    try:
        if not client_streams and not server_streams:
            stub = channel.unary_unary(method.full_name, **kwargs)
            answers.append(await stub(probe.request, metadata=metadata, timeout=deadline))
        elif client_streams and not server_streams:
            stub_su = channel.stream_unary(method.full_name, **kwargs)
            answers.append(await stub_su(requests(), metadata=metadata, timeout=deadline))
        else:
            if client_streams:
                streamed = channel.stream_stream(method.full_name, **kwargs)(
                    requests(), metadata=metadata, timeout=deadline
                )
            else:
                streamed = channel.unary_stream(method.full_name, **kwargs)(
                    probe.request, metadata=metadata, timeout=deadline
                )
            async for answer in streamed:
                answers.append(answer)
                if len(answers) >= 10:
                    streamed.cancel()
                    break
    except grpc.aio.AioRpcError as exc:
        if client_streams and exc.details() == CORE_WRITE_RACE:
            # grpc/grpc#36066: the asyncio client reports its own failed write after
            # the server ended the call early as INTERNAL, hiding the server's status.
            # The sync client reports what the server said: ask again with it.
            code, details = await asyncio.to_thread(
                call_sync, channel_target(channel), method, probe, token, deadline
            )
        else:
            code, details = exc.code(), exc.details() or ""
        if code in BAD_CODES:
            return Finding(method.full_name, probe.what, code.name, details)
        if code is grpc.StatusCode.NOT_FOUND:
            if probe.long_id:
                return Finding(
                    method.full_name, probe.what, "NOT_FOUND", "an over-long id is bad input"
                )
            if not details_of(exc).resource_type:
                return Finding(method.full_name, probe.what, "NOT_FOUND", "without ResourceInfo")
    except asyncio.CancelledError:
        raise
    for answer in answers:
        inside = bad_statuses_inside(answer)
        if inside:
            return Finding(method.full_name, probe.what, "in-band", "; ".join(inside))
    return None


async def fuzz_server(
    address: str,
    token: str,
    *,
    budget_per_method: int = 40,
    concurrency: int = 8,
    deadline: float = 5.0,
) -> tuple[int, list[Finding]]:
    """Call every method of the server with bad requests; (calls made, findings)."""
    methods = await asyncio.to_thread(discover, address)
    plan = [
        (method, probe)
        for method in methods
        for probe in probes_for(method.request_type, budget_per_method, method.full_name)
    ]
    gate = asyncio.Semaphore(concurrency)
    options = [("grpc.max_send_message_length", 16 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        _TARGETS[id(channel)] = address

        async def one(method: Method, probe: Probe) -> Finding | None:
            async with gate:
                return await call(channel, method, probe, token, deadline)

        results = await asyncio.gather(*(one(m, p) for m, p in plan))
    return len(plan), [finding for finding in results if finding is not None]
