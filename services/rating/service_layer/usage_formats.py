"""Reading usage files (CDR/EDR) in constant memory: CSV with a column mapping, JSON lines.

A usage file is read one physical line at a time from a binary stream, so a
file of any size costs the memory of one line. Each line is checked on its own
and either becomes a ``UsageRecord`` (typed fields, ready for rating) or a
``LineProblem`` with a stable reason word, the line number and the raw text:
a broken line never stops the file and is never dropped silently (RAT-7).

Hostile input is bounded: a line longer than ``max_line_bytes`` is skipped to
its end without being held in memory; a field longer than ``max_field_chars``
is refused; bytes that are not UTF-8 are refused per line (the raw record is
kept with the bad bytes escaped). A CSV record is one physical line: a quoted
field with a newline inside is malformed, so one unbalanced quote cannot
swallow the rest of the file.

Presets name the layouts of real switches. ``asterisk`` is Asterisk's
``Master.csv`` (cdr_csv): no header, 18 columns; the billable time of a call is
``billsec`` and only ``ANSWERED`` calls are rated, others are counted as skipped.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import BinaryIO, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.common.errors import Violations


class UsageFormat:
    CSV: Final = "csv"
    JSONL: Final = "jsonl"


class RejectReason:
    """Stable words for why a record was not rated; clients and operators branch on them."""

    MALFORMED_LINE: Final = "MALFORMED_LINE"
    ENCODING: Final = "ENCODING"
    LINE_TOO_LONG: Final = "LINE_TOO_LONG"
    FIELD_TOO_LONG: Final = "FIELD_TOO_LONG"
    MISSING_FIELD: Final = "MISSING_FIELD"
    INVALID_VALUE: Final = "INVALID_VALUE"
    NEGATIVE_QUANTITY: Final = "NEGATIVE_QUANTITY"
    FUTURE_EVENT: Final = "FUTURE_EVENT"
    UNKNOWN_ACCOUNT: Final = "UNKNOWN_ACCOUNT"
    NO_PLAN: Final = "NO_PLAN"
    DUPLICATE: Final = "DUPLICATE"
    UNIT_MISMATCH: Final = "UNIT_MISMATCH"
    NO_CATALOG: Final = "NO_CATALOG"
    # Reasons raised by the tariff engine arrive with its own words (NO_TARIFF,
    # UNKNOWN_PLAN, PLAN_NOT_IN_FORCE, INVALID_NUMBER, UNKNOWN_TAX_REGION ...).


# Record fields a mapping may name. record_id, account_id, event_time and quantity are
# required; service may come from the options' default.
RECORD_FIELDS: Final = (
    "record_id",
    "account_id",
    "service",
    "destination",
    "event_time",
    "quantity",
    "unit",
    "amount",
    "currency",
)
REQUIRED_FIELDS: Final = ("record_id", "account_id", "event_time", "quantity")

ASTERISK_COLUMNS: Final = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
)


@dataclass(frozen=True)
class Preset:
    """A named layout: how record fields map to columns, and what a file looks like."""

    name: str
    columns: Mapping[str, str]
    has_header: bool
    default_service: str = ""
    # CSV without header: names of the positional columns (so mappings can use names).
    positional_names: tuple[str, ...] = ()
    # Only rows whose ``filter_column`` is in ``filter_values`` are rated; others are skipped.
    filter_column: str | None = None
    filter_values: frozenset[str] = frozenset()


PRESETS: Final[dict[str, Preset]] = {
    "reckon": Preset(
        "reckon",
        {name: name for name in RECORD_FIELDS},
        has_header=True,
    ),
    "asterisk": Preset(
        "asterisk",
        {
            "record_id": "uniqueid",
            "account_id": "accountcode",
            "destination": "dst",
            # The billable part of an answered call starts when it was answered.
            "event_time": "answer",
            "quantity": "billsec",
        },
        has_header=False,
        default_service="voice",
        positional_names=ASTERISK_COLUMNS,
        filter_column="disposition",
        filter_values=frozenset({"ANSWERED"}),
    ),
}


@dataclass(frozen=True)
class ImportOptions:
    """How to read one usage file; stored with the import so rejects can be re-read."""

    format: str = UsageFormat.CSV
    preset: str = "reckon"
    columns: Mapping[str, str] = field(default_factory=dict)
    has_header: bool | None = None
    default_service: str = ""
    source_time_zone: str = "UTC"
    reject_threshold_percent: Decimal | None = None
    delimiter: str = ","

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": self.format,
                "preset": self.preset,
                "columns": dict(self.columns),
                "has_header": self.has_header,
                "default_service": self.default_service,
                "source_time_zone": self.source_time_zone,
                "reject_threshold_percent": (
                    None
                    if self.reject_threshold_percent is None
                    else str(self.reject_threshold_percent)
                ),
                "delimiter": self.delimiter,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ImportOptions:
        raw = json.loads(text)
        threshold = raw.get("reject_threshold_percent")
        return cls(
            format=raw["format"],
            preset=raw["preset"],
            columns=raw.get("columns") or {},
            has_header=raw.get("has_header"),
            default_service=raw.get("default_service", ""),
            source_time_zone=raw.get("source_time_zone", "UTC"),
            reject_threshold_percent=None if threshold is None else Decimal(threshold),
            delimiter=raw.get("delimiter", ","),
        )

    def validate(self, violations: Violations) -> None:
        """Every problem of the options, named by their request field."""
        if self.format not in (UsageFormat.CSV, UsageFormat.JSONL):
            violations.add("format", "must be CSV or JSONL")
        if self.preset not in PRESETS:
            violations.add("preset", f"unknown preset; expected one of {', '.join(PRESETS)}")
        for name, column in self.columns.items():
            if name not in RECORD_FIELDS:
                violations.add(
                    f"columns[{name}]", f"unknown record field; expected {', '.join(RECORD_FIELDS)}"
                )
            elif not column.strip() or len(column) > 128:
                violations.add(f"columns[{name}]", "must name a column (1-128 characters)")
        try:
            ZoneInfo(self.source_time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            violations.add(
                "source_time_zone", f"{self.source_time_zone[:64]!r} is not an IANA zone"
            )
        if self.reject_threshold_percent is not None and not (
            0 <= self.reject_threshold_percent <= 100
        ):
            violations.add("reject_threshold_percent", "must be between 0 and 100")
        if len(self.default_service) > 64:
            violations.add("default_service", "must be at most 64 characters")


@dataclass(slots=True)
class UsageRecord:
    """One readable record with typed fields; not yet known to be ratable."""

    line: int
    raw: str
    record_id: str
    account_id: str
    service: str
    destination: str
    event_time: datetime
    quantity: int
    unit: str
    amount: Decimal | None


@dataclass(slots=True)
class LineProblem:
    """A line that could not be read as a record."""

    line: int
    raw: str
    reason: str
    message: str
    record_id: str = ""
    account_id: str = ""


@dataclass(slots=True)
class SkippedLine:
    """A line deliberately not rated (e.g. an unanswered call in a switch CDR)."""

    line: int


ParsedLine = UsageRecord | LineProblem | SkippedLine


class LayoutError(Exception):
    """The file as a whole cannot be read with the given options (e.g. header lacks columns)."""


# Raw records are kept for inspection and re-processing, capped so hostile lines stay small.
MAX_RAW_CHARS: Final = 4096


def _escape(data: bytes) -> str:
    # NUL is valid UTF-8 but no PostgreSQL text column takes it: keep it visible, escaped.
    text = data.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    return text[:MAX_RAW_CHARS]


class UsageFileReader:
    """Iterates the lines of one usage file as ``ParsedLine``s, in order, in constant memory.

    ``start_after_line`` skips lines already handled by an interrupted import of the
    same file (they are still read, to keep line numbers right, but not parsed).
    """

    def __init__(
        self,
        stream: BinaryIO,
        options: ImportOptions,
        *,
        max_line_bytes: int = 16_384,
        max_field_chars: int = 1024,
        start_after_line: int = 0,
    ) -> None:
        self._stream = stream
        self._options = options
        self._preset = PRESETS[options.preset]
        self._max_line = max_line_bytes
        self._max_field = max_field_chars
        self._start_after = start_after_line
        self._zone: tzinfo = (
            UTC if options.source_time_zone in ("UTC", "") else ZoneInfo(options.source_time_zone)
        )
        self._default_service = options.default_service or self._preset.default_service
        self.lines_read = 0
        self.bytes_read = 0
        # The header line of a CSV file, kept so a reject can be re-read without the file.
        self.header_text: str | None = None

    # -- physical lines -----------------------------------------------------------------

    def _physical_lines(self) -> Iterator[tuple[int, bytes, bool]]:
        """(line number, bytes without the newline, too_long) for every line."""
        readline = self._stream.readline
        limit = self._max_line + 1
        number = 0
        while True:
            chunk = readline(limit)
            if not chunk:
                return
            number += 1
            self.bytes_read += len(chunk)
            if len(chunk) == limit and not chunk.endswith(b"\n"):
                # Too long: drain the rest of the line without keeping it.
                head = chunk[:200]
                while True:
                    rest = readline(65_536)
                    self.bytes_read += len(rest)
                    if not rest or rest.endswith(b"\n"):
                        break
                yield number, head, True
                continue
            yield number, chunk.rstrip(b"\r\n"), False

    # -- records ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[ParsedLine]:
        if self._options.format == UsageFormat.JSONL:
            yield from self._jsonl()
        else:
            yield from self._csv()

    def _csv(self) -> Iterator[ParsedLine]:
        options = self._options
        preset = self._preset
        has_header = preset.has_header if options.has_header is None else options.has_header
        columns = {**preset.columns, **options.columns}
        delimiter = options.delimiter
        max_field = self._max_field
        lines = self._physical_lines()
        names: list[str] | None = None
        if has_header:
            for number, data, too_long in lines:
                self.lines_read = number
                if too_long:
                    raise LayoutError(f"line {number}: header longer than {self._max_line} bytes")
                text = _header_text(number, data)
                if not text.strip():
                    continue
                self.header_text = text
                try:
                    names = [name.strip() for name in next(csv.reader([text], delimiter=delimiter))]
                except csv.Error as exc:
                    raise LayoutError(f"line {number}: header is not valid CSV: {exc}") from None
                break
            else:
                return
        elif preset.positional_names:
            names = list(preset.positional_names)
        index = self._column_indexes(columns, names, has_header)
        filter_index = None
        if preset.filter_column is not None and names is not None:
            filter_index = (
                names.index(preset.filter_column) if preset.filter_column in names else None
            )
        filter_values = preset.filter_values
        needed = max(index.values()) + 1 if index else 0
        get = index.get
        record_index, account_index = get("record_id"), get("account_id")
        for number, data, too_long in lines:
            self.lines_read = number
            if number <= self._start_after:
                continue
            if too_long:
                yield LineProblem(
                    number,
                    _escape(data),
                    RejectReason.LINE_TOO_LONG,
                    f"line is longer than {self._max_line} bytes",
                )
                continue
            if b"\x00" in data:
                yield LineProblem(
                    number, _escape(data), RejectReason.ENCODING, "contains NUL bytes"
                )
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield LineProblem(
                    number,
                    _escape(data),
                    RejectReason.ENCODING,
                    f"not UTF-8: {exc.reason} at byte {exc.start}",
                )
                continue
            if not text or text.isspace():
                continue
            if '"' in text:
                try:
                    values = next(csv.reader([text], delimiter=delimiter, strict=True))
                except csv.Error as exc:
                    yield LineProblem(
                        number,
                        text[:MAX_RAW_CHARS],
                        RejectReason.MALFORMED_LINE,
                        f"not valid CSV: {exc}",
                    )
                    continue
            else:
                values = text.split(delimiter)
            if filter_index is not None and (
                filter_index >= len(values) or values[filter_index] not in filter_values
            ):
                yield SkippedLine(number)
                continue
            if len(values) < needed:
                yield LineProblem(
                    number,
                    text[:MAX_RAW_CHARS],
                    RejectReason.MISSING_FIELD,
                    f"expected at least {needed} columns, found {len(values)}",
                    _at(values, record_index, 128),
                    _at(values, account_index, 64),
                )
                continue
            too_big = next((v for v in values if len(v) > max_field), None)
            if too_big is not None:
                yield LineProblem(
                    number,
                    text[:MAX_RAW_CHARS],
                    RejectReason.FIELD_TOO_LONG,
                    f"a field is longer than {max_field} characters",
                )
                continue
            yield self._record(number, text, {name: values[i] for name, i in index.items()})

    def _column_indexes(
        self, columns: Mapping[str, str], names: list[str] | None, has_header: bool
    ) -> dict[str, int]:
        index: dict[str, int] = {}
        missing: list[str] = []
        for field_name, column in columns.items():
            column = column.strip()
            if names is not None and column in names:
                index[field_name] = names.index(column)
            elif column.isdigit() and int(column) >= 1 and not has_header:
                index[field_name] = int(column) - 1
            elif field_name in REQUIRED_FIELDS or (
                field_name == "service" and not (self._default_service)
            ):
                missing.append(f"{field_name} (column {column!r})")
        if missing:
            where = "the header" if has_header else "the layout"
            raise LayoutError(f"{where} lacks required columns: {', '.join(missing)}")
        return index

    def _jsonl(self) -> Iterator[ParsedLine]:
        columns = {**PRESETS["reckon"].columns, **self._options.columns}
        max_field = self._max_field
        loads = json.loads
        for number, data, too_long in self._physical_lines():
            self.lines_read = number
            if number <= self._start_after:
                continue
            if too_long:
                yield LineProblem(
                    number,
                    _escape(data),
                    RejectReason.LINE_TOO_LONG,
                    f"line is longer than {self._max_line} bytes",
                )
                continue
            if b"\x00" in data:
                yield LineProblem(
                    number, _escape(data), RejectReason.ENCODING, "contains NUL bytes"
                )
                continue
            try:
                # A byte order mark opens the files some Windows tools write.
                text = data.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield LineProblem(
                    number,
                    _escape(data),
                    RejectReason.ENCODING,
                    f"not UTF-8: {exc.reason} at byte {exc.start}",
                )
                continue
            if not text or text.isspace():
                continue
            try:
                document = loads(text)
            except RecursionError:
                # "[[[[..." within the line limit exhausts the parser's stack.
                yield LineProblem(
                    number,
                    text[:MAX_RAW_CHARS],
                    RejectReason.MALFORMED_LINE,
                    "not valid JSON: nested too deeply",
                )
                continue
            except ValueError as exc:
                yield LineProblem(
                    number,
                    text[:MAX_RAW_CHARS],
                    RejectReason.MALFORMED_LINE,
                    f"not valid JSON: {exc}",
                )
                continue
            if not isinstance(document, dict):
                yield LineProblem(
                    number,
                    text[:MAX_RAW_CHARS],
                    RejectReason.MALFORMED_LINE,
                    "a JSON line must be an object",
                )
                continue
            values: dict[str, str] = {}
            problem = None
            for field_name, key in columns.items():
                value = document.get(key)
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, str | int | float):
                    problem = f"{key} must be a string or a number"
                    break
                text_value = value if isinstance(value, str) else json.dumps(value)
                if "\x00" in text_value:
                    problem = f"{key} contains a NUL character"
                    break
                if len(text_value) > max_field:
                    problem = f"{key} is longer than {max_field} characters"
                    break
                values[field_name] = text_value
            if problem is not None:
                reason = (
                    RejectReason.FIELD_TOO_LONG
                    if "longer" in problem
                    else RejectReason.INVALID_VALUE
                )
                yield LineProblem(
                    number,
                    text[:MAX_RAW_CHARS],
                    reason,
                    problem,
                    _clean(document.get(columns["record_id"], ""), 128),
                    _clean(document.get(columns["account_id"], ""), 64),
                )
                continue
            yield self._record(number, text, values)

    # -- typed fields -------------------------------------------------------------------

    def _record(self, number: int, text: str, values: Mapping[str, str]) -> ParsedLine:
        raw = text[:MAX_RAW_CHARS]
        get = values.get
        record_id = get("record_id", "").strip()
        account_id = get("account_id", "").strip()
        service = get("service", "").strip() or self._default_service
        quantity_text = get("quantity", "").strip()
        if (
            not (record_id and account_id and service and quantity_text)
            or not get("event_time", "").strip()
        ):
            missing = [name for name in REQUIRED_FIELDS if not get(name, "").strip()]
            if not service:
                missing.append("service")
            return LineProblem(
                number,
                raw,
                RejectReason.MISSING_FIELD,
                f"missing {', '.join(missing)}",
                record_id,
                account_id,
            )
        if len(record_id) > 128 or len(account_id) > 64 or len(service) > 64:
            return LineProblem(
                number,
                raw,
                RejectReason.FIELD_TOO_LONG,
                "record_id (128), account_id or service (64) too long",
                record_id[:128],
                account_id[:64],
            )
        event_time = parse_instant(values["event_time"], self._zone)
        if event_time is None:
            return LineProblem(
                number,
                raw,
                RejectReason.INVALID_VALUE,
                f"event_time {values['event_time'][:40]!r} is not a date and time "
                "in the years 1900-2199",
                record_id,
                account_id,
            )
        try:
            # int() alone would also take "1_000" and non-ASCII digits ("٣"): a switch
            # never writes those, so they are a broken record, not a quantity.
            if not _WHOLE_NUMBER.match(quantity_text):
                raise ValueError(quantity_text)
            quantity = int(quantity_text)
        except ValueError:
            return LineProblem(
                number,
                raw,
                RejectReason.INVALID_VALUE,
                f"quantity {quantity_text[:40]!r} is not a whole number",
                record_id,
                account_id,
            )
        if quantity < 0:
            return LineProblem(
                number,
                raw,
                RejectReason.NEGATIVE_QUANTITY,
                f"quantity {quantity} is negative",
                record_id,
                account_id,
            )
        amount_text = values.get("amount", "").strip()
        amount = None
        if amount_text:
            try:
                amount = Decimal(amount_text)
            except InvalidOperation:
                amount = None
            if amount is None or not amount.is_finite():
                return LineProblem(
                    number,
                    raw,
                    RejectReason.INVALID_VALUE,
                    f"amount {amount_text[:40]!r} is not a decimal number",
                    record_id,
                    account_id,
                )
        return UsageRecord(
            number,
            raw,
            record_id,
            account_id,
            service,
            values.get("destination", "").strip(),
            event_time,
            quantity,
            values.get("unit", "").strip().lower(),
            amount,
        )


_UTF16_32_MARKS: Final = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


def _header_text(number: int, data: bytes) -> str:
    """The header line as text, or a ``LayoutError`` that says what the file really is."""
    if number == 1 and data.startswith(_UTF16_32_MARKS):
        raise LayoutError(
            "line 1: the file is UTF-16 or UTF-32 (byte order mark); usage files must be UTF-8"
        )
    if b"\x00" in data:
        raise LayoutError(
            f"line {number}: header contains NUL bytes (a UTF-16 file?); usage files must be UTF-8"
        )
    if b"\r" in data:
        raise LayoutError(
            f"line {number}: header contains a carriage return inside the line (lines ending "
            "in CR alone?); lines must end in LF or CRLF"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LayoutError(f"line {number}: header is not UTF-8 ({exc.reason})") from None


def _clean(value: object, limit: int) -> str:
    """An identifier from a bad JSON line, safe to store (no NUL), cut to its column."""
    return str(value).replace("\x00", "\\x00")[:limit]


def _at(values: list[str], index: int | None, limit: int) -> str:
    """A field of a short row, cut to what the reject's column holds."""
    return values[index][:limit] if index is not None and index < len(values) else ""


_EARLIEST_EVENT: Final = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST_EVENT: Final = datetime(2200, 1, 1, tzinfo=UTC)
_WHOLE_NUMBER: Final = re.compile(r"[+-]?[0-9]+\Z")


def parse_instant(text: str, zone: tzinfo = UTC) -> datetime | None:
    """An aware instant from ISO 8601 (with or without offset; naive means ``zone``)
    or from epoch seconds; None when the text is neither."""
    text = text.strip()
    if not text:
        return None
    try:
        if text.isascii() and text.isdigit():
            moment = datetime.fromtimestamp(int(text), UTC)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
            if moment.tzinfo is not UTC:
                moment = moment.astimezone(UTC)
    except (OverflowError, OSError, ValueError):
        # Year 1 or 9999 shifted across midnight by an offset leaves datetime's range.
        return None
    # Only instants every step can place in a time zone and a bill cycle: the years
    # 9999 or 0001 of a hostile file would overflow there (and cannot be real usage).
    return moment if _EARLIEST_EVENT <= moment < _LATEST_EVENT else None


def parse_stored_record(
    raw: str,
    line: int,
    options: ImportOptions,
    header: str | None,
    *,
    max_line_bytes: int,
    max_field_chars: int,
) -> ParsedLine | None:
    """Parse one stored raw record again (re-processing of a reject), as line ``line``."""
    data = raw.encode("utf-8")
    if header is not None and options.format == UsageFormat.CSV:
        data = header.encode("utf-8") + b"\n" + data
    reader = UsageFileReader(
        io.BytesIO(data), options, max_line_bytes=max_line_bytes, max_field_chars=max_field_chars
    )
    parsed = next(iter(reader), None)
    if parsed is not None:
        parsed.line = line
    return parsed
