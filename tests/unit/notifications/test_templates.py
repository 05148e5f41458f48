"""Every template renders in all five languages (English where a language has none)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.notifications.adapters.templates import DEFAULT_DIR, JinjaRenderer, money
from services.notifications.domain.model import LANGUAGES
from services.notifications.service_layer.ports import TemplateProblem

M = {"amount": "12.30", "currency": "EUR"}
EVENT: dict[str, Any] = {
    "number": "INV-2027-000001",
    "issue_date": "2027-01-15",
    "due_date": "2027-01-29",
    "amount_due": M,
    "amount": M,
    "invoice_id": "inv_1",
    "balance": M,
    "threshold": M,
    "percent": 80,
    "used": M,
    "credit_limit": M,
    "remaining": 120,
    "unit": "MINUTES",
    "label": "Weekend minutes",
    "valid_until": "2027-01-31T23:00:00+00:00",
    "endpoint_id": "whe_1",
    "url": "https://crm.example.com/hook",
    "level": 2,
    "level_name": "sms and late fee",
    "amount_overdue": M,
    "days_past_due": 7,
    "oldest_due_date": "2027-01-08",
}
CONTEXT = {
    "event": EVENT,
    "customer": {"display_name": "Ada <Lovelace>", "email": "a@b.c"},
    "invoices": [{"invoice_id": "inv_1", "number": "INV-2027-000001"}],
}
ENGLISH = yaml.safe_load((DEFAULT_DIR / "en.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template", sorted(ENGLISH))
def test_every_template_renders_in_every_language(language: str, template: str) -> None:
    renderer = JinjaRenderer()
    own = yaml.safe_load((DEFAULT_DIR / f"{language}.yaml").read_text(encoding="utf-8"))
    if "sms" in ENGLISH[template]:
        text = renderer.sms(template, language, CONTEXT)
        assert "12.30 EUR" in text or "EUR" not in str(ENGLISH[template]["sms"])
        if template in own:
            assert text == renderer.sms(template, language, CONTEXT)
        return
    rendered = renderer.email(template, language, CONTEXT)
    assert rendered.subject
    assert "\n" not in rendered.subject
    assert f'lang="{language if template in own else "en"}"' in rendered.html
    assert "{{" not in rendered.text + rendered.html
    if template in own:  # the language's own words, not English
        assert rendered.subject != renderer.email(template, "en", CONTEXT).subject or (
            language == "en"
        )
    if "display_name" in str(ENGLISH[template]):
        assert "Ada &lt;Lovelace&gt;" in rendered.html  # escaped in HTML
        assert "Ada <Lovelace>" in rendered.text


def test_the_legal_and_payment_templates_exist_in_every_language() -> None:
    for language in LANGUAGES:
        own = yaml.safe_load((DEFAULT_DIR / f"{language}.yaml").read_text(encoding="utf-8"))
        for template in ("invoice_issued", "payment_succeeded", "payment_failed", "balance_low"):
            assert template in own, (language, template)


def test_unknown_language_falls_back_to_english() -> None:
    renderer = JinjaRenderer()
    assert renderer.email("invoice_issued", "de", CONTEXT) == renderer.email(
        "invoice_issued", "en", CONTEXT
    )


def test_unknown_templates_and_render_failures_say_why(tmp_path: Path) -> None:
    with pytest.raises(TemplateProblem, match="unknown template 'nope'"):
        JinjaRenderer().email("nope", "en", CONTEXT)
    (tmp_path / "en.yaml").write_text(
        'x:\n  subject: "{{ event.missing }}"\n  text: t\n  html: h\n', encoding="utf-8"
    )
    with pytest.raises(TemplateProblem, match=r"x\.subject failed to render.*missing"):
        JinjaRenderer(tmp_path).email("x", "en", CONTEXT)
    (tmp_path / "en.yaml").write_text("x: [unclosed", encoding="utf-8")
    with pytest.raises(TemplateProblem, match="not valid YAML"):
        JinjaRenderer(tmp_path).email("x", "en", CONTEXT)


def test_templates_cannot_reach_python() -> None:
    from jinja2.exceptions import SecurityError

    del SecurityError
    renderer_dir = DEFAULT_DIR
    assert renderer_dir.exists()
    with pytest.raises(TemplateProblem):
        JinjaRenderer()._render(  # the sandbox refuses attribute walks to internals
            JinjaRenderer()._text, "{{ ''.__class__.__mro__[1].__subclasses__() }}", "x", {}
        )


def test_money_is_exact_text() -> None:
    assert money({"amount": "0.10", "currency": "EUR"}) == "0.10 EUR"
    assert money("5") == "5"


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        ("12.1", "EUR", "12.10 EUR"),  # as payments writes it
        ("0.460000", "EUR", "0.46 EUR"),  # as charging writes it
        ("0.4625", "EUR", "0.4625 EUR"),  # more digits than the currency: kept, not rounded
        ("100", "EUR", "100.00 EUR"),
        ("1000", "JPY", "1000 JPY"),
    ],
)
def test_money_shows_the_currency_minor_digits_and_never_rounds(
    amount: str, currency: str, shown: str
) -> None:
    assert money({"amount": amount, "currency": currency}) == shown


DUNNING = sorted(name for name in ENGLISH if name.startswith("dunning_"))


def test_every_template_a_dunning_policy_may_name_exists() -> None:
    # services/dunning/domain/policy.py KNOWN_TEMPLATES: a policy may name any of them.
    from services.dunning.domain.policy import KNOWN_TEMPLATES

    assert set(DUNNING) == set(KNOWN_TEMPLATES)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template", DUNNING)
def test_dunning_templates_render_on_both_channels_in_every_language(
    language: str, template: str
) -> None:
    renderer = JinjaRenderer()
    own = yaml.safe_load((DEFAULT_DIR / f"{language}.yaml").read_text(encoding="utf-8"))
    assert template in own, (language, template)  # translated, not the English fallback
    rendered = renderer.email(template, language, CONTEXT)
    sms = renderer.sms(template, language, CONTEXT)
    assert "12.30 EUR" in rendered.subject + rendered.text
    assert "12.30 EUR" in sms
    assert f'lang="{language}"' in rendered.html
    assert "Ada &lt;Lovelace&gt;" in rendered.html
    assert "{{" not in rendered.text + rendered.html + sms
    if language != "en":
        assert rendered.subject != renderer.email(template, "en", CONTEXT).subject
        assert sms != renderer.sms(template, "en", CONTEXT)
