"""Factur-X (profile EN 16931): the invoice PDF/A-3 with its CII XML embedded.

``facturx.generate_from_binary`` attaches the CII as ``factur-x.xml`` (AFRelationship
Data) and writes the Factur-X XMP metadata a receiving system looks for. The CII
is the one ``cii.py`` writes, so the embedded XML and the standalone CII agree.
"""

from __future__ import annotations

from facturx import generate_from_binary

from services.invoicing.documents.cii import to_cii_bytes
from services.invoicing.documents.html import labels, language_of
from services.invoicing.documents.model import InvoiceDocument
from services.invoicing.documents.pdf import render_pdf

FACTURX_LEVEL = "en16931"


def render_facturx(document: InvoiceDocument) -> bytes:
    language = language_of(document)
    title = labels(language)["credit_note" if document.is_credit_note else "invoice"]
    # The CII is checked against the XSD and the EN 16931 rules by the tests and
    # by `validate`; facturx's own check would recompile the schema on every call.
    pdf: bytes = generate_from_binary(
        render_pdf(document),
        to_cii_bytes(document),
        flavor="factur-x",
        level=FACTURX_LEVEL,
        check_xsd=False,
        pdf_metadata={
            "author": document.seller.name,
            "keywords": "Factur-X, EN 16931",
            "title": f"{title} {document.number}",
            "subject": f"{title} {document.number} {document.buyer.name}",
        },
        lang=language,
    )
    return pdf
