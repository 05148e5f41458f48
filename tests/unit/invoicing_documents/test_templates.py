"""Invoice HTML: every language, the English fallback, a reseller's own letterhead,
and the call-by-call attachment whose sum matches its line."""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal

import pytest
import yaml

from services.invoicing.documents.example import sample_credit_note, sample_invoice
from services.invoicing.documents.html import (
    LANGUAGES,
    TEMPLATES,
    attachment_sections,
    labels,
    render_html,
)

# What a reader of each language sees: the document title and the amount due
# (64.37 EUR) in that language's number format.
EXPECTED = {
    "en": ("Invoice", "€64.37", "Credit note", "€2.65"),
    "nl": ("Factuur", "€\xa064,37", "Creditnota", "€\xa02,65"),
    "es": ("Factura", "64,37\xa0€", "Factura rectificativa", "2,65\xa0€"),
    "ru": ("Счёт", "64,37\xa0€", "Кредит-нота", "2,65\xa0€"),
    "fr": ("Facture", "64,37\xa0€", "Avoir", "2,65\xa0€"),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_invoice_prints_in_the_customers_language(language: str) -> None:
    title, due, _, _ = EXPECTED[language]
    html = render_html(sample_invoice(language=language))
    assert f'<html lang="{language}">' in html
    assert f"<h1>{title}</h1>" in html
    assert "INV-2026-000123" in html
    assert due in html
    assert labels(language)["payable"] in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_credit_note_prints_in_the_customers_language_and_names_the_invoice(
    language: str,
) -> None:
    _, _, title, credited = EXPECTED[language]
    html = render_html(sample_credit_note(language=language))
    assert f"<h1>{title}</h1>" in html
    assert "CN-2026-000007" in html
    assert credited in html
    assert "INV-2026-000123" in html  # the corrected invoice (BT-25)
    assert labels(language)["pay_to"] not in html  # nothing to transfer on a credit


def test_unknown_language_falls_back_to_english() -> None:
    html = render_html(sample_invoice(language="de"))
    assert '<html lang="en">' in html
    assert "<h1>Invoice</h1>" in html


def test_every_language_translates_every_english_label() -> None:
    english = yaml.safe_load((TEMPLATES / "labels" / "en.yaml").read_text(encoding="utf-8"))
    for language in LANGUAGES:
        own = yaml.safe_load((TEMPLATES / "labels" / f"{language}.yaml").read_text("utf-8"))
        assert set(own) - {"units"} == set(english) - {"units"}, language
        assert set(own["vat_categories"]) == set(english["vat_categories"]), language


def test_a_reseller_group_gets_its_own_letterhead_and_colours() -> None:
    house = render_html(sample_invoice())
    reseller = render_html(sample_invoice(template_group="budgetcall"))
    assert "BudgetCall" in reseller
    assert "BudgetCall" not in house
    assert "--accent: #2e7d32" in reseller
    # An unknown group keeps the house templates.
    assert render_html(sample_invoice(template_group="nobody")) == house


def test_call_detail_attachment_sums_to_its_line_before_rounding() -> None:
    document = sample_invoice(calls=25)
    [section] = attachment_sections(document)
    line = section["line"]
    assert len(section["rows"]) == 25
    assert section["total"] == sum(d.amount for d in document.usage_details)
    assert section["total"].quantize(Decimal("0.01"), ROUND_HALF_UP) == line.net_amount.amount
    html = render_html(document)
    assert "Call detail" in html
    assert f"€{section['total']}" in html  # the exact sum, every decimal shown
    assert html.count("(Netherlands fixed)") == 25


def test_a_document_without_usage_has_no_attachment() -> None:
    html = render_html(replace(sample_invoice(), usage_details=()))
    assert "Call detail" not in html


def test_customer_text_is_escaped() -> None:
    buyer = replace(sample_invoice().buyer, name="<script>alert(1)</script> & Co")
    html = render_html(replace(sample_invoice(), buyer=buyer))
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html


def test_a_bcp47_language_tag_picks_its_language() -> None:
    assert '<html lang="nl">' in render_html(sample_invoice(language="nl-BE"))
    assert '<html lang="fr">' in render_html(sample_invoice(language="fr_CA"))


@pytest.mark.parametrize(
    ("language", "country"),
    [("en", "Netherlands"), ("nl", "Nederland"), ("fr", "Pays-Bas"), ("ru", "Нидерланды")],
)
def test_the_customers_country_is_named_in_their_language(language: str, country: str) -> None:
    assert f"<div>{country}</div>" in render_html(sample_invoice(language=language))
