"""Column types that keep instants and amounts exact on both SQLite and PostgreSQL.

- ``UtcDateTime``: aware UTC datetimes in and out. SQLite has no time zone type
  and returns naive values; PostgreSQL returns the session's zone. Both come
  back as UTC, and naive datetimes are refused on the way in.
- ``ExactDecimal``: ``NUMERIC(38, 9)`` on PostgreSQL (nine places: the precision of
  ``google.type.Money``). SQLite's NUMERIC affinity would turn decimals into
  binary floats, so there the value is stored as its exact decimal text.

Migrations import these types, so they must stay backwards compatible.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Integer, Numeric, String
from sqlalchemy.types import TypeDecorator, TypeEngine


class UtcDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: instants must carry a time zone")
        value = value.astimezone(UTC)
        # SQLite compares the stored text: store every instant in the same (UTC) form.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    impl = Numeric(38, 9)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(48))
        return dialect.type_descriptor(Numeric(38, 9, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"expected Decimal, got {type(value).__name__}")
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        # Drop the trailing zeros NUMERIC(38, 9) pads with, so 10 comes back as 10, not
        # 10.000000000. Done on the text: normalize() would round to the context's 28
        # digits, and 38 fit in the column.
        text = format(value if isinstance(value, Decimal) else Decimal(value), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return Decimal(text)


def big_serial() -> BigInteger:
    """A 64-bit auto-incrementing key: BIGINT on PostgreSQL, INTEGER on SQLite, which
    only autoincrements an INTEGER PRIMARY KEY."""
    return BigInteger().with_variant(Integer, "sqlite")  # type: ignore[return-value]
