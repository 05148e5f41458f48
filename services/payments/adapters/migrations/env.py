"""Alembic environment of the payments service: the kit runs it on the service's metadata."""

from services.common.migrations import run_env
from services.payments.adapters.orm import metadata

run_env(metadata)
