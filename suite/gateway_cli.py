"""``reckon gateway ...`` and ``reckon report NAME``: the gateway's operator commands.

- ``reckon gateway key add NAME --scope read --scope write``: a new API client; its
  key is printed once (only a hash is kept). ``key list``, ``key disable CLIENT_ID``.
- ``reckon gateway user add LOGIN --customer cus_...``: a self-care login bound to a
  customer; ``--operator --scope admin`` for an operator login to the report pages.
  The password is asked for (or read from ``RECKON_GATEWAY_PASSWORD``).
- ``reckon report NAME [--from --to --as-of] [--format]`` (consumption,
  tariff-popularity, revenue, receivables-aging, payment-discipline): the same
  report functions as the gateway's ``/v1/reports``, against the running suite.

The credential commands open the gateway's store directly (``GATEWAY_DATABASE_URL``,
``DATABASE_URL`` or ``DATA_DIR/gateway.db``, as the gateway itself resolves it).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from gateway.config import GatewaySettings
from gateway.store import CredentialStore, parse_scopes
from suite.state import SuiteState, SuiteStateError, read_state

gateway_app = typer.Typer(
    help="Gateway credentials: API clients (CRM/ERP) and self-care or operator logins.",
    no_args_is_help=True,
    add_completion=False,
)
key_app = typer.Typer(help="API clients and their keys.", no_args_is_help=True)
user_app = typer.Typer(help="Logins for self-care and the report pages.", no_args_is_help=True)
gateway_app.add_typer(key_app, name="key")
gateway_app.add_typer(user_app, name="user")
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)
PASSWORD_ENV = "RECKON_GATEWAY_PASSWORD"

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="RECKON_DATA_DIR", help="Data directory of the suite."),
]


def settings_for(data_dir: Path) -> GatewaySettings:
    """The gateway's settings as far as the store goes (no service is called)."""
    return GatewaySettings(
        service_token=SecretStr(os.environ.get("RECKON_SERVICE_TOKEN") or "cli-calls-no-service"),
        redis_url=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        data_dir=data_dir,
    )


def open_store(data_dir: Path) -> CredentialStore:
    settings = settings_for(data_dir)
    return CredentialStore.open(settings.effective_database_url, settings.effective_database_schema)


def _scopes(values: list[str]) -> frozenset[str]:
    try:
        return parse_scopes(values)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@key_app.command("add")
def key_add(
    name: Annotated[str, typer.Argument(help="Who the client is, e.g. 'crm'.")],
    scope: Annotated[list[str], typer.Option(help="read, write or admin (repeatable).")],
    data_dir: DataDir = Path("data"),
) -> None:
    """Create an API client and print its key (shown only this once)."""
    client, key = open_store(data_dir).add_api_client(name, _scopes(scope))
    console.print(f"client_id  {client.client_id}")
    console.print(f"scopes     {' '.join(sorted(client.scopes))}")
    console.print(f"api key    {key}")
    console.print("[dim]Send it as 'Authorization: Bearer <api key>'; it is not stored.[/]")


@key_app.command("list")
def key_list(data_dir: DataDir = Path("data")) -> None:
    """List API clients (never their keys)."""
    table = Table("client_id", "name", "scopes", "disabled")
    for client, disabled in open_store(data_dir).list_clients():
        table.add_row(client.client_id, client.name, " ".join(sorted(client.scopes)), str(disabled))
    console.print(table)


@key_app.command("disable")
def key_disable(client_id: str, data_dir: DataDir = Path("data")) -> None:
    """Disable an API client (its key stops working within 30 seconds)."""
    if not open_store(data_dir).disable_client(client_id):
        errors.print(f"no API client {client_id}")
        raise typer.Exit(1)
    console.print(f"disabled {client_id}")


@user_app.command("add")
def user_add(
    login: Annotated[str, typer.Argument(help="Login name, usually an e-mail address.")],
    customer: Annotated[str | None, typer.Option(help="The customer (cus_...) it is for.")] = None,
    operator: Annotated[bool, typer.Option(help="An operator login (no customer).")] = False,
    scope: Annotated[list[str] | None, typer.Option(help="Operator scopes.")] = None,
    data_dir: DataDir = Path("data"),
) -> None:
    """Create a login; the password is asked for (or taken from RECKON_GATEWAY_PASSWORD)."""
    if (customer is None) == (not operator):
        raise typer.BadParameter("give --customer cus_... or --operator (not both)")
    password = os.environ.get(PASSWORD_ENV) or typer.prompt(
        "password", hide_input=True, confirmation_prompt=True
    )
    scopes = _scopes(scope or ["read"]) if operator else frozenset()
    try:
        created = open_store(data_dir).add_login(
            login, password, customer_id=customer, scopes=scopes
        )
    except ValueError as exc:
        errors.print(str(exc))
        raise typer.Exit(2) from None
    console.print(f"login {created.login} created" + (f" for {customer}" if customer else ""))


def demo_login(state: SuiteState, customer_id: str) -> tuple[str, str, str] | None:
    """A fresh self-care login for the demo's customer: (URL, login, password), or None
    when the running suite has no gateway."""
    address = state.address_of("gateway")
    if address is None:
        return None
    password = secrets.token_urlsafe(9)
    login = f"demo-{customer_id[-8:]}@example.com"
    open_store(Path(state.data_dir)).add_login(login, password, customer_id=customer_id)
    return f"http://{address}/selfcare/", login, password


# --- reports ---------------------------------------------------------------------------
def report(
    name: Annotated[
        str,
        typer.Argument(
            help="consumption, tariff-popularity, revenue, receivables-aging, payment-discipline"
        ),
    ],
    period_from: Annotated[
        datetime | None, typer.Option("--from", help="Start (inclusive), ISO 8601.")
    ] = None,
    period_to: Annotated[
        datetime | None, typer.Option("--to", help="End (exclusive), ISO 8601.")
    ] = None,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="Day to age against (default today).")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    data_dir: DataDir = Path("data"),
) -> None:
    """Print an operator report computed from the running suite's services."""
    from gateway.clients import ServiceClients
    from gateway.reports import REPORTS, run_report

    if name not in REPORTS:
        raise typer.BadParameter(f"unknown report {name!r}; known: {', '.join(REPORTS)}")
    try:
        state = read_state(data_dir)
        token = os.environ.get("RECKON_SERVICE_TOKEN") or state.token()
    except (SuiteStateError, OSError) as exc:
        errors.print(f"{exc}; start the suite with `reckon up`")
        raise typer.Exit(2) from None

    async def run() -> object:
        clients = ServiceClients.open(
            accounts=state.address_of("accounts") or "",
            rating=state.address_of("rating") or "",
            charging=state.address_of("charging") or "",
            invoicing=state.address_of("invoicing") or "127.0.0.1:0",
            payments=state.address_of("payments") or "127.0.0.1:0",
            token=token,
            timeout=30,
        )
        try:
            day = as_of.date() if as_of is not None else None
            return await run_report(name, clients, period_from, period_to, day)
        finally:
            await clients.close()

    result = asyncio.run(run())
    from gateway.reports import Report

    assert isinstance(result, Report)
    if output == "csv":
        typer.echo(result.as_csv(), nl=False)
    elif output == "json":
        typer.echo(json.dumps(result.as_json(), indent=2))
    else:
        table = Table(*result.columns, title=result.name, title_justify="left")
        for row in result.rows:
            table.add_row(*(str(row[column]) for column in result.columns))
        console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``reckon gateway`` and ``reckon report`` to the ``reckon`` command."""
    app.add_typer(gateway_app, name="gateway")
    app.command("report")(report)
