"""How the one auth dependency reads credentials (as the three security schemes did,
ADR 0076) and its per-key principal cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.requests import Request

from gateway.auth import SESSION_COOKIE, Authenticator, credentials
from gateway.ratelimit import MemoryRateLimiter
from gateway.store import CredentialStore


def request(*headers: tuple[str, str]) -> Request:
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ((), (None, None)),
        ((("Authorization", "Bearer cli_a.s"),), ("cli_a.s", None)),
        # The scheme is case-insensitive and the credentials are stripped (HTTPBearer).
        ((("Authorization", "bearer   cli_a.s "),), ("cli_a.s", None)),
        ((("X-API-Key", "cli_b.t"),), ("cli_b.t", None)),
        # Another scheme, or Bearer without credentials, is not a bearer token: the
        # X-API-Key header is used then.
        ((("Authorization", "Basic abc"), ("X-API-Key", "cli_b.t")), ("cli_b.t", None)),
        ((("Authorization", "Bearer"), ("X-API-Key", "cli_b.t")), ("cli_b.t", None)),
        # Bearer wins over X-API-Key; a presented key wins over the session cookie.
        ((("Authorization", "Bearer cli_a.s"), ("X-API-Key", "cli_b.t")), ("cli_a.s", None)),
        ((("X-API-Key", "cli_b.t"), ("Cookie", f"{SESSION_COOKIE}=sess")), ("cli_b.t", None)),
        ((("Cookie", f"{SESSION_COOKIE}=sess"),), (None, "sess")),
        ((("X-API-Key", ""), ("Cookie", f"{SESSION_COOKIE}=sess")), (None, "sess")),
    ],
)
def test_credentials_are_read_as_the_security_schemes_read_them(
    headers: tuple[tuple[str, str], ...], expected: tuple[str | None, str | None]
) -> None:
    assert credentials(request(*headers)) == expected


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CredentialStore]:
    opened = CredentialStore.open(f"sqlite:///{tmp_path / 'gateway.db'}", None)
    yield opened
    opened.engine.dispose()


async def test_a_verified_keys_principal_is_reused_and_a_wrong_secret_still_refused(
    store: CredentialStore,
) -> None:
    client, key = store.add_api_client("crm", frozenset({"read"}))
    auth = Authenticator(
        store, jwt_secret=b"s" * 32, token_minutes=15, limiter=MemoryRateLimiter(1000)
    )
    first = await auth.principal(key, None)
    assert first is not None
    assert (first.kind, first.name) == ("client", client.client_id)
    assert first.scopes == frozenset({"read"})
    assert await auth.principal(key, None) is first  # from the cache, not rebuilt
    assert await auth.principal(key + "x", None) is None  # the cache checks the secret
    assert await auth.client_from_key(key) == client
