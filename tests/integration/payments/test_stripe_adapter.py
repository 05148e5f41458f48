"""The Stripe adapter against localstripe, a Stripe-compatible server run as its own process.

localstripe is GPL-3: it lives in ``.venv-localstripe`` (``tools/ensure_services.sh``
installs it) or wherever ``LOCALSTRIPE`` points, and is only ever started, never imported.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from services.common.money import Money
from services.payments.adapters.stripe_provider import StripeProvider
from services.payments.domain.provider import CardDetails, ProviderStatus

ROOT = Path(__file__).resolve().parents[3]
TODAY = date(2026, 3, 1)


def _localstripe_binary() -> str:
    configured = os.environ.get("LOCALSTRIPE")
    candidate = Path(configured) if configured else ROOT / ".venv-localstripe/bin/localstripe"
    if not candidate.exists():
        pytest.fail(f"localstripe not found at {candidate}: run tools/ensure_services.sh")
    return str(candidate)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [_localstripe_binary(), "--port", str(port), "--from-scratch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("localstripe did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def stripe_provider(localstripe: str) -> StripeProvider:
    return StripeProvider("sk_test_reckon", api_base=localstripe)


def test_purchase_succeeds_and_is_found_again_by_its_key(stripe_provider: StripeProvider) -> None:
    card = stripe_provider.tokenise_card(
        CardDetails("4242424242424242", 12, 2030, "123"), today=TODAY
    )
    assert (card.brand, card.last4) == ("visa", "4242")
    assert "4242424242424242" not in card.token
    result = stripe_provider.charge(
        token=card.token, amount=Money.of("12.34", "EUR"), idempotency_key="pay-1"
    )
    assert result.status is ProviderStatus.SUCCEEDED
    assert result.provider_reference.startswith("ch_")
    found = stripe_provider.lookup("pay-1")
    assert (found.status, found.provider_reference) == (
        ProviderStatus.SUCCEEDED,
        result.provider_reference,
    )


def test_declined_card_fails_with_a_reason(stripe_provider: StripeProvider) -> None:
    card = stripe_provider.tokenise_card(
        CardDetails("4000000000000341", 12, 2030, "123"), today=TODAY
    )
    result = stripe_provider.charge(
        token=card.token, amount=Money.of("5.00", "EUR"), idempotency_key="pay-2"
    )
    assert result.status is ProviderStatus.FAILED
    assert result.decline_code


def test_refund_full_and_partial(stripe_provider: StripeProvider) -> None:
    card = stripe_provider.tokenise_card(
        CardDetails("4242424242424242", 12, 2030, "123"), today=TODAY
    )
    charged = stripe_provider.charge(
        token=card.token, amount=Money.of("20.00", "EUR"), idempotency_key="pay-3"
    )
    part = stripe_provider.refund(
        provider_reference=charged.provider_reference,
        amount=Money.of("5.00", "EUR"),
        idempotency_key="ref-1",
    )
    rest = stripe_provider.refund(
        provider_reference=charged.provider_reference,
        amount=Money.of("15.00", "EUR"),
        idempotency_key="ref-2",
    )
    assert part.status is ProviderStatus.SUCCEEDED
    assert rest.status is ProviderStatus.SUCCEEDED
    assert part.provider_reference.startswith("re_")


def test_a_key_never_sent_is_not_found(stripe_provider: StripeProvider) -> None:
    assert stripe_provider.lookup("never-sent").status is ProviderStatus.NOT_FOUND
