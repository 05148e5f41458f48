"""Alembic environment of the rating service: the kit runs it on the service's metadata."""

from services.common.migrations import run_env
from services.rating.adapters.orm import metadata

run_env(metadata)
