"""Shape checks of request fields, each recording a violation against its field path.

Every check takes the ``Violations`` collector and the path to report, and
returns the (possibly normalised) value, so a translator checks a whole request
and reports every bad field at once. These are checks of *form* (an e-mail has
an @ and a domain, a time zone is in the tz database); rules that need stored
data (does the customer exist, may this account change) belong to the handlers.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from google.protobuf.message import Message

from services.accounts.domain.billing_cycle import (
    MAX_BILL_CYCLE_DAY,
    MIN_BILL_CYCLE_DAY,
    is_known_time_zone,
)
from services.accounts.domain.model import REFERRAL_CODE
from services.accounts.entrypoints.identities import is_external_id
from services.common.codes import plan_code_problem
from services.common.errors import Violations
from services.common.money import is_known_currency

_ID_BODY: Final = "[0-9abcdefghjkmnpqrstvwxyz]{26}"  # services.common.ids alphabet
RESOURCE_ID: Final = {
    prefix: re.compile(rf"^{prefix}_{_ID_BODY}$") for prefix in ("cus", "acc", "sub")
}
# Local part as RFC 5322 "dot-atom" characters; a domain of at least two labels.
_EMAIL: Final = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_E164: Final = re.compile(r"^\+[1-9][0-9]{1,14}$")
# BCP-47 shape: a 2-3 letter language, then subtags of 1-8 letters/digits (script,
# region, variants); not checked against the IANA subtag registry.
_LANGUAGE: Final = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")
OPAQUE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# ISO 3166-1 alpha-2 country, optionally an ISO 3166-2 subdivision (NL, US-CA, GB-SCT).
_TAX_REGION: Final = re.compile(r"^[A-Z]{2}(?:-[A-Z0-9]{1,3})?$")
_PRINTABLE_ASCII: Final = re.compile(r"^[\x21-\x7e]+$")

MAX_NAME: Final = 200
MAX_EMAIL: Final = 254
MAX_REASON: Final = 500
MAX_REQUEST_ID: Final = 128
MAX_PAYMENT_TERMS_DAYS: Final = 365
MAX_ADD_ON_QUANTITY: Final = 10_000


def text(
    violations: Violations, value: str, path: str, *, max_length: int, required: bool = False
) -> str:
    """Free text (names, reasons): no control characters, bounded length."""
    if not value:
        if required:
            violations.add(path, "is required")
        return value
    if value.strip() != value or not value.strip():
        violations.add(path, "must not start or end with white space")
    elif len(value) > max_length:
        violations.add(path, f"must be at most {max_length} characters")
    elif any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in value):
        violations.add(path, "must not contain control characters")
    return value


def email(violations: Violations, value: str, path: str) -> str:
    if not value:
        violations.add(path, "is required")
    elif len(value) > MAX_EMAIL or not _EMAIL.match(value):
        violations.add(path, "must be an e-mail address such as name@example.com")
    return value


def phone_number(violations: Violations, value: str, path: str) -> str:
    if value and not _E164.match(value):
        violations.add(path, "must be in E.164 form: + then up to 15 digits, e.g. +31201234567")
    return value


# A VAT identifier: a country prefix (ISO 3166, EL for Greece, XI for Northern Ireland),
# then 2 to 13 letters or digits (the longest national format).
_VAT_ID = re.compile(r"^[A-Z]{2}[0-9A-Z]{2,13}$")


def vat_id(violations: Violations, value: str, path: str) -> str:
    if value and not _VAT_ID.match(value):
        violations.add(
            path,
            "must be a VAT identifier: country prefix and 2-13 letters/digits, e.g. BE0477472701",
        )
    return value


def language_code(violations: Violations, value: str, path: str) -> str:
    if value and (len(value) > 35 or not _LANGUAGE.match(value)):
        violations.add(path, "must be a BCP-47 language tag such as en, nl-NL or zh-Hant-TW")
    return value


def opaque_id(violations: Violations, value: str, path: str) -> str:
    """Reseller and group ids: identifiers of other systems, so only their form is known."""
    if value and not OPAQUE_ID.match(value):
        violations.add(
            path, "must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return value


def resource_id(
    violations: Violations, value: str, path: str, prefix: str, *, required: bool = True
) -> str:
    if not value:
        if required:
            violations.add(path, "is required")
    elif not RESOURCE_ID[prefix].match(value) and not (
        prefix in _EXTERNAL_KINDS and is_external_id(value)
    ):
        allowed = " or ext: and an external reference" if prefix in _EXTERNAL_KINDS else ""
        violations.add(
            path, f"must be an id of the form {prefix}_ followed by 26 characters{allowed}"
        )
    return value


# Customers and accounts may be named by their external reference (issue 9 item 12).
_EXTERNAL_KINDS: Final = frozenset({"cus", "acc"})


def time_zone(violations: Violations, value: str, path: str) -> str:
    if not value:
        violations.add(path, "is required (an IANA time zone such as Europe/Amsterdam)")
    elif len(value) > 64 or not is_known_time_zone(value):
        violations.add(path, "must be an IANA time zone such as Europe/Amsterdam or UTC")
    return value


def currency_code(violations: Violations, value: str, path: str) -> str:
    if not value:
        violations.add(path, "is required (an ISO 4217 code such as EUR)")
    elif not is_known_currency(value):
        violations.add(path, "must be an ISO 4217 currency code such as EUR")
    return value


def bill_cycle_day(violations: Violations, value: int, path: str) -> int:
    violations.check(
        MIN_BILL_CYCLE_DAY <= value <= MAX_BILL_CYCLE_DAY,
        path,
        f"must be between {MIN_BILL_CYCLE_DAY} and {MAX_BILL_CYCLE_DAY}",
    )
    return value


def payment_terms_days(violations: Violations, value: int, path: str) -> int:
    violations.check(
        0 <= value <= MAX_PAYMENT_TERMS_DAYS,
        path,
        f"must be between 0 and {MAX_PAYMENT_TERMS_DAYS}",
    )
    return value


def tax_region(violations: Violations, value: str, path: str) -> str:
    if value and not _TAX_REGION.match(value):
        violations.add(path, "must be an ISO 3166 code such as NL or US-CA")
    return value


def plan_code(violations: Violations, value: str, path: str) -> str:
    problem = plan_code_problem(value)
    if problem:
        violations.add(path, problem)
    return value


def referral_code(violations: Violations, value: str, path: str) -> str:
    """Referral codes are compared upper-case: people type them in any case."""
    normalised = value.upper()
    if value and not REFERRAL_CODE.match(normalised):
        violations.add(path, "must be a referral code of 8 letters and digits")
    return normalised


def reason(violations: Violations, value: str, path: str = "reason") -> str:
    return text(violations, value, path, max_length=MAX_REASON, required=True)


def request_id(violations: Violations, value: str) -> str:
    if value and (len(value) > MAX_REQUEST_ID or not _PRINTABLE_ASCII.match(value)):
        violations.add(
            "request_id", f"must be 1-{MAX_REQUEST_ID} printable ASCII characters (a UUID is best)"
        )
    return value


def fingerprint(request: Message) -> str:
    """SHA-256 of the request serialised deterministically, without its request_id."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("request_id")  # type: ignore[arg-type]
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()
