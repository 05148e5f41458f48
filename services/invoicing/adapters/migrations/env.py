"""Alembic environment of the invoicing service: the kit runs it on the service's metadata."""

from services.common.migrations import run_env
from services.invoicing.adapters.orm import metadata

run_env(metadata)
