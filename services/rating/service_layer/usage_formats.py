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

What a file looks like (formats, presets, ``ImportOptions``) is in
``usage_layouts``; what a line becomes (``UsageRecord``, ``LineProblem``,
``RejectReason``, ``parse_instant``) is in ``usage_records``. Both are re-exported
here, the one import for the import pipeline, re-processing and the adapters.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, tzinfo
from decimal import Decimal, InvalidOperation
from typing import BinaryIO, Final
from zoneinfo import ZoneInfo

from services.rating.service_layer.usage_layouts import (
    ASTERISK_COLUMNS,
    PRESETS,
    RECORD_FIELDS,
    REQUIRED_FIELDS,
    ImportOptions,
    Preset,
    UsageFormat,
)
from services.rating.service_layer.usage_records import (
    MAX_RAW_CHARS,
    LayoutError,
    LineProblem,
    ParsedLine,
    RejectReason,
    SkippedLine,
    UsageRecord,
    _escape,
    parse_instant,
)


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


_WHOLE_NUMBER: Final = re.compile(r"[+-]?[0-9]+\Z")


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


__all__ = [
    "ASTERISK_COLUMNS",
    "MAX_RAW_CHARS",
    "PRESETS",
    "RECORD_FIELDS",
    "REQUIRED_FIELDS",
    "ImportOptions",
    "LayoutError",
    "LineProblem",
    "ParsedLine",
    "Preset",
    "RejectReason",
    "SkippedLine",
    "UsageFileReader",
    "UsageFormat",
    "UsageRecord",
    "parse_instant",
    "parse_stored_record",
]
