"""``python -m services.charging``: run the charging service."""

from services.charging.entrypoints.main import main

raise SystemExit(main())
