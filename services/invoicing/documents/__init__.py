"""Invoice documents: HTML/PDF from templates and EN 16931 e-invoices (UBL 2.1, CII, Factur-X)."""
