"""Alembic environment of the dunning service: the kit runs it on the service's metadata."""

from services.common.migrations import run_env
from services.dunning.adapters.orm import metadata

run_env(metadata)
