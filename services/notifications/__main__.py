"""Run the notifications service: ``python -m services.notifications``."""

from services.notifications.entrypoints.main import main

raise SystemExit(main())
