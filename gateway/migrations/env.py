"""Alembic environment of the gateway: the kit runs it on the gateway's own tables."""

from gateway.store import metadata
from services.common.migrations import run_env

run_env(metadata)
