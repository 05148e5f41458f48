"""Run the accounts service: ``python -m services.accounts`` (see ``entrypoints.main``)."""

from services.accounts.entrypoints.main import main

raise SystemExit(main())
