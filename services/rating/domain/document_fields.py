"""Field readers of the catalog document: shapes, scalars, instants and days.

``FieldReader`` reads one field at a time and collects every problem as a
``FieldViolation`` whose field is a path into the document, instead of
stopping at the first; the readers of each part of the document
(``document_reference``, ``document_rates``, ``document_plans``) build on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final, TypeVar

from services.common.errors import FieldViolation
from services.common.money import MAX_SCALE, Rounding

from .amounts import decimal_places

E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")

MAX_CODE_LENGTH: Final = 100
_ROUNDING_NAMES: Final = {
    **{r.value.lower(): r for r in Rounding},
    **{r.value.removeprefix("ROUND_").lower(): r for r in Rounding},
}


def _at(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Sequence):
        return "a list"
    return type(value).__name__


class FieldReader:
    """Reads a document field by field, collecting problems instead of stopping."""

    def __init__(self) -> None:
        self.problems: list[FieldViolation] = []

    def problem(self, path: str, description: str) -> None:
        self.problems.append(FieldViolation(path, description))

    # -- shapes -------------------------------------------------------------------

    def record(
        self, value: object, path: str, allowed: frozenset[str]
    ) -> Mapping[str, object] | None:
        """``value`` as a mapping with only ``allowed`` keys (unknown keys are reported)."""
        if not isinstance(value, Mapping):
            self.problem(path or "document", f"must be a mapping, got {_kind(value)}")
            return None
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                self.problem(
                    _at(path, str(key)),
                    f"unknown field (expected one of {', '.join(sorted(allowed))})",
                )
        return value

    def each(
        self,
        parent: Mapping[str, object],
        key: str,
        path: str,
        build: Callable[[object, str], T | None],
    ) -> tuple[T, ...]:
        """Build every element of the list ``parent[key]``; absent means empty."""
        value = parent.get(key)
        if value is None:
            return ()
        here = _at(path, key)
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            self.problem(here, f"must be a list, got {_kind(value)}")
            return ()
        built = [build(item, _at(here, index)) for index, item in enumerate(value)]
        return tuple(item for item in built if item is not None)

    # -- scalars ------------------------------------------------------------------

    def text(
        self,
        obj: Mapping[str, object],
        key: str,
        path: str,
        *,
        required: bool = True,
        default: str = "",
    ) -> str:
        value = obj.get(key)
        here = _at(path, key)
        if value is None or value == "":
            if required:
                self.problem(here, "is required")
            return default
        if not isinstance(value, str):
            self.problem(here, f"must be text, got {_kind(value)}")
            return default
        if len(value) > MAX_CODE_LENGTH and key != "name":
            self.problem(here, f"must be at most {MAX_CODE_LENGTH} characters")
        return value

    def optional_text(self, obj: Mapping[str, object], key: str, path: str) -> str | None:
        return self.text(obj, key, path, required=False) or None

    def texts(self, obj: Mapping[str, object], key: str, path: str) -> tuple[str, ...]:
        value = obj.get(key)
        if value is None:
            return ()
        here = _at(path, key)
        if isinstance(value, str) or not isinstance(value, Sequence):
            self.problem(here, f"must be a list of text, got {_kind(value)}")
            return ()
        result: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, str) and item:
                result.append(item)
            else:
                self.problem(_at(here, index), f"must be text, got {_kind(item)}")
        return tuple(result)

    def integer(
        self,
        obj: Mapping[str, object],
        key: str,
        path: str,
        *,
        minimum: int = 0,
        required: bool = True,
        default: int | None = None,
    ) -> int | None:
        value = obj.get(key)
        here = _at(path, key)
        if value is None:
            if required:
                self.problem(here, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(here, f"must be a whole number, got {_kind(value)}")
            return default
        if value < minimum:
            self.problem(here, f"must be at least {minimum}")
            return default
        return value

    def decimal(
        self,
        obj: Mapping[str, object],
        key: str,
        path: str,
        *,
        required: bool = True,
        default: Decimal | None = None,
        negative: bool = False,
    ) -> Decimal | None:
        value = obj.get(key)
        here = _at(path, key)
        if value is None:
            if required:
                self.problem(here, "is required")
            return default
        if isinstance(value, bool | float):
            self.problem(
                here,
                f'{value!r} must be written exactly: a string like "0.10" '
                f"or an integer (floats are not exact)",
            )
            return default
        if not isinstance(value, str | int | Decimal):
            self.problem(here, f"must be a decimal amount, got {_kind(value)}")
            return default
        try:
            result = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            self.problem(here, f"{str(value)[:40]!r} is not a decimal number")
            return default
        if not result.is_finite():
            self.problem(here, "must be a finite number")
            return default
        if result < 0 and not negative:
            self.problem(here, "must not be negative")
            return default
        if decimal_places(result) > MAX_SCALE:
            self.problem(here, f"has more than {MAX_SCALE} decimal places")
            return default
        if abs(result) >= 10**18:
            self.problem(here, "is too large")
            return default
        return result

    def boolean(self, obj: Mapping[str, object], key: str, path: str, default: bool) -> bool:
        value = obj.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(_at(path, key), f"must be true or false, got {_kind(value)}")
            return default
        return value

    def choice(
        self,
        obj: Mapping[str, object],
        key: str,
        path: str,
        kind: type[E],
        default: E | None = None,
    ) -> E | None:
        value = obj.get(key)
        here = _at(path, key)
        if value is None:
            if default is None:
                self.problem(here, "is required")
            return default
        if isinstance(value, str):
            for member in kind:
                if value.lower() in (member.value.lower(), member.name.lower()):
                    return member
        self.problem(here, f"must be one of {', '.join(m.value for m in kind)}")
        return default

    def rounding(self, obj: Mapping[str, object], path: str, default: Rounding) -> Rounding:
        value = obj.get("rounding")
        if value is None:
            return default
        found = _ROUNDING_NAMES.get(value.lower()) if isinstance(value, str) else None
        if found is None:
            self.problem(
                _at(path, "rounding"), "must be one of half_even, half_up, up, down, ceiling, floor"
            )
            return default
        return found

    def instant(
        self, obj: Mapping[str, object], key: str, path: str, *, required: bool = False
    ) -> datetime | None:
        value = obj.get(key)
        here = _at(path, key)
        if value is None:
            if required:
                self.problem(here, "is required")
            return None
        if isinstance(value, str):
            text = value.strip()
            try:
                value = (
                    datetime.fromisoformat(text)
                    if "T" in text or " " in text
                    else date.fromisoformat(text)
                )
            except ValueError:
                self.problem(here, f"{text[:40]!r} is not an ISO 8601 date or date-time")
                return None
        if isinstance(value, datetime):
            if value.utcoffset() is None:
                self.problem(here, "needs a UTC offset (for example 2026-01-01T00:00:00Z)")
                return None
            return value.astimezone(UTC)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        self.problem(here, f"must be a date or date-time, got {_kind(value)}")
        return None

    def day(self, obj: Mapping[str, object], key: str, path: str) -> date | None:
        value = obj.get(key)
        here = _at(path, key)
        if isinstance(value, datetime):
            self.problem(here, "must be a date without a time")
            return None
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        self.problem(here, "must be a date (YYYY-MM-DD)")
        return None

    def clock(
        self, obj: Mapping[str, object], key: str, path: str, *, end_of_day: bool
    ) -> time | None:
        value = obj.get(key)
        here = _at(path, key)
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads 08:00 unquoted as the sexagesimal number 480 (minutes).
            value = f"{value // 60:02d}:{value % 60:02d}"
        if not isinstance(value, str):
            self.problem(here, 'must be a time of day like "08:00"')
            return None
        if end_of_day and value in ("24:00", "24:00:00"):
            return time(0)
        try:
            return time.fromisoformat(value)
        except ValueError:
            self.problem(here, f'{value[:20]!r} is not a time of day like "08:00"')
            return None

    def window(
        self, obj: Mapping[str, object], path: str
    ) -> tuple[datetime | None, datetime | None]:
        valid_from = self.instant(obj, "valid_from", path)
        valid_to = self.instant(obj, "valid_to", path)
        if valid_from is not None and valid_to is not None and valid_to <= valid_from:
            self.problem(_at(path, "valid_to"), "must be after valid_from")
        return valid_from, valid_to


__all__ = ["MAX_CODE_LENGTH", "FieldReader"]
