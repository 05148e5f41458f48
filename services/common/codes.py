"""Codes shared between services, with the one rule each follows.

External references and service identifiers (issue 9 item 12): an operator's
own reference for a customer or an account is written ``ext:<reference>``
wherever an id is (requests, catalog price packages, CDR files); a
subscription's service identifiers (an E.164 MSISDN, a SIP URI, a conference
PIN, a bridge account code) are kept as normalised keys such as
``msisdn:+31612345678``, the same in accounts (unique) and rating (to find the
account a CDR's number belongs to).

A plan code is written in rating's catalog and subscribed to in accounts: both
check it with ``plan_code_problem``, so ``reckon catalog check`` (offline) refuses
exactly the codes accounts would refuse to subscribe ("Conference Pro!",
"HID-CONF"), rather than a catalog applying plans nobody can buy.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from enum import StrEnum
from typing import Final

# Plan and add-on codes of the product catalog: lower case, URL- and file-name-safe.
PLAN_CODE: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
PLAN_CODE_RULE: Final = (
    "must be 1-64 lower-case letters, digits, '_', '.' or '-', starting with a letter or digit"
)


def plan_code_problem(code: str) -> str | None:
    """Why ``code`` cannot be a plan code, or None when it can."""
    if not code:
        return "is required"
    if not PLAN_CODE.match(code):
        return PLAN_CODE_RULE
    return None


EXTERNAL_PREFIX: Final = "ext:"
# An operator's reference: what CRMs and billing systems print, without spaces.
EXTERNAL_REF: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@#+-]{0,63}$")
EXTERNAL_REF_RULE: Final = (
    "must be 1-64 letters, digits or . _ : / @ # + -, starting with a letter or digit"
)


def external_ref_problem(ref: str) -> str | None:
    """Why ``ref`` cannot be an external reference, or None when it can."""
    return None if EXTERNAL_REF.match(ref) else EXTERNAL_REF_RULE


def external_key(ref: str) -> str:
    """How an external reference is written where an id is: ``ext:CRM-42``."""
    return EXTERNAL_PREFIX + ref


class ServiceIdKind(StrEnum):
    MSISDN = "msisdn"  # an E.164 number
    SIP_URI = "sip"
    CONFERENCE_PIN = "pin"
    ACCOUNT_CODE = "code"  # a bridge's or PBX's account code (Asterisk accountcode)


_DIGITS: Final = re.compile(r"^[0-9]+$")
_SIP: Final = re.compile(r"^sips?:[^\s@]+@[^\s@]+$", re.IGNORECASE)
_ACCOUNT_CODE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def normalise_service_id(kind: ServiceIdKind, value: str) -> str:
    """The key of a service identifier (``msisdn:+31612345678``); ``ValueError`` saying
    why when ``value`` is not one of ``kind``."""
    text = value.strip()
    if kind is ServiceIdKind.MSISDN:
        digits = text.replace(" ", "").replace("-", "")
        digits = "+" + digits[2:] if digits.startswith("00") else digits
        if not digits.startswith("+") or not _DIGITS.match(digits[1:]):
            raise ValueError("must be an E.164 number such as +31612345678")
        if not 8 <= len(digits) - 1 <= 15 or digits[1] == "0":
            raise ValueError("must be an E.164 number: + then 8-15 digits, no leading 0")
        return f"{kind.value}:{digits}"
    if kind is ServiceIdKind.SIP_URI:
        if len(text) > 200 or not _SIP.match(text):
            raise ValueError("must be a SIP URI such as sip:alice@example.com")
        return text.lower()  # the URI is its own key: sip:alice@example.com
    if kind is ServiceIdKind.CONFERENCE_PIN:
        if not _DIGITS.match(text) or not 4 <= len(text) <= 12:
            raise ValueError("must be 4-12 digits")
        return f"{kind.value}:{text}"
    if not _ACCOUNT_CODE.match(text):
        raise ValueError("must be 1-64 letters, digits, '.', '_' or '-'")
    return f"{kind.value}:{text}"


def service_id_candidates(
    value: str,
    kinds: Collection[ServiceIdKind] = tuple(ServiceIdKind),
    *,
    external: bool = True,
) -> list[str]:
    """Keys a CDR's subscriber field (or a credit-control request's Subscription-Id)
    may stand for, most specific first: an external reference (``ext:...``, unless
    ``external`` is False), a number (with or without its ``+``), a SIP URI, a PIN, an
    account code; only of ``kinds`` when given (a Diameter Subscription-Id-Type says
    which). Rating and charging both find accounts by these keys."""
    text = value.strip()
    if text.startswith(EXTERNAL_PREFIX):
        return [text] if external else []
    found: list[str] = []
    if (
        ServiceIdKind.MSISDN in kinds
        and _DIGITS.match(text)
        and 8 <= len(text) <= 15
        and text[0] != "0"
    ):
        found.append(f"{ServiceIdKind.MSISDN.value}:+{text}")  # switches often drop the +
    for kind in kinds:
        try:
            found.append(normalise_service_id(kind, text))
        except ValueError:
            continue
    return found


__all__ = [
    "EXTERNAL_PREFIX",
    "PLAN_CODE",
    "PLAN_CODE_RULE",
    "ServiceIdKind",
    "external_key",
    "external_ref_problem",
    "normalise_service_id",
    "plan_code_problem",
    "service_id_candidates",
]
