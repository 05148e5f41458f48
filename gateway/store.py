"""The gateway's own tables: API clients, logins, sessions and the audit log.

The gateway owns no business data (ARCHITECTURE.md, "The edge"): only who may call
it and what they changed. Secrets are never stored: API-client secrets are random
256-bit values kept as their SHA-256 (a fast hash is right for high-entropy keys and
keeps the per-request check cheap); customer passwords are argon2id hashes
(``argon2-cffi``); session tokens are kept as their SHA-256 too, so a copy of the
database opens no session. ADR 0045.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alembic import command
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    inspect,
    select,
    update,
)

from services.common.db import make_engine
from services.common.ids import new_id
from services.common.migrations import alembic_config, upgrade_to_head
from services.common.sqltypes import big_serial

SCOPES = ("read", "write", "admin")

metadata = MetaData()
api_clients = Table(
    "gateway_api_clients",
    metadata,
    Column("client_id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("scopes", String(100), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
logins = Table(
    "gateway_logins",
    metadata,
    Column("login", String(254), primary_key=True),
    # Set for a customer's self-care login; NULL for an operator (scopes then apply).
    Column("customer_id", String(64), nullable=True),
    Column("scopes", String(100), nullable=False, default=""),
    Column("password_hash", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
sessions = Table(
    "gateway_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("login", String(254), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
audit_log = Table(
    "gateway_audit_log",
    metadata,
    Column("seq", big_serial(), primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("principal", String(300), nullable=False),
    Column("customer_id", String(64), nullable=True),
    Column("method", String(10), nullable=False),
    Column("path", Text, nullable=False),
    Column("status", Integer, nullable=False),
    Column("request_id", String(128), nullable=True),
    Column("remote", String(100), nullable=True),
)
Index("ix_gateway_audit_at", audit_log.c.at)

_hasher = PasswordHasher()
MIGRATIONS = "gateway.migrations"
# The revision that creates the tables gateways before Alembic made with create_all.
FIRST_REVISION = "0001"


def migrate_to_head(engine: Engine) -> None:
    """Upgrade to head, the services' way (``services.common.migrations``). A database a
    gateway filled before it had migrations (tables, no ``alembic_version``) is stamped
    at the first revision first, so its clients, logins and audit log are kept."""
    names = set(inspect(engine).get_table_names())
    if api_clients.name in names and "alembic_version" not in names:
        config = alembic_config(MIGRATIONS, engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.stamp(config, FIRST_REVISION)
    upgrade_to_head(engine, MIGRATIONS)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class ApiClient:
    client_id: str
    name: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class Login:
    login: str
    customer_id: str | None
    scopes: frozenset[str]


@dataclass(frozen=True)
class Session:
    login: Login
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    principal: str
    customer_id: str | None
    method: str
    path: str
    status: int
    request_id: str | None


def parse_scopes(text: str | Sequence[str]) -> frozenset[str]:
    items = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    unknown = sorted(set(items) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    return frozenset(items)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone=True columns.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class CredentialStore:
    """Blocking SQL access; the app calls it through ``asyncio.to_thread``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, schema: str | None, *, migrate: bool = True) -> CredentialStore:
        """The store on ``url``; its tables brought to the newest revision when
        ``migrate`` (``GATEWAY_MIGRATE_ON_START``, as the services do)."""
        engine = make_engine(url, schema, pool_size=5)
        if migrate:
            migrate_to_head(engine)
        return cls(engine)

    # --- API clients --------------------------------------------------------------
    def add_api_client(self, name: str, scopes: frozenset[str]) -> tuple[ApiClient, str]:
        """A new client and its API key (shown once: only its hash is kept)."""
        client_id = new_id("cli")
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                insert(api_clients).values(
                    client_id=client_id,
                    name=name,
                    secret_sha256=sha256_hex(secret),
                    scopes=" ".join(sorted(scopes)),
                    disabled=False,
                    created_at=datetime.now(UTC),
                )
            )
        return ApiClient(client_id, name, scopes), f"{client_id}.{secret}"

    def verify_client(self, client_id: str, secret: str) -> ApiClient | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_clients).where(api_clients.c.client_id == client_id)
            ).first()
        if row is None or row.disabled:
            return None
        if not hmac.compare_digest(row.secret_sha256, sha256_hex(secret)):
            return None
        return ApiClient(row.client_id, row.name, parse_scopes(row.scopes))

    def disable_client(self, client_id: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(api_clients)
                .where(api_clients.c.client_id == client_id)
                .values(disabled=True)
            )
        return bool(result.rowcount)

    def list_clients(self) -> list[tuple[ApiClient, bool]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_clients).order_by(api_clients.c.client_id)).all()
        return [(ApiClient(r.client_id, r.name, parse_scopes(r.scopes)), r.disabled) for r in rows]

    # --- logins and sessions -----------------------------------------------------
    def add_login(
        self,
        login: str,
        password: str,
        *,
        customer_id: str | None,
        scopes: frozenset[str] = frozenset(),
    ) -> Login:
        if len(password) < 8:
            raise ValueError("a password has at least 8 characters")
        name = login.strip().lower()
        with self.engine.begin() as conn:
            conn.execute(
                insert(logins).values(
                    login=name,
                    customer_id=customer_id,
                    scopes=" ".join(sorted(scopes)),
                    password_hash=_hasher.hash(password),
                    created_at=datetime.now(UTC),
                )
            )
        return Login(name, customer_id, scopes)

    def verify_password(self, login: str, password: str) -> Login | None:
        name = login.strip().lower()
        with self.engine.connect() as conn:
            row = conn.execute(select(logins).where(logins.c.login == name)).first()
        if row is None:
            # Same work as a real check, so response time does not reveal which logins exist.
            _hasher.hash(password)
            return None
        try:
            _hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return Login(row.login, row.customer_id, parse_scopes(row.scopes))

    def open_session(self, login: Login, hours: int) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        session = Session(login, secrets.token_urlsafe(24), now + timedelta(hours=hours))
        with self.engine.begin() as conn:
            conn.execute(
                insert(sessions).values(
                    token_sha256=sha256_hex(token),
                    login=login.login,
                    csrf_token=session.csrf_token,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return token, session

    def session(self, token: str) -> Session | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(sessions, logins.c.customer_id, logins.c.scopes)
                .join(logins, logins.c.login == sessions.c.login)
                .where(sessions.c.token_sha256 == sha256_hex(token))
            ).first()
        if row is None or _aware(row.expires_at) <= datetime.now(UTC):
            return None
        login = Login(row.login, row.customer_id, parse_scopes(row.scopes))
        return Session(login, row.csrf_token, _aware(row.expires_at))

    def close_session(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.token_sha256 == sha256_hex(token)))

    # --- audit log ----------------------------------------------------------------
    def audit(
        self,
        *,
        principal: str,
        customer_id: str | None,
        method: str,
        path: str,
        status: int,
        request_id: str | None,
        remote: str | None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(audit_log).values(
                    at=datetime.now(UTC),
                    principal=principal,
                    customer_id=customer_id,
                    method=method,
                    path=path[:2000],
                    status=status,
                    request_id=request_id,
                    remote=remote,
                )
            )

    def audit_page(self, after: int, limit: int) -> list[AuditEntry]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(audit_log)
                .where(audit_log.c.seq > after)
                .order_by(audit_log.c.seq)
                .limit(limit)
            ).all()
        return [
            AuditEntry(
                r.seq,
                _aware(r.at),
                r.principal,
                r.customer_id,
                r.method,
                r.path,
                r.status,
                r.request_id,
            )
            for r in rows
        ]
