"""Alembic revisions of the accounts service's tables (run by ``upgrade_to_head``)."""
