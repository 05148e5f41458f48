"""Bank references: IBANs (validated with ``schwifty``, shown masked) and the ISO 11649
structured creditor reference (``RF`` + check digits + up to 21 characters) that a
customer quotes on a bank transfer, so the statement line finds its invoice."""

from __future__ import annotations

import re

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

_RF_BODY = re.compile(r"^[A-Z0-9]{1,21}$")


class BadReference(ValueError):
    """An IBAN or creditor reference that fails its check digits or format."""


def normalise_iban(text: str) -> str:
    """The IBAN in electronic form (no spaces, upper case); BadReference if invalid."""
    try:
        return str(IBAN(text.replace(" ", "").upper()).compact)
    except (SchwiftyException, ValueError) as exc:
        raise BadReference(f"not a valid IBAN ({exc})") from None


def mask_iban(iban: str) -> str:
    """Country code, check digits and last four: ``DE89 **** 3000``-style, no spaces."""
    return f"{iban[:4]}{'*' * (len(iban) - 8)}{iban[-4:]}"


def _mod97(text: str) -> int:
    digits = "".join(str(int(ch, 36)) for ch in text)
    return int(digits) % 97


def creditor_reference(body: str) -> str:
    """The ISO 11649 reference ``RFkk<body>`` for an alphanumeric body of 1-21 characters."""
    body = body.upper()
    if not _RF_BODY.match(body):
        raise BadReference("a creditor reference body is 1-21 letters or digits")
    check = 98 - _mod97(body + "RF00")
    return f"RF{check:02d}{body}"


def is_creditor_reference(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if not re.match(r"^RF\d{2}[A-Z0-9]{1,21}$", compact):
        return False
    return _mod97(compact[4:] + compact[:4]) == 1


def normalise_reference(text: str) -> str:
    return text.replace(" ", "").upper()


# 13 to 19 digits, single spaces or dashes between them allowed, starting as card
# numbers do (2-6: Mastercard, Amex/Diners, Visa, Mastercard, Discover).
_CARD_NUMBER_LIKE = re.compile(r"(?<![0-9])[2-6](?:[ -]?[0-9]){12,18}(?![0-9])")


def luhn_valid(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def redact_card_numbers(text: str) -> str:
    """``text`` with anything that is a card number (Luhn-valid) cut to its last four.

    Free text from outside (a payer's remittance line on a bank statement) may hold a
    card number; it is never stored, logged or echoed whole.
    """

    def cut(found: re.Match[str]) -> str:
        digits = re.sub(r"[ -]", "", found.group(0))
        return f"****{digits[-4:]}" if luhn_valid(digits) else found.group(0)

    return _CARD_NUMBER_LIKE.sub(cut, text)
