"""Invoice and credit note HTML from Jinja2 templates, per template group and language (INV-5).

Templates live in ``templates/``:

- ``default/`` holds the house layout: ``invoice.html`` and ``credit_note.html``
  (both extend ``base.html``), ``brand.html`` (letterhead) and ``style.css``.
- ``groups/<group>/`` may replace any of those files for one reseller or
  customer group; ``groups/<group>/<language>/`` and ``default/<language>/``
  replace them for one language. The most specific file wins, so a reseller
  changes its letterhead by dropping in one ``brand.html``.
- ``labels/<language>.yaml`` holds the printed words; a key missing in a
  language falls back to English, and an unknown language prints in English.

Money, quantities and dates are formatted with Babel in the document's language.
The same HTML is the web view and the input of the PDF (``pdf.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.common.money import Money
from services.invoicing.documents.model import InvoiceDocument, UsageDetail

TEMPLATES = Path(__file__).parent / "templates"
LANGUAGES = ("en", "nl", "es", "ru", "fr")
DEFAULT_LANGUAGE = "en"
# Babel locales: European date order for English (the seeds' customers are European).
_LOCALES = {"en": "en_GB", "nl": "nl_NL", "es": "es_ES", "ru": "ru_RU", "fr": "fr_FR"}


def language_of(document: InvoiceDocument) -> str:
    """The printing language: the primary subtag of a BCP-47 tag ("nl-BE" -> "nl")."""
    primary = document.language.replace("_", "-").split("-")[0].lower()
    return primary if primary in LANGUAGES else DEFAULT_LANGUAGE


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,  # a typo in a template fails the render, not the customer
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment


@cache
def labels(language: str) -> dict[str, Any]:
    """The printed words of one language over English ones (nested keys merged)."""
    english = _load_labels(DEFAULT_LANGUAGE)
    if language == DEFAULT_LANGUAGE:
        return english
    return _merge(english, _load_labels(language))


def _load_labels(language: str) -> dict[str, Any]:
    path = TEMPLATES / "labels" / f"{language}.yaml"
    if not path.exists():
        return {}
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    return dict(loaded) if isinstance(loaded, dict) else {}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def candidates(name: str, group: str | None, language: str) -> list[str]:
    """Template paths for ``name``, most specific first (group+language ... default)."""
    paths = []
    if group:
        paths += [f"groups/{group}/{language}/{name}", f"groups/{group}/{name}"]
    paths += [f"default/{language}/{name}", f"default/{name}"]
    return paths


class Formatter:
    """Locale-aware printing of one document's amounts, quantities and dates."""

    def __init__(self, language: str, currency: str) -> None:
        self.locale = _LOCALES.get(language, _LOCALES[DEFAULT_LANGUAGE])
        self.currency = currency

    def money(self, value: Money | Decimal) -> str:
        amount = value.amount if isinstance(value, Money) else value
        return format_currency(amount, self.currency, locale=self.locale)

    def price(self, value: Money | Decimal) -> str:
        """A unit price or rated amount: every decimal shown (0.045 is not 0.05)."""
        amount = value.amount if isinstance(value, Money) else value
        return format_currency(
            amount, self.currency, locale=self.locale, decimal_quantization=False
        )

    def number(self, value: Decimal) -> str:
        return format_decimal(value, locale=self.locale, decimal_quantization=False)

    def percent(self, value: Decimal) -> str:
        return f"{format_decimal(value, locale=self.locale)} %"

    def country(self, code: str) -> str:
        """The country's name in the document language (BT-55 holds the ISO code)."""
        return str(Locale.parse(self.locale).territories.get(code.upper(), code))

    def date(self, value: date | None) -> str:
        return "" if value is None else format_date(value, format="medium", locale=self.locale)

    def datetime(self, value: datetime) -> str:
        return format_datetime(value, format="dd MMM HH:mm", locale=self.locale)


def render_html(document: InvoiceDocument) -> str:
    language = language_of(document)
    words = labels(language)
    formatter = Formatter(language, document.currency)
    template_name = "credit_note.html" if document.is_credit_note else "invoice.html"
    environment = _environment()
    template = environment.select_template(
        candidates(template_name, document.template_group, language)
    )

    def template_for(name: str) -> list[str]:
        return candidates(name, document.template_group, language)

    return template.render(
        doc=document,
        t=words,
        fmt=formatter,
        language=language,
        template_for=template_for,
        unit=_unit_namer(words),
        attachment=attachment_sections(document),
    )


def _unit_namer(words: dict[str, Any]) -> Callable[[str], str]:
    units: dict[str, str] = words.get("units", {})

    def unit(code: str) -> str:
        return units.get(code, code)

    return unit


def attachment_sections(document: InvoiceDocument) -> list[dict[str, Any]]:
    """Per line with usage: its call rows, their exact sum and the rounded line amount."""
    sections = []
    for line in document.lines:
        rows: tuple[UsageDetail, ...] = document.details_of(line.line_id)
        if not rows:
            continue
        total = sum((row.amount for row in rows), Decimal(0))
        sections.append(
            {
                "line": line,
                "rows": rows,
                "total": total,
                "quantity": sum((row.quantity for row in rows), Decimal(0)),
            }
        )
    return sections
