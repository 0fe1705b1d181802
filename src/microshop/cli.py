"""The `microshop` command: a thin layer over the server and the local supervisor.

Every service's process is started as `microshop serve`, and holds for its lifetime whatever
this module imports: `bench` and `load` import their load generators (and aiohttp, 10 MB) only
when they run.
"""

import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import orjson
import typer
import uvloop
from rich.table import Table

from microshop import __version__
from microshop.chaos import chaos_app
from microshop.common.identities import identity_environments, new_tokens
from microshop.common.settings import ConfigurationError, Storage, load_settings
from microshop.sandbox import SandboxError
from microshop.sandbox.blueprint import load_launches
from microshop.sandbox.cli import sandbox_app
from microshop.server import serve
from microshop.services import SERVICES, resolve
from microshop.services.db.repository import StorageUnavailable
from microshop.services.db.storage import migrate
from microshop.supervisor import Launch, StartError, Supervisor, run_until_signalled
from microshop.terminal import USAGE_ERROR, command_name, console, fail

app = typer.Typer(
    help="microshop: a microservices shop on your laptop and on Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
)

SERVICE_COLORS = {
    "api-gateway": "cyan",
    "payment-service": "magenta",
    "order-service": "yellow",
    "db": "green",
}
NAME_WIDTH = max(len(name) for name in SERVICES)


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
        fail(f"unknown service {service!r}; choose one of: {', '.join(SERVICES)}", code=USAGE_ERROR)
    try:
        settings = load_settings()
    except ConfigurationError as error:
        fail(str(error), code=USAGE_ERROR)
    serve(spec, settings)


db_app = typer.Typer(help="The db service's storage.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(chaos_app, name="chaos")


@db_app.command("migrate")
def migrate_command() -> None:
    """Bring the configured database's schema up to date (the db service also does at start-up)."""
    try:
        settings = load_settings()
    except ConfigurationError as error:
        fail(str(error), code=USAGE_ERROR)
    if settings.storage is Storage.MEMORY:
        fail(
            "memory storage is created afresh by each db service; there is nothing to migrate",
            code=USAGE_ERROR,
        )
    try:
        uvloop.run(migrate(settings))
    except (OSError, sqlite3.Error, StorageUnavailable) as error:
        fail(f"cannot migrate {settings.storage.value} storage: {error}", code=1)
    console.print(f"{settings.storage.value} storage is up to date")


@app.command("bench")
def bench_command(
    url: Annotated[str, typer.Option(help="The gateway to load.")] = "http://127.0.0.1:3000",
    concurrency: Annotated[int, typer.Option(help="Clients placing orders at once.", min=1)] = 16,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to place orders for (default 10).", min=0.1)
    ] = None,
    requests: Annotated[
        int | None, typer.Option(help="Orders to place, instead of a duration.", min=1)
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the results to this JSON file.")
    ] = None,
    verify: Annotated[
        bool, typer.Option(help="Read every order back afterwards and count the lost ones.")
    ] = True,
) -> None:
    """Place orders through the gateway, then read them all back: throughput, latency, losses."""
    from microshop.bench import progress_bar, run_bench

    if duration is None and requests is None:
        duration = 10.0
    with progress_bar() as progress:
        result = uvloop.run(run_bench(url, concurrency, requests, duration, progress, verify))
    table = Table(title=f"{result.orders} orders from {concurrency} clients to {url}")
    for column in ("orders/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "lost"):
        table.add_column(column, justify="right")
    latency = result.latency_ms
    table.add_row(
        f"{result.orders_per_second:,.0f}",
        f"{latency['p50']:.2f}",
        f"{latency['p90']:.2f}",
        f"{latency['p99']:.2f}",
        f"{latency['max']:.2f}",
        ", ".join(f"{kind}: {count}" for kind, count in result.errors.items()) or "0",
        str(result.lost),
    )
    console.print(table)
    if json_file is not None:
        json_file.write_bytes(orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2))
    if result.lost:
        fail(f"{result.lost} acknowledged orders are missing from the list", code=1)


@app.command("load")
def load_command(
    url: Annotated[str, typer.Option(help="The gateway to visit.")] = "http://127.0.0.1:3000",
    rate: Annotated[float, typer.Option(help="Visits started per second.", min=0.01)] = 5.0,
    duration: Annotated[
        float, typer.Option(help="Seconds to run; 0 runs until stopped.", min=0)
    ] = 0.0,
    mix: Annotated[
        str, typer.Option(help="Weight of each flow: browse, place (an order), view (one order).")
    ] = "browse=3,place=2,view=2",
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the results to this JSON file.")
    ] = None,
) -> None:
    """Visit the shop at a steady rate until stopped: traffic for dashboards and chaos."""
    from microshop.load import parse_mix, run_with_display

    try:
        flows = parse_mix(mix)
    except ValueError as error:
        fail(f"--mix: {error}", code=USAGE_ERROR)
    report = uvloop.run(run_with_display(url, rate, duration, flows, console))
    console.print(report.table(rate))
    if json_file is not None:
        json_file.write_bytes(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2))


def with_identities(launches: dict[str, Launch]) -> dict[str, Launch]:
    """Every service's launch with a new identity's variables, under what a blueprint sets."""
    identities = identity_environments(new_tokens())
    return {
        name: Launch(launch.command, launch.directory, {**identities[name], **launch.environment})
        for name in SERVICES
        for launch in [launches.get(name, Launch())]
    }


@app.command("identities")
def identities_command(
    directory: Annotated[
        Path, typer.Argument(help="Where to write SERVICE.env, one file per service.")
    ],
) -> None:
    """Make a new identity for every service: its own token and its callees' digests of the tokens.

    Each file holds one service's variables and nothing of another's: give it to that service
    only (a Kubernetes Secret each, or `--env-file`), and delete the files once they are in place.
    """
    paths = {name: directory / f"{name}.env" for name in SERVICES}
    existing = [str(path) for path in paths.values() if path.exists()]
    if existing:
        fail(f"{', '.join(existing)}: identities are never overwritten, remove them first", code=1)
    directory.mkdir(parents=True, exist_ok=True)
    for name, environment in identity_environments(new_tokens()).items():
        path = paths[name]
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.writelines(f"{key}={value}\n" for key, value in environment.items())
        console.print(
            f"kubectl create secret generic microshop-identity-{name} --from-env-file={path}",
            highlight=False,
            soft_wrap=True,
        )


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
        Storage,
        typer.Option(
            help="sqlite keeps data; memory loses it on stop.", envvar="MICROSHOP_STORAGE"
        ),
    ] = Storage.SQLITE,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where sqlite data lives.", envvar="MICROSHOP_DATA_DIR")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(help="A postgresql:// URL: the db service stores there instead of sqlite."),
    ] = None,
    state_file: Annotated[
        Path | None,
        typer.Option(help="Write where each service runs (pids, ports) to this JSON file."),
    ] = None,
    blueprint: Annotated[
        Path | None,
        typer.Option(help="A sandbox blueprint (JSON): services run by other commands."),
    ] = None,
    internal_auth: Annotated[
        bool,
        typer.Option(
            help="Give each service a new identity of its own for this run: internal services "
            "then take only their callers' calls, each on its own routes."
        ),
    ] = False,
) -> None:
    """Start all four services on 127.0.0.1 and keep them running until Ctrl-C."""
    environment = {"MICROSHOP_STORAGE": storage.value}
    flags = {"storage": "--storage"}  # the settings given as options, named as typed
    if data_dir is not None:
        environment["MICROSHOP_DATA_DIR"] = str(data_dir.resolve())
        flags["data_dir"] = "--data-dir"
    if database is not None:
        environment["MICROSHOP_DATABASE_URL"] = database
        flags["database_url"] = "--database"
    if console.is_terminal and "MICROSHOP_LOG_FORMAT" not in os.environ:
        environment["MICROSHOP_LOG_FORMAT"] = "console"
    try:
        load_settings(
            flags,
            **{key.removeprefix("MICROSHOP_").lower(): value for key, value in environment.items()},
        )
    except ConfigurationError as error:
        fail(str(error), code=USAGE_ERROR)
    try:
        launches = load_launches(blueprint) if blueprint is not None else {}
    except SandboxError as error:
        fail(str(error), code=USAGE_ERROR)
    if internal_auth:
        if "MICROSHOP_INTERNAL_TOKEN" in os.environ:
            fail(
                "--internal-auth gives each service its own identity: unset "
                "MICROSHOP_INTERNAL_TOKEN, the token shared by all",
                code=USAGE_ERROR,
            )
        launches = with_identities(launches)
    supervisor = Supervisor(base_port, environment, service_line_printer(), state_file, launches)
    console.print(
        f"starting {', '.join(SERVICES)} on 127.0.0.1, each once the ones it calls are up",
        highlight=False,
    )

    def announce() -> None:
        console.print(
            f"\n[bold green]microshop is up:[/] {supervisor.gateway_url}  (Ctrl-C stops it)",
            highlight=False,
        )
        command = command_name()
        if command != "microshop":
            activate = Path(command).parent / "activate"
            on_path = f" (`source {activate}` puts it on PATH)" if activate.is_file() else ""
            console.print(f"the command line is {command}{on_path}", highlight=False)
        console.print()

    try:
        uvloop.run(run_until_signalled(supervisor, announce))
    except StartError as error:
        fail(str(error), code=1)
    console.print("microshop stopped")


if __name__ == "__main__":
    sys.exit(app())
