"""Alembic environment of the notifications service: the kit runs it on its metadata."""

from services.common.migrations import run_env
from services.notifications.adapters.orm import metadata

run_env(metadata)
