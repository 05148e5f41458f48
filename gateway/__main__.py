"""Run the gateway: ``python -m gateway`` (see ``gateway.main``)."""

from gateway.main import main

raise SystemExit(main())
