"""Run invoicing: ``python -m services.invoicing`` serves the API (with bill-run workers);
``python -m services.invoicing worker`` runs bill-run workers only (see ``entrypoints.main``)."""

from services.invoicing.entrypoints.main import main

raise SystemExit(main())
