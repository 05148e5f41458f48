"""Run the dunning service: ``python -m services.dunning`` (see ``entrypoints.main``)."""

from services.dunning.entrypoints.main import main

raise SystemExit(main())
