"""Checks of recipients and webhook targets, each failure naming what is wrong."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

# Deliberately plain: one @, a local part without spaces, a dotted domain of LDH labels.
# The SMTP server has the last word; this catches what can never be delivered.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
# E.164: a plus, a country code that does not start with 0, up to 15 digits in all.
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def email_problem(address: str) -> str | None:
    if not address:
        return "no e-mail address"
    if not _EMAIL.match(address) or ".." in address:
        return f"{address!r} is not an e-mail address (name@domain.tld)"
    return None


def phone_problem(number: str) -> str | None:
    if not number:
        return "no phone number"
    if not _E164.match(number):
        return f"{number!r} is not an E.164 phone number (+ country code and number)"
    return None


def webhook_url_problem(url: str, own_ports: frozenset[int] = frozenset()) -> str | None:
    """Why ``url`` cannot be a webhook target, or None.

    Only http(s); a target on a loopback or unspecified address at one of the suite's
    own service ports is refused, so a webhook cannot be aimed at Reckon itself (the
    resolver adapter checks names that resolve there, ``resolved_target_problem``).
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"scheme must be http or https, not {parts.scheme or 'none'!r}"
    if not parts.hostname:
        return "the URL has no host"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "the URL's port is not a number 0-65535"
    if parts.username or parts.password:
        return "credentials in the URL are not allowed; the signature authenticates"
    return resolved_target_problem([parts.hostname], port, own_ports)


def resolved_target_problem(
    addresses: list[str], port: int, own_ports: frozenset[int]
) -> str | None:
    """A target whose address is this machine's and whose port is a suite service's."""
    if port not in own_ports:
        return None
    for address in addresses:
        host = address.strip("[]")
        if host == "localhost":
            return f"the target is the suite's own service port {port}"
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue
        if ip.is_loopback or ip.is_unspecified:
            return f"the target is the suite's own service port {port}"
    return None


def masked(channel: str, recipient: str) -> str:
    """A recipient as other services may show it: enough to recognise, not to reuse.

    ``ada.lovelace@example.com`` -> ``a***@example.com``; ``+31612345678`` ->
    ``+316******78``; a webhook endpoint id is not personal and stays as it is.
    """
    if channel == "EMAIL":
        local, at, domain = recipient.rpartition("@")
        return f"{local[:1]}***@{domain}" if at and local else "***"
    if channel == "SMS":
        if len(recipient) <= 6:
            return "***"
        return recipient[:4] + "*" * (len(recipient) - 6) + recipient[-2:]
    return recipient
