"""Alembic environment of the charging service: the kit runs it on the service's metadata."""

from services.charging.adapters.orm import metadata
from services.common.migrations import run_env

run_env(metadata)
