"""Destinations: named sets of E.164 number prefixes, matched by longest prefix.

A destination ("Netherlands Mobile") is the set of number prefixes ("316",
"3197") that reach it. A dialled number is first normalised to E.164 digits
(``+`` and the international access code removed, a national number rewritten
with the home country code), then matched against the prefixes: the longest
prefix that is a prefix of the number wins.

Matching is a walk from the longest possible prefix down to the shortest,
each step one dict lookup of a string slice. E.164 numbers have at most 15
digits, so a match costs at most 16 lookups whatever the size of the table;
with 50,000+ prefixes this beats a trie in CPython because dict lookups run in
C. The engine uses the same walk over its compiled per-plan prefix maps.

Operators load prefix tables as CSV (prefix, destination name); the loader
validates every row and reports problems by line number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from services.common.errors import FieldViolation

from .errors import InvalidCatalog, InvalidNumber

# ITU-T E.164: a full international number has at most 15 digits.
MAX_NUMBER_DIGITS: Final = 15
MAX_DESTINATION_NAME: Final = 100
# A broken file should say what is wrong without producing a million violations.
MAX_REPORTED_ROWS: Final = 100

_SEPARATORS: Final = str.maketrans("", "", " -.()/\t")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NumberingPlan:
    """How dialled numbers are written where the operator's switches are.

    ``country_code`` is the home country ("31" for the Netherlands); when empty,
    numbers that start with the national prefix are not rewritten and are
    matched as written.
    """

    country_code: str = ""
    international_prefix: str = "00"
    national_prefix: str = "0"


DEFAULT_NUMBERING: Final = NumberingPlan()


def normalise_number(raw: str, numbering: NumberingPlan = DEFAULT_NUMBERING) -> str:
    """E.164 digits (no '+') of a dialled number, or ``InvalidNumber``.

    ``+31 6 1234-5678`` and ``0031612345678`` give ``31612345678``; with country
    code 31, ``0612345678`` gives ``31612345678`` too. Digits only: a number with
    letters (``anonymous``) or more than 15 digits is refused.
    """
    if raw.isdigit() and raw.isascii():
        number = raw
    elif raw[:1] == "+" and raw.isascii() and raw[1:].isdigit():
        return _checked_length(raw[1:], raw)  # the usual "+E.164" form, quickly
    else:
        number = raw.translate(_SEPARATORS)
        if number.startswith("+"):
            number = number[1:]
            if not (number.isascii() and number.isdigit()):
                raise InvalidNumber(raw, "is not a phone number (digits after '+')")
            return _checked_length(number, raw)
        if not (number.isascii() and number.isdigit()):
            raise InvalidNumber(raw, "is not a phone number (digits only)")
    international = numbering.international_prefix
    if international and number.startswith(international):
        return _checked_length(number[len(international) :], raw)
    national = numbering.national_prefix
    if numbering.country_code and national and number.startswith(national):
        number = numbering.country_code + number[len(national) :]
    if len(number) <= MAX_NUMBER_DIGITS:
        return number  # not empty: it is made of digits
    return _checked_length(number, raw)


def _checked_length(number: str, raw: str) -> str:
    if not number:
        raise InvalidNumber(raw, "has no digits")
    if len(number) > MAX_NUMBER_DIGITS:
        raise InvalidNumber(raw, f"has more than {MAX_NUMBER_DIGITS} digits")
    return number


def longest_prefix(
    table: Mapping[str, T], number: str, longest: int, shortest: int = 0
) -> tuple[str, T] | None:
    """The entry of ``table`` under the longest prefix of ``number``, trying lengths
    ``longest`` down to ``shortest``; the empty prefix (length 0) matches any number."""
    for length in range(min(len(number), longest), shortest - 1, -1):
        prefix = number[:length]
        hit = table.get(prefix)
        if hit is not None:
            return prefix, hit
    return None


class DestinationTable:
    """Every destination of a catalog with its prefixes; a prefix belongs to one destination."""

    __slots__ = ("_by_prefix", "_prefixes_of", "longest")

    def __init__(self, destination_of_prefix: Mapping[str, str]) -> None:
        problems: list[FieldViolation] = []
        by_prefix: dict[str, str] = {}
        prefixes_of: dict[str, list[str]] = {}
        for prefix, name in destination_of_prefix.items():
            why = prefix_problem(prefix) or name_problem(name)
            if why:
                problems.append(FieldViolation(f"destinations[{prefix!r}]", why))
                continue
            by_prefix[prefix] = name
            prefixes_of.setdefault(name, []).append(prefix)
        if problems:
            raise InvalidCatalog(problems)
        self._by_prefix = by_prefix
        self._prefixes_of = {name: tuple(sorted(p)) for name, p in prefixes_of.items()}
        self.longest = max((len(p) for p in by_prefix), default=0)

    @classmethod
    def from_sets(cls, prefixes_by_destination: Mapping[str, Iterable[str]]) -> DestinationTable:
        """Build from ``{destination name: prefixes}``; a prefix listed twice is refused."""
        by_prefix: dict[str, str] = {}
        problems: list[FieldViolation] = []
        for name, prefixes in prefixes_by_destination.items():
            for prefix in prefixes:
                owner = by_prefix.setdefault(prefix, name)
                if owner != name:
                    problems.append(
                        FieldViolation(
                            f"destinations[{name!r}].prefixes",
                            f"prefix {prefix} already belongs to {owner!r}",
                        )
                    )
        if problems:
            raise InvalidCatalog(problems)
        return cls(by_prefix)

    @classmethod
    def empty(cls) -> DestinationTable:
        return cls({})

    def match(self, number: str) -> tuple[str, str] | None:
        """(matched prefix, destination name) for an E.164 number, or None."""
        return longest_prefix(self._by_prefix, number, self.longest, 1)

    def destination_of(self, prefix: str) -> str | None:
        return self._by_prefix.get(prefix)

    def prefixes_of(self, destination: str) -> tuple[str, ...]:
        return self._prefixes_of.get(destination, ())

    def names(self) -> frozenset[str]:
        return frozenset(self._prefixes_of)

    def items(self) -> Iterable[tuple[str, str]]:
        """(prefix, destination name) pairs."""
        return self._by_prefix.items()

    def __contains__(self, destination: object) -> bool:
        return destination in self._prefixes_of

    def __len__(self) -> int:
        return len(self._by_prefix)


def prefix_problem(prefix: str) -> str | None:
    if not (prefix.isascii() and prefix.isdigit()):
        return f"prefix {prefix[:20]!r} must be digits only"
    if len(prefix) > MAX_NUMBER_DIGITS:
        return f"prefix {prefix[:20]!r} is longer than {MAX_NUMBER_DIGITS} digits"
    return None


def name_problem(name: str) -> str | None:
    if not name.strip():
        return "destination name is empty"
    if len(name) > MAX_DESTINATION_NAME:
        return f"destination name is longer than {MAX_DESTINATION_NAME} characters"
    return None


def load_destination_rows(
    rows: Iterable[Sequence[str]], *, has_header: bool = False, first_line: int = 1
) -> DestinationTable:
    """A destination table from CSV rows ``(prefix, destination name)``.

    ``rows`` is what ``csv.reader`` yields; ``first_line`` is the file line of
    the first row, so problems name the line an operator must fix
    (``line[12].prefix``). A leading ``+`` and spaces in a prefix are accepted;
    a prefix given twice for different destinations is an error, twice for the
    same destination is harmless. Every problem is collected (up to a cap) and
    raised together as ``InvalidCatalog``.
    """
    by_prefix: dict[str, str] = {}
    problems: list[FieldViolation] = []
    skipped = 0
    line = first_line - 1
    for row in rows:
        line += 1
        if has_header and line == first_line:
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if len(row) < 2:
            skipped += _report(problems, f"line[{line}]", "expected two columns: prefix, name")
            continue
        prefix = row[0].strip().removeprefix("+").replace(" ", "")
        name = row[1].strip()
        why = prefix_problem(prefix)
        if why:
            skipped += _report(problems, f"line[{line}].prefix", why)
            continue
        why = name_problem(name)
        if why:
            skipped += _report(problems, f"line[{line}].name", why)
            continue
        owner = by_prefix.setdefault(prefix, name)
        if owner != name:
            skipped += _report(
                problems, f"line[{line}].prefix", f"prefix {prefix} already belongs to {owner!r}"
            )
    if problems:
        if skipped:
            problems.append(FieldViolation("line", f"{skipped} more problems not listed"))
        raise InvalidCatalog(problems)
    if not by_prefix:
        # A header-only or blank file would silently replace the prefix table with nothing.
        raise InvalidCatalog(
            [
                FieldViolation(
                    "rows",
                    "the file has no prefixes (only a header or blank lines); "
                    "an empty table would replace every prefix in force",
                )
            ]
        )
    return DestinationTable(by_prefix)


def _report(problems: list[FieldViolation], field_name: str, description: str) -> int:
    """Record a problem unless the cap is reached; returns 1 when it was not recorded."""
    if len(problems) < MAX_REPORTED_ROWS:
        problems.append(FieldViolation(field_name, description))
        return 0
    return 1


__all__ = [
    "DEFAULT_NUMBERING",
    "MAX_NUMBER_DIGITS",
    "DestinationTable",
    "NumberingPlan",
    "load_destination_rows",
    "longest_prefix",
    "normalise_number",
]
