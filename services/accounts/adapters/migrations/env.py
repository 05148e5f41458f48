"""Alembic environment of the accounts service: the kit runs it on the service's metadata."""

from services.accounts.adapters.orm import metadata
from services.common.migrations import run_env

run_env(metadata)
