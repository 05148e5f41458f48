"""Run the payments service: ``python -m services.payments`` (see ``entrypoints.main``)."""

from services.payments.entrypoints.main import main

raise SystemExit(main())
