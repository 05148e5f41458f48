"""Invoice PDF from the invoice HTML with WeasyPrint, as PDF/A-3b.

PDF/A-3 because Factur-X (``factur_x.py``) embeds the CII XML in exactly this
file, and archived invoices must be reproducible without external resources
(fonts are embedded). Rendering takes tens of milliseconds per page, so PDFs are
rendered on demand or by document workers, never inside a bill run (ADR 0026).
"""

from __future__ import annotations

from weasyprint import HTML

from services.invoicing.documents.html import TEMPLATES, render_html
from services.invoicing.documents.model import InvoiceDocument

PDF_VARIANT = "pdf/a-3b"


def html_to_pdf(html: str) -> bytes:
    pdf: bytes = HTML(string=html, base_url=str(TEMPLATES)).write_pdf(pdf_variant=PDF_VARIANT)
    return pdf


def render_pdf(document: InvoiceDocument) -> bytes:
    return html_to_pdf(render_html(document))
