"""The one entry point: ``render(document, format) -> RenderedDocument``.

Invoicing's GetInvoiceDocument RPC and the operator command call this; the
format decides the writer. Every format is rendered from the same
``InvoiceDocument``, so the PDF, the web view and the e-invoices never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.invoicing.documents.cii import to_cii_bytes
from services.invoicing.documents.factur_x import render_facturx
from services.invoicing.documents.html import render_html
from services.invoicing.documents.model import InvoiceDocument
from services.invoicing.documents.pdf import render_pdf
from services.invoicing.documents.ubl import to_ubl_bytes


class DocumentFormat(StrEnum):
    PDF = "pdf"  # printable PDF/A-3b from the HTML
    HTML = "html"  # the web view, same template as the PDF
    UBL = "ubl"  # UBL 2.1 Invoice or CreditNote (EN 16931)
    CII = "cii"  # UN/CEFACT Cross Industry Invoice (EN 16931)
    FACTURX = "facturx"  # PDF/A-3 with the CII embedded (Factur-X EN 16931 profile)


@dataclass(frozen=True, slots=True)
class RenderedDocument:
    content: bytes
    media_type: str
    filename: str


class MixedCurrencies(ValueError):
    """An amount is not in the document currency (BT-5): no format can express that."""


def render(document: InvoiceDocument, format: DocumentFormat) -> RenderedDocument:
    if len(currencies := document.currencies()) > 1:
        raise MixedCurrencies(f"{document.number} mixes currencies {sorted(currencies)}")
    stem = _safe_filename(document.number)
    match format:
        case DocumentFormat.PDF:
            return RenderedDocument(render_pdf(document), "application/pdf", f"{stem}.pdf")
        case DocumentFormat.HTML:
            html = render_html(document).encode("utf-8")
            return RenderedDocument(html, "text/html; charset=utf-8", f"{stem}.html")
        case DocumentFormat.UBL:
            return RenderedDocument(to_ubl_bytes(document), "application/xml", f"{stem}.ubl.xml")
        case DocumentFormat.CII:
            return RenderedDocument(to_cii_bytes(document), "application/xml", f"{stem}.cii.xml")
        case DocumentFormat.FACTURX:
            pdf = render_facturx(document)
            return RenderedDocument(pdf, "application/pdf", f"{stem}.facturx.pdf")
    raise ValueError(f"unknown document format: {format!r}")


def _safe_filename(number: str) -> str:
    """Invoice numbers may hold '/' (e.g. 2026/000123): keep file names to one segment."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in number) or "document"
