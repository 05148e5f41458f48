"""The service token the suite's processes authenticate each other with.

Taken from ``RECKON_SERVICE_TOKEN`` when set; otherwise generated once and kept
in ``DATA_DIR/service-token`` (mode 0600, only the owner may read it), so that a
restarted suite and clients such as ``reckon demo`` keep using the same token.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TOKEN_ENV = "RECKON_SERVICE_TOKEN"
TOKEN_FILE_NAME = "service-token"
# The services refuse shorter tokens (services.common.config.ServiceSettings).
MIN_TOKEN_LENGTH = 16


class TokenError(RuntimeError):
    """The configured or stored token cannot be used."""


@dataclass(frozen=True)
class ServiceToken:
    value: str
    # None when the token came from the environment rather than a file.
    path: Path | None


def _check(value: str, origin: str) -> str:
    value = value.strip()
    if len(value) < MIN_TOKEN_LENGTH:
        raise TokenError(f"{origin}: the service token must be at least {MIN_TOKEN_LENGTH} chars")
    return value


def read_token_file(path: Path) -> str:
    """Read a stored token, tightening its permissions if someone loosened them."""
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o600)
    return _check(path.read_text(encoding="utf-8"), str(path))


def load_or_create_token(data_dir: Path, environ: Mapping[str, str]) -> ServiceToken:
    """The token from the environment, else the one stored in ``data_dir``, else a new one."""
    from_env = environ.get(TOKEN_ENV)
    if from_env:
        return ServiceToken(_check(from_env, TOKEN_ENV), None)
    path = data_dir / TOKEN_FILE_NAME
    if path.exists():
        return ServiceToken(read_token_file(path), path)
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL + mode at creation: the secret never exists on disk with wider permissions,
    # and two suites starting at once cannot overwrite each other's token.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return ServiceToken(read_token_file(path), path)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return ServiceToken(token, path)
