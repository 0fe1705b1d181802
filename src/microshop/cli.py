"""The `microshop` command: a thin layer over the server and the local supervisor."""

import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
import uvloop
from rich.console import Console
from rich.markup import escape

from microshop import __version__
from microshop.common.settings import ConfigurationError, Settings, Storage, load_settings
from microshop.sandbox.cli import sandbox_app
from microshop.server import resolve, serve
from microshop.services import SERVICES
from microshop.services.db.repository import (
    SQLITE_FILE_NAME,
    StorageUnavailable,
    open_repository,
)
from microshop.supervisor import StartError, Supervisor, run_until_signalled

app = typer.Typer(
    help="microshop: a microservices shop on your laptop and on Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
error_console = Console(stderr=True)

SERVICE_COLORS = {
    "api-gateway": "cyan",
    "payment-service": "magenta",
    "order-service": "yellow",
    "db": "green",
}
NAME_WIDTH = max(len(name) for name in SERVICES)


def fail(message: str, code: int = 2) -> None:
    error_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def version_callback(value: bool) -> None:
    if value:
        console.print(f"microshop {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """microshop: a microservices shop on your laptop and on Kubernetes."""


@app.command("serve")
def serve_command(
    service: Annotated[
        str, typer.Argument(help="api-gateway, order-service, payment-service or db.")
    ],
) -> None:
    """Run one service in the foreground, configured by MICROSHOP_* variables (as containers do)."""
    try:
        spec = resolve(service)
    except KeyError:
        fail(f"unknown service {service!r}; choose one of: {', '.join(SERVICES)}")
    try:
        settings = load_settings()
    except ConfigurationError as error:
        fail(str(error))
    serve(spec, settings)


db_app = typer.Typer(help="The db service's storage.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(sandbox_app, name="sandbox")


@db_app.command("migrate")
def migrate_command() -> None:
    """Bring the configured database's schema up to date (the db service also does at start-up)."""
    try:
        settings = load_settings()
    except ConfigurationError as error:
        fail(str(error))
    if settings.storage is Storage.MEMORY:
        fail("memory storage is created afresh by each db service; there is nothing to migrate")
    try:
        if settings.storage is Storage.SQLITE:
            # Imported here: `microshop serve` must not load Alembic into every service.
            from microshop.services.db.database import upgrade_sqlite

            settings.data_dir.mkdir(parents=True, exist_ok=True)
            path = settings.data_dir / SQLITE_FILE_NAME
            upgrade_sqlite(lambda: sqlite3.connect(path))
        else:
            uvloop.run(migrate_postgresql(settings))
    except (OSError, sqlite3.Error, StorageUnavailable) as error:
        fail(f"cannot migrate {settings.storage.value} storage: {error}", code=1)
    console.print(f"{settings.storage.value} storage is up to date")


async def migrate_postgresql(settings: Settings) -> None:
    repository = open_repository(settings)
    try:
        await repository.migrate()
    finally:
        await repository.close()


ANSI_COLORS = {"cyan": 36, "magenta": 35, "yellow": 33, "green": 32}


def service_line_printer() -> Callable[[str, list[str]], None]:
    """Writes each service's lines behind its name; colored on a terminal. Plain writes, not
    Rich: under load the four services log thousands of lines a second through here."""
    colored = console.is_terminal
    prefixes = {}
    for name, color in SERVICE_COLORS.items():
        label = f"{name:<{NAME_WIDTH}}"
        prefixes[name] = (
            f"\033[{ANSI_COLORS[color]}m{label}\033[0m | " if colored else f"{label} | "
        )
    out = sys.stdout

    def print_lines(service: str, lines: list[str]) -> None:
        prefix = prefixes.get(service, f"{service} | ")
        out.write("".join(f"{prefix}{line}\n" for line in lines))
        out.flush()

    return print_lines


@app.command("up")
def up_command(
    base_port: Annotated[
        int,
        typer.Option(help="Gateway port; the others follow the seed's layout.", min=1, max=65530),
    ] = 3000,
    storage: Annotated[
        Storage, typer.Option(help="sqlite keeps data; memory loses it on stop.")
    ] = Storage.SQLITE,
    data_dir: Annotated[Path | None, typer.Option(help="Where sqlite data lives.")] = None,
    database: Annotated[
        str | None,
        typer.Option(help="A postgresql:// URL: the db service stores there instead of sqlite."),
    ] = None,
    state_file: Annotated[
        Path | None,
        typer.Option(help="Write where each service runs (pids, ports) to this JSON file."),
    ] = None,
) -> None:
    """Start all four services on 127.0.0.1 and keep them running until Ctrl-C."""
    environment = {"MICROSHOP_STORAGE": storage.value}
    if data_dir is not None:
        environment["MICROSHOP_DATA_DIR"] = str(data_dir.resolve())
    if database is not None:
        environment["MICROSHOP_DATABASE_URL"] = database
    if console.is_terminal:
        environment.setdefault("MICROSHOP_LOG_FORMAT", "console")
    try:
        load_settings(
            **{key.removeprefix("MICROSHOP_").lower(): value for key, value in environment.items()}
        )
    except ConfigurationError as error:
        fail(str(error))
    supervisor = Supervisor(base_port, environment, service_line_printer(), state_file)

    def announce() -> None:
        console.print(
            f"\n[bold green]microshop is up:[/] {supervisor.gateway_url}  (Ctrl-C stops it)\n",
            highlight=False,
        )

    try:
        uvloop.run(run_until_signalled(supervisor, announce))
    except StartError as error:
        fail(str(error), code=1)
    console.print("microshop stopped")


if __name__ == "__main__":
    sys.exit(app())
