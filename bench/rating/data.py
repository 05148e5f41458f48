"""Generated data for the rating import benchmark: a realistic catalog and a CDR file.

* ``prefix_rows``: unique destination prefixes (fixed and mobile ranges of ~230
  country codes), as an operator's prefix CSV.
* ``catalog_document``: one plan with a rate per destination (60/60, 30/6 and 1/1
  increments in turn, connection fees, minimum costs), a catch-all rate, three time
  bands (peak, offpeak, weekend) with a holiday, VAT plus a levy (two exclusive taxes).
* ``write_cdrs``: a CSV in the ``reckon`` layout, streamed to disk (never held in
  memory): accounts in five time zones, March 2026 (both DST changes), 10% zero
  length (unanswered) calls, a few records for unknown accounts (rejects).

Everything is seeded, so two runs rate the same file.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

ZONES = ("Europe/Amsterdam", "Europe/London", "America/New_York", "Asia/Tokyo", "UTC")
PLAN = "voice-intl"
TWO_DIGIT = [
    "20",
    "27",
    "30",
    "31",
    "32",
    "33",
    "34",
    "36",
    "39",
    "40",
    "41",
    "43",
    "44",
    "45",
    "46",
    "47",
    "48",
    "49",
    "51",
    "52",
    "53",
    "54",
    "55",
    "56",
    "57",
    "58",
    "60",
    "61",
    "62",
    "63",
    "64",
    "65",
    "66",
    "81",
    "82",
    "84",
    "86",
    "90",
    "91",
    "92",
    "93",
    "94",
    "95",
    "98",
]
THREE_DIGIT_RANGES = (
    (211, 299),
    (350, 389),
    (420, 429),
    (500, 509),
    (590, 599),
    (670, 692),
    (850, 889),
    (960, 998),
)


def country_codes() -> list[str]:
    codes = ["1", "7", *TWO_DIGIT]
    for low, high in THREE_DIGIT_RANGES:
        codes += [str(c) for c in range(low, high + 1) if str(c)[:2] not in TWO_DIGIT]
    return codes


def prefix_rows(count: int, rng: random.Random) -> list[tuple[str, str]]:
    codes = country_codes()
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    while len(rows) < count:
        code = rng.choice(codes)
        area = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 5)))
        prefix = code + area
        if prefix in seen or len(prefix) > 10:
            continue
        seen.add(prefix)
        kind = "Mobile" if area[0] in "67" else "Fixed"
        rows.append((prefix, f"{code} {kind} {area[0]}"))
    return rows


def _minute_price(rng: random.Random) -> str:
    # Multiples of 0.0006 a minute are exact per 1 s, 6 s, 30 s and 60 s increment.
    return str(Decimal(rng.randint(10, 1000)) * Decimal("0.0006"))


def catalog_document(destinations: Sequence[str], rng: random.Random) -> dict[str, Any]:
    rates: list[dict[str, Any]] = []
    increments = ((60, 60), (30, 6), (1, 1))
    for index, name in enumerate(sorted(destinations)):
        first, step = increments[index % 3]
        rate: dict[str, Any] = {
            "id": f"r{index}",
            "service": "voice",
            "destination": name,
            "first_increment": first,
            "next_increment": step,
            "per_minute": {
                "peak": _minute_price(rng),
                "offpeak": _minute_price(rng),
                "weekend": _minute_price(rng),
            },
            "precision": 4,
            "rounding": "up",
        }
        if index % 4 == 0:
            rate["connection_fee"] = "0.0150"
        if index % 5 == 0:
            rate["min_cost"] = "0.0100"
        rates.append(rate)
    rates.append(
        {
            "id": "world",
            "service": "voice",
            "first_increment": 60,
            "next_increment": 60,
            "per_minute": {"*": "0.90"},
        }
    )
    return {
        "products": [{"code": "voice", "unit": "second"}],
        "calendars": [
            {"code": "holidays", "holidays": [{"date": "2026-03-17", "band": "weekend"}]}
        ],
        "time_bands": [
            {
                "code": "week",
                "default_band": "offpeak",
                "calendar": "holidays",
                "bands": [
                    {"name": "peak", "days": ["weekdays"], "from": "08:00", "to": "18:00"},
                    {"name": "weekend", "days": ["weekend"], "from": "00:00", "to": "24:00"},
                ],
            }
        ],
        "tax_regions": [
            {
                "code": "NL",
                "taxes": [
                    {"code": "VAT", "name": "BTW", "percent": "21"},
                    {"code": "LEVY", "name": "Telecom levy", "percent": "1.5"},
                ],
            }
        ],
        "plans": [
            {
                "code": PLAN,
                "currency": "EUR",
                "versions": [
                    {
                        "version": 1,
                        "valid_from": "2025-01-01",
                        "time_bands": "week",
                        "rates": rates,
                    },
                ],
            }
        ],
    }


def write_catalog(folder: Path, prefix_count: int, seed: int) -> tuple[Path, Path]:
    """The prefix CSV and the catalog document (JSON, valid YAML too)."""
    rng = random.Random(seed)
    rows = prefix_rows(prefix_count, rng)
    prefixes = folder / "prefixes.csv"
    with prefixes.open("w", encoding="utf-8") as out:
        out.write("prefix,destination\n")
        out.writelines(f"{prefix},{name}\n" for prefix, name in rows)
    document = folder / "catalog.json"
    destinations = sorted({name for _, name in rows})
    document.write_text(json.dumps(catalog_document(destinations, rng)), encoding="utf-8")
    return prefixes, document


def account_ids(count: int) -> list[str]:
    return [f"acc-{n:06d}" for n in range(count)]


def write_cdrs(
    path: Path,
    count: int,
    prefixes: Sequence[str],
    accounts: Sequence[str],
    seed: int,
    *,
    id_prefix: str = "cdr",
    unknown_every: int = 2000,
) -> None:
    """``count`` CDRs in the reckon CSV layout; one in ``unknown_every`` has an unknown account."""
    rng = random.Random(seed)
    month = 31 * 86_400
    base = 1_772_323_200  # 2026-03-01T00:00:00Z
    digits = "0123456789"
    with path.open("w", encoding="utf-8", buffering=1 << 20) as out:
        out.write("record_id,account_id,service,destination,event_time,quantity\n")
        lines: list[str] = []
        for index in range(count):
            prefix = rng.choice(prefixes)
            number = prefix + "".join(rng.choices(digits, k=max(11 - len(prefix), 3)))
            if index % 3 == 0:
                number = "+" + number
            seconds = 0 if rng.random() < 0.10 else min(int(rng.expovariate(1 / 150)) + 1, 7200)
            account = "acc-unknown" if index % unknown_every == 7 else rng.choice(accounts)
            start = base + rng.randrange(month)
            day, rest = divmod(start - base, 86_400)
            hour, rest = divmod(rest, 3600)
            minute, second = divmod(rest, 60)
            lines.append(
                f"{id_prefix}-{index},{account},voice,{number},"
                f"2026-03-{day + 1:02d}T{hour:02d}:{minute:02d}:{second:02d}Z,{seconds}\n"
            )
            if len(lines) >= 10_000:
                out.writelines(lines)
                lines = []
        out.writelines(lines)
