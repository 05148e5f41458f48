"""What a usage file looks like: formats, record fields, presets, import options.

Presets name the layouts of real switches. ``asterisk`` is Asterisk's
``Master.csv`` (cdr_csv): no header, 18 columns; the billable time of a call is
``billsec`` and only ``ANSWERED`` calls are rated, others are counted as skipped.
``ImportOptions`` are stored with an import so its rejects can be re-read later.
The reader itself is in ``usage_formats``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.common.errors import Violations


class UsageFormat:
    CSV: Final = "csv"
    JSONL: Final = "jsonl"


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
