"""TLS and mutual TLS for the suite's gRPC servers and the channels between services.

Off by default: ``reckon up`` serves plaintext on loopback. Configured by files, as
Kubernetes mounts them from a Secret (cert-manager renews them in place):

- ``RECKON_TLS_CERT_FILE`` + ``RECKON_TLS_KEY_FILE``: the server's certificate chain and
  key. Set, every server of the process serves TLS only.
- ``RECKON_TLS_CLIENT_CA_FILE``: with it, servers require and verify client
  certificates signed by this CA (mutual TLS).
- ``RECKON_TLS_CA_FILE``: channels to peers use TLS and verify the server against this CA.
- ``RECKON_TLS_CLIENT_CERT_FILE`` + ``RECKON_TLS_CLIENT_KEY_FILE``: the certificate a
  channel presents for mutual TLS (default: the server's own pair).

Servers re-read their files when one changes: gRPC asks for the configuration at each
new handshake, so a renewed certificate is used by the next connection without a
restart. Channels read theirs when opened.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.config import ConfigError

log = logging.getLogger(__name__)

ENV = {
    "cert": "RECKON_TLS_CERT_FILE",
    "key": "RECKON_TLS_KEY_FILE",
    "client_ca": "RECKON_TLS_CLIENT_CA_FILE",
    "ca": "RECKON_TLS_CA_FILE",
    "client_cert": "RECKON_TLS_CLIENT_CERT_FILE",
    "client_key": "RECKON_TLS_CLIENT_KEY_FILE",
}


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files; ``None`` where not configured."""

    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None
    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> TlsFiles:
        env = dict(os.environ) if environ is None else environ
        values = {field: env.get(name) or None for field, name in ENV.items()}
        files = cls(**{k: Path(v) if v else None for k, v in values.items()})
        files.check()
        return files

    def check(self) -> None:
        """Refuse half a pair and missing files at start, naming the variable."""
        problems = []
        if (self.cert is None) != (self.key is None):
            problems.append(f"{ENV['cert']} and {ENV['key']} go together")
        if (self.client_cert is None) != (self.client_key is None):
            problems.append(f"{ENV['client_cert']} and {ENV['client_key']} go together")
        if self.client_ca is not None and self.cert is None:
            problems.append(f"{ENV['client_ca']} needs {ENV['cert']} and {ENV['key']}")
        for field, name in ENV.items():
            path = getattr(self, field)
            if path is not None and not path.is_file():
                problems.append(f"{name}: no file at {path}")
        if problems:
            raise ConfigError("TLS: " + "; ".join(problems))

    @property
    def serves_tls(self) -> bool:
        return self.cert is not None

    @property
    def dials_tls(self) -> bool:
        return self.ca is not None


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


class _ReloadingServerConfig:
    """Hands gRPC a new certificate configuration when a file's mtime has changed."""

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._stamp = self._mtimes()

    def _paths(self) -> list[Path]:
        return [p for p in (self._files.cert, self._files.key, self._files.client_ca) if p]

    def _mtimes(self) -> tuple[int, ...]:
        return tuple(p.stat().st_mtime_ns for p in self._paths())

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key = self._files.cert, self._files.key
        if cert is None or key is None:
            raise ValueError("a server certificate and key are needed")
        return grpc.ssl_server_certificate_configuration(
            [(key.read_bytes(), cert.read_bytes())],
            root_certificates=_read(self._files.client_ca),
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each handshake: None keeps the current configuration."""
        with self._lock:
            try:
                stamp = self._mtimes()
                if stamp == self._stamp:
                    return None
                configuration = self.configuration()
            except (OSError, ValueError):
                # Half-written files during a renewal: keep serving the old pair.
                log.warning("TLS files changed but cannot be read yet; keeping the old ones")
                return None
            self._stamp = stamp
            log.info("TLS certificate files changed: new connections use them")
            return configuration


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    config = _ReloadingServerConfig(files)
    return grpc.dynamic_ssl_server_credentials(
        config.configuration(),
        config.fetch,
        require_client_authentication=files.client_ca is not None,
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    cert = files.client_cert or files.cert
    key = files.client_key or files.key
    return grpc.ssl_channel_credentials(
        root_certificates=_read(files.ca),
        private_key=_read(key),
        certificate_chain=_read(cert),
    )
