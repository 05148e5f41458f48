"""The sandbox PSP behaves like a real one: every test card, tokens, idempotency, callbacks."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.common.clock import ManualClock
from services.common.money import Money
from services.payments.adapters.sandbox import NEVER_ANSWERS, TEST_CARDS, SandboxProvider
from services.payments.domain.provider import (
    CardDetails,
    ChargeRequest,
    ProviderError,
    ProviderStatus,
    ProviderTimeout,
    charge_many,
    is_hard_decline,
)

TODAY = date(2026, 3, 1)
EUR10 = Money.of("10.00", "EUR")

EXPECTED = {
    "4242424242424242": (ProviderStatus.SUCCEEDED, ""),
    "4000000000000002": (ProviderStatus.FAILED, "generic_decline"),
    "4000000000009995": (ProviderStatus.FAILED, "insufficient_funds"),
    "4000000000009987": (ProviderStatus.FAILED, "lost_card"),
    "4000000000009979": (ProviderStatus.FAILED, "stolen_card"),
    "4000000000000069": (ProviderStatus.FAILED, "expired_card"),
    "4000000000000119": (ProviderStatus.FAILED, "processing_error"),
    "4000000000000341": (ProviderStatus.FAILED, "generic_decline"),
}


@pytest.fixture
def sandbox() -> SandboxProvider:
    return SandboxProvider(ManualClock(datetime(2026, 3, 1, tzinfo=UTC)))


def card(number: str) -> CardDetails:
    return CardDetails(number, 12, 2030, "123")


def test_every_listed_test_card_is_covered() -> None:
    assert set(EXPECTED) == set(TEST_CARDS)


@pytest.mark.parametrize("number", sorted(EXPECTED))
def test_each_test_card_attaches_then_charges_as_documented(
    sandbox: SandboxProvider, number: str
) -> None:
    token = sandbox.tokenise_card(card(number), today=TODAY)
    assert token.last4 == number[-4:]
    assert token.brand == "visa"
    assert number not in token.token
    result = sandbox.charge(token=token.token, amount=EUR10, idempotency_key=f"k-{number}")
    assert (result.status, result.decline_code) == EXPECTED[number]
    assert result.provider_reference


def test_hard_declines_are_lost_and_stolen_not_insufficient_funds() -> None:
    assert is_hard_decline("lost_card")
    assert is_hard_decline("stolen_card")
    assert not is_hard_decline("insufficient_funds")
    assert not is_hard_decline("processing_error")


def test_the_silent_card_is_charged_but_the_answer_is_lost(sandbox: SandboxProvider) -> None:
    token = sandbox.tokenise_card(card(NEVER_ANSWERS), today=TODAY)
    with pytest.raises(ProviderTimeout):
        sandbox.charge(token=token.token, amount=EUR10, idempotency_key="lost")
    assert sandbox.lookup("lost").status is ProviderStatus.SUCCEEDED
    assert sandbox.lookup("never-sent").status is ProviderStatus.NOT_FOUND
    assert sandbox.charges_made == 1


def test_a_key_is_charged_once_and_refused_with_other_parameters(sandbox: SandboxProvider) -> None:
    token = sandbox.tokenise_card(card("4242424242424242"), today=TODAY).token
    first = sandbox.charge(token=token, amount=EUR10, idempotency_key="k")
    again = sandbox.charge(token=token, amount=EUR10, idempotency_key="k")
    assert first == again
    assert sandbox.charges_made == 1
    with pytest.raises(ProviderError):
        sandbox.charge(token=token, amount=Money.of("11", "EUR"), idempotency_key="k")


@pytest.mark.parametrize(
    ("number", "month", "year"),
    [("4242424242424241", 12, 2030), ("4242424242424242", 1, 2026), ("4242424242424242", 13, 2030)],
)
def test_bad_numbers_and_expiries_are_refused_at_tokenisation(
    sandbox: SandboxProvider, number: str, month: int, year: int
) -> None:
    with pytest.raises(ProviderError):
        sandbox.tokenise_card(CardDetails(number, month, year), today=TODAY)


def test_refunds_never_exceed_the_charge(sandbox: SandboxProvider) -> None:
    token = sandbox.tokenise_card(card("4242424242424242"), today=TODAY).token
    charged = sandbox.charge(token=token, amount=EUR10, idempotency_key="c")
    part = sandbox.refund(
        provider_reference=charged.provider_reference,
        amount=Money.of("4", "EUR"),
        idempotency_key="r1",
    )
    assert part.status is ProviderStatus.SUCCEEDED
    with pytest.raises(ProviderError):
        sandbox.refund(
            provider_reference=charged.provider_reference,
            amount=Money.of("7", "EUR"),
            idempotency_key="r2",
        )


def test_direct_debits_settle_later_with_signed_callbacks() -> None:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    sandbox = SandboxProvider(clock)
    received: list[tuple[bytes, dict[str, str]]] = []
    sandbox.on_callback(lambda body, headers: received.append((body, headers)))
    good = sandbox.register_mandate(iban="DE89370400440532013000", mandate_reference="M1")
    bad = sandbox.register_mandate(iban="DE62370400440532013001", mandate_reference="M2")
    assert (
        sandbox.charge(token=good, amount=EUR10, idempotency_key="g").status
        is ProviderStatus.PENDING
    )
    assert (
        sandbox.charge(token=bad, amount=EUR10, idempotency_key="b").status
        is ProviderStatus.PENDING
    )
    assert sandbox.settle_due() == 0
    clock.advance(timedelta(days=2))
    assert sandbox.settle_due() == 2
    verifier = Webhook(sandbox.webhook_secret)
    outcomes = {}
    for body, headers in received:
        message = verifier.verify(body, headers)
        outcomes[message["idempotency_key"]] = (message["status"], message["decline_code"])
    assert outcomes == {"g": ("SUCCEEDED", ""), "b": ("FAILED", "insufficient_funds")}
    body, headers = received[0]
    tampered = json.dumps({**json.loads(body), "status": "SUCCEEDED"}).replace(" ", "  ").encode()
    with pytest.raises(WebhookVerificationError):
        verifier.verify(tampered, headers)


def test_a_silent_provider_times_out_every_call(sandbox: SandboxProvider) -> None:
    token = sandbox.tokenise_card(card("4242424242424242"), today=TODAY).token
    sandbox.answering = False
    with pytest.raises(ProviderTimeout):
        sandbox.charge(token=token, amount=EUR10, idempotency_key="x")
    sandbox.answering = True
    assert sandbox.lookup("x").status is ProviderStatus.NOT_FOUND


def test_a_restarted_sandbox_remembers_tokens_charges_and_refunds_but_no_pan(
    tmp_path: Path,
) -> None:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    journal = tmp_path / "sandbox.jsonl"
    first = SandboxProvider(clock, journal=journal)
    good = first.tokenise_card(card("4242424242424242"), today=TODAY).token
    lost = first.tokenise_card(card("4000000000009987"), today=TODAY).token
    charged = first.charge(token=good, amount=EUR10, idempotency_key="c1")
    first.refund(
        provider_reference=charged.provider_reference,
        amount=Money.of("4", "EUR"),
        idempotency_key="r1",
    )
    again = SandboxProvider(clock, journal=journal)
    assert again.lookup("c1") == charged
    assert again.charge(token=good, amount=EUR10, idempotency_key="c1") == charged
    assert again.charge(token=lost, amount=EUR10, idempotency_key="c2").decline_code == "lost_card"
    with pytest.raises(ProviderError):  # 4 of 10 already refunded
        again.refund(
            provider_reference=charged.provider_reference,
            amount=Money.of("7", "EUR"),
            idempotency_key="r2",
        )
    text = journal.read_text()
    assert "4242424242424242" not in text
    assert "4000000000009987" not in text


def test_a_callback_the_receiver_refused_is_sent_again() -> None:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    sandbox = SandboxProvider(clock)
    attempts: list[bytes] = []

    def flaky(body: bytes, headers: dict[str, str]) -> None:
        attempts.append(body)
        if len(attempts) == 1:
            raise RuntimeError("receiver busy")

    sandbox.on_callback(flaky)
    mandate = sandbox.register_mandate(iban="DE89370400440532013000", mandate_reference="M")
    sandbox.charge(token=mandate, amount=EUR10, idempotency_key="d1")
    clock.advance(timedelta(days=2))
    assert sandbox.settle_due() == 1
    assert sandbox.settle_due() == 0
    assert len(attempts) == 2
    assert attempts[0] == attempts[1]


def test_the_recovering_card_declines_softly_four_times_then_succeeds(
    sandbox: SandboxProvider,
) -> None:
    from services.payments.adapters.sandbox import RECOVERING_CARD, RECOVERS_AFTER

    token = sandbox.tokenise_card(card(RECOVERING_CARD), today=TODAY)
    outcomes = [
        sandbox.charge(token=token.token, amount=EUR10, idempotency_key=f"try-{n}")
        for n in range(RECOVERS_AFTER + 1)
    ]
    assert [(r.status, r.decline_code) for r in outcomes[:-1]] == [
        (ProviderStatus.FAILED, "processing_error")
    ] * RECOVERS_AFTER
    assert outcomes[-1].status is ProviderStatus.SUCCEEDED
    # A repeated key replays its first answer; it is not a new try.
    again = sandbox.charge(token=token.token, amount=EUR10, idempotency_key="try-0")
    assert again.status is ProviderStatus.FAILED
    assert not is_hard_decline("processing_error")


def test_the_balance_books_charges_less_fees_and_refunds_and_pays_out_each_day(
    tmp_path: Path,
) -> None:
    clock = ManualClock(datetime(2026, 3, 1, 10, tzinfo=UTC))
    journal = tmp_path / "sandbox.jsonl"
    sandbox = SandboxProvider(clock, journal=journal, settle_after=timedelta(days=1))
    card = sandbox.tokenise_card(CardDetails("4242424242424242", 12, 2030), today=TODAY)
    declined = sandbox.tokenise_card(CardDetails("4000000000000002", 12, 2030), today=TODAY)
    mandate = sandbox.register_mandate(iban="DE89370400440532013000", mandate_reference="M")
    charged = sandbox.charge(
        token=card.token, amount=Money.of("100.00", "EUR"), idempotency_key="a"
    )
    sandbox.charge(token=card.token, amount=Money.of("100.00", "EUR"), idempotency_key="a")
    sandbox.charge(token=declined.token, amount=EUR10, idempotency_key="b")
    sandbox.charge(token=mandate, amount=Money.of("50.00", "EUR"), idempotency_key="c")
    sandbox.refund(
        provider_reference=charged.provider_reference,
        amount=Money.of("20.00", "EUR"),
        idempotency_key="r",
    )
    first = sandbox.settlement(date(2026, 3, 1))
    # The replayed key and the decline move nothing; the direct debit has not settled.
    assert [(line.kind, line.gross, line.fee) for line in first.lines] == [
        ("charge", Money.of("100.00", "EUR"), Money.of("1.75", "EUR")),  # 1.5 % + 0.25
        ("refund", Money.of("-20.00", "EUR"), Money.of("0", "EUR")),
    ]
    assert first.lines[0].provider_reference == charged.provider_reference
    assert first.payouts == []  # the day has not ended
    clock.advance(timedelta(days=1))
    sandbox.settle_due()  # the direct debit settles; the first day is paid out
    second = sandbox.settlement(date(2026, 3, 2))
    assert [(line.method, line.gross, line.fee) for line in second.lines] == [
        ("sepa_debit", Money.of("50.00", "EUR"), Money.of("0.35", "EUR"))
    ]
    (payout,) = second.payouts
    assert payout.amount == Money.of("78.25", "EUR")  # 100 - 1.75 - 20
    assert {line.payout_id for line in sandbox.settlement(date(2026, 3, 1)).lines} == {
        payout.payout_id
    }
    # A restarted sandbox keeps its balance and payouts, and pays each day out once.
    restarted = SandboxProvider(clock, journal=journal)
    clock.advance(timedelta(days=1))
    assert restarted.settlement(date(2026, 3, 2)).payouts == [payout]
    (later,) = restarted.settlement(date(2026, 3, 3)).payouts
    assert later.amount == Money.of("49.65", "EUR")
    assert "4242424242424242" not in journal.read_text()


def test_a_day_of_refunds_pays_nothing_and_is_carried_into_the_next_payout() -> None:
    clock = ManualClock(datetime(2026, 3, 1, 10, tzinfo=UTC))
    sandbox = SandboxProvider(clock)
    card = sandbox.tokenise_card(CardDetails("4242424242424242", 12, 2030), today=TODAY)
    first = sandbox.charge(token=card.token, amount=Money.of("10.00", "EUR"), idempotency_key="1")
    clock.advance(timedelta(days=1))
    sandbox.refund(
        provider_reference=first.provider_reference,
        amount=Money.of("10.00", "EUR"),
        idempotency_key="r1",
    )
    clock.advance(timedelta(days=1))
    sandbox.charge(token=card.token, amount=Money.of("100.00", "EUR"), idempotency_key="2")
    assert sandbox.settlement(date(2026, 3, 3)).payouts == []  # 2 March: refunds only
    clock.advance(timedelta(days=1))
    (payout,) = sandbox.settlement(date(2026, 3, 4)).payouts
    assert payout.amount == Money.of("88.25", "EUR")  # 100 - 1.75 - 10
    (earlier,) = sandbox.settlement(date(2026, 3, 2)).payouts
    assert earlier.amount == Money.of("9.60", "EUR")  # 10 - 0.40


class OneAtATime:
    """A provider without a batch call (like the Stripe adapter): the sandbox's ``charge``."""

    name = "one-at-a-time"

    def __init__(self, sandbox: SandboxProvider) -> None:
        self.charge = sandbox.charge


def test_charge_many_answers_every_test_card_as_charge_does_batched_or_not(
    sandbox: SandboxProvider, tmp_path: Path
) -> None:
    numbers = [*EXPECTED, NEVER_ANSWERS]
    tokens = [sandbox.tokenise_card(CardDetails(n, 12, 2030), today=TODAY).token for n in numbers]

    def requests(prefix: str) -> list[ChargeRequest]:
        return [
            ChargeRequest(token, EUR10, f"{prefix}-{i}")
            for i, token in enumerate([*tokens, "sbxcard_gone"])
        ]

    batched = sandbox.charge_many(requests("batch"))
    looped = charge_many(OneAtATime(sandbox), requests("loop"))  # type: ignore[arg-type]
    for outcomes in (batched, looped):
        answers = outcomes[: len(EXPECTED)]
        assert [(a.status, a.decline_code) for a in answers] == list(EXPECTED.values())  # type: ignore[union-attr]
        assert isinstance(outcomes[-2], ProviderTimeout)  # charged, the answer lost
        assert isinstance(outcomes[-1], ProviderError)  # refused: no such token
    assert sandbox.charges_made == 4  # 4242 and the lost answer, in each pass
    # The same keys again: replayed, nothing charged again (the lost answer arrives).
    again = sandbox.charge_many(requests("batch"))
    assert [getattr(o, "provider_reference", "") for o in again[: len(EXPECTED)]] == [
        getattr(o, "provider_reference", "") for o in batched[: len(EXPECTED)]
    ]
    assert getattr(again[-2], "status", None) is ProviderStatus.SUCCEEDED
    assert sandbox.charges_made == 4
