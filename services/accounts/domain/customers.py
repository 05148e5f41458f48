"""Customers: registration, revisions of their details, referral codes.

A customer owns billing accounts (``accounts``); its referral code is read aloud
and typed from flyers, so it avoids look-alike characters. See ``model`` for the
rules of the accounts domain as a whole.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from services.accounts.domain.events import CustomerCreated, CustomerUpdated
from services.common.errors import InvalidArgument

# Referral codes are read aloud and typed from flyers: no 0/O, 1/I/L, U.
REFERRAL_CODE_ALPHABET: Final = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
REFERRAL_CODE_LENGTH: Final = 8
REFERRAL_CODE: Final = re.compile(rf"^[{REFERRAL_CODE_ALPHABET}]{{{REFERRAL_CODE_LENGTH}}}$")
DEFAULT_LANGUAGE: Final = "en"


def new_referral_code() -> str:
    """A random code; 30^8 (6.5e11) values make a collision rare, the table's unique key exact."""
    return "".join(secrets.choice(REFERRAL_CODE_ALPHABET) for _ in range(REFERRAL_CODE_LENGTH))


# -- customers ------------------------------------------------------------------------------

CUSTOMER_MUTABLE_FIELDS: Final = frozenset(
    {"display_name", "email", "phone_number", "language_code", "reseller_id", "group_id", "vat_id"}
)


@dataclass(frozen=True)
class CustomerRevision:
    """New values for the customer fields named in ``fields``; the others are ignored."""

    fields: frozenset[str]
    display_name: str = ""
    email: str = ""
    phone_number: str = ""
    language_code: str = ""
    reseller_id: str = ""
    group_id: str = ""
    vat_id: str = ""


@dataclass(eq=False)
class Customer:
    customer_id: str
    display_name: str
    email: str
    phone_number: str
    language_code: str
    reseller_id: str
    group_id: str
    referral_code: str
    referred_by: str
    referrer_customer_id: str | None
    referrals_count: int
    create_time: datetime
    update_time: datetime
    # The operator's own reference (unique); ``ext:<ref>`` names the customer anywhere.
    external_ref: str | None = None
    # VAT identifier for invoices (reverse charge, intra-community supply), or "".
    vat_id: str = ""

    @classmethod
    def register(
        cls,
        *,
        customer_id: str,
        display_name: str,
        email: str,
        phone_number: str,
        language_code: str,
        reseller_id: str,
        group_id: str,
        referral_code: str,
        referrer: Customer | None,
        now: datetime,
        external_ref: str | None = None,
        vat_id: str = "",
    ) -> tuple[Customer, CustomerCreated]:
        customer = cls(
            customer_id=customer_id,
            display_name=display_name,
            email=email,
            phone_number=phone_number,
            language_code=language_code or DEFAULT_LANGUAGE,
            reseller_id=reseller_id,
            group_id=group_id,
            referral_code=referral_code,
            referred_by=referrer.referral_code if referrer else "",
            referrer_customer_id=referrer.customer_id if referrer else None,
            # Credited asynchronously by the referrals consumer, never here: one
            # aggregate per transaction.
            referrals_count=0,
            create_time=now,
            update_time=now,
            external_ref=external_ref,
            vat_id=vat_id,
        )
        event = CustomerCreated(
            customer_id=customer.customer_id,
            display_name=customer.display_name,
            email=customer.email,
            language_code=customer.language_code,
            reseller_id=customer.reseller_id,
            group_id=customer.group_id,
            referral_code=customer.referral_code,
            referred_by=customer.referred_by,
            referrer_customer_id=customer.referrer_customer_id or "",
            create_time=now,
            external_ref=external_ref or "",
            phone_number=customer.phone_number,
            vat_id=customer.vat_id,
        )
        return customer, event

    def revise(self, revision: CustomerRevision, now: datetime) -> CustomerUpdated | None:
        """Apply the revision; None when it changes nothing (no event, nothing to write)."""
        unknown = revision.fields - CUSTOMER_MUTABLE_FIELDS
        if unknown:
            raise InvalidArgument.field(
                "update_mask", f"cannot change {', '.join(sorted(unknown))}"
            )
        values = {name: getattr(revision, name) for name in revision.fields}
        if "language_code" in values:
            values["language_code"] = values["language_code"] or DEFAULT_LANGUAGE
        changed = tuple(sorted(n for n, v in values.items() if getattr(self, n) != v))
        if not changed:
            return None
        for name in changed:
            setattr(self, name, values[name])
        self.update_time = now
        return CustomerUpdated(
            customer_id=self.customer_id,
            changed_fields=changed,
            display_name=self.display_name,
            email=self.email,
            phone_number=self.phone_number,
            language_code=self.language_code,
            reseller_id=self.reseller_id,
            group_id=self.group_id,
            update_time=now,
            vat_id=self.vat_id,
        )

    def credit_referral(self, now: datetime) -> None:
        self.referrals_count += 1
        self.update_time = now
