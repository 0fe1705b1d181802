"""`microshop sandbox ...`: create a whole shop, run tests against it, delete it."""

import contextlib
import getpass
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from microshop.common.app import create_app
from microshop.common.logs import configure_logging
from microshop.common.settings import ConfigurationError, Storage, load_settings
from microshop.sandbox import (
    Backend,
    CreateOptions,
    Health,
    SandboxError,
    SandboxStatus,
    UnknownSandbox,
    lifecycle,
    processes,
)
from microshop.sandbox.blueprint import Blueprint
from microshop.sandbox.reservations import describe_seconds, parse_duration
from microshop.sandbox.server import SandboxServer, ServerConfig
from microshop.sandbox.state import (
    HOME_VARIABLE,
    SandboxDirectory,
    every_sandbox,
    find,
    home,
    new_name,
    new_token,
)
from microshop.server import run
from microshop.services import SERVICES
from microshop.terminal import USAGE_ERROR, console, error_console, fail

sandbox_app = typer.Typer(
    help="Whole shops on demand: create one, run tests against it, delete it.",
    no_args_is_help=True,
)

DEFAULT_DURATION = "1h"
HEALTH_COLORS = {
    Health.READY: "green",
    Health.STARTING: "yellow",
    Health.UNHEALTHY: "yellow",
    Health.DEAD: "red",
}


class ProgressReporter:
    """Shows each step of `create` as a spinner that turns into a tick."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def begin(self, step: str) -> None:
        self.tasks[step] = self.progress.add_task(step, total=1)

    def finish(self, step: str) -> None:
        self.progress.update(self.tasks[step], completed=1)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP interrupt like ^C does, so a killed `create` still cleans up."""

    def interrupt(signal_number: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {
        number: signal.signal(number, interrupt) for number in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@sandbox_app.command("create")
def create_command(
    name: Annotated[str | None, typer.Argument(help="Default: sb-<random>.")] = None,
    backend: Annotated[Backend, typer.Option(help="Where the sandbox runs.")] = Backend.LOCAL,
    database: Annotated[
        Storage | None,
        typer.Option(
            help="Local default: sqlite. Kubernetes default: what the manifests use.",
            show_default=False,
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="postgresql://... for --database postgresql (local); "
            "default: $MICROSHOP_DATABASE_URL."
        ),
    ] = None,
    base_port: Annotated[
        int | None,
        typer.Option(
            help="Local: the gateway's port (others follow). Kubernetes: the port-forward's. "
            "Default: free ones.",
            min=1,
            max=65530,
        ),
    ] = None,
    manifests: Annotated[
        Path | None,
        typer.Option(
            help="Kubernetes: the Kustomize directory. Default: deploy/k8s/overlays/local.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every service to be ready.", min=1)
    ] = 120.0,
    duration: Annotated[
        str,
        typer.Option(
            help="How long the sandbox lasts before it is torn down by itself: 90s, 30m, 2h.",
            envvar="MICROSHOP_SANDBOX_DURATION",
        ),
    ] = DEFAULT_DURATION,
    blueprint: Annotated[
        Path | None,
        typer.Option(
            help='JSON: services from elsewhere, {"services": {"order-service": {"checkout": '
            '"../branch"}}}; see docs/sandboxes.md.',
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Create a sandbox and return once every service in it is ready (or fail, leaving nothing)."""
    try:
        seconds = parse_duration(duration)
        services = read_blueprint(blueprint) if blueprint is not None else None
    except (ValueError, SandboxError) as error:
        fail(str(error), code=USAGE_ERROR)
    if database_url is not None:
        if database not in (None, Storage.POSTGRESQL):
            fail("--database-url goes with --database postgresql", code=USAGE_ERROR)
        database = Storage.POSTGRESQL
    if backend is Backend.LOCAL:
        if manifests is not None:
            fail("--manifests is for --backend kubernetes", code=USAGE_ERROR)
        database = database or Storage.SQLITE
    elif database_url is not None:
        fail(
            "--database-url is for --backend local; on Kubernetes the manifests say",
            code=USAGE_ERROR,
        )
    sandbox_name = name or new_name()
    options = CreateOptions(
        database,
        database_url,
        base_port,
        manifests,
        timeout,
        duration=seconds,
        owner=getpass.getuser(),
        blueprint=services,
    )
    started = time.monotonic()
    try:
        with (
            signals_interrupt(),
            Progress(
                SpinnerColumn(finished_text="[green]✓[/]"),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=error_console,
            ) as progress,
        ):
            error_console.print(f"creating sandbox [bold]{sandbox_name}[/] ({backend})")
            sandbox = lifecycle.create(sandbox_name, backend, options, ProgressReporter(progress))
    except lifecycle.CleanupError as error:
        fail(str(error), code=1)
    except SandboxError as error:
        fail(f"{error}\nsandbox {sandbox_name} was not created; nothing was left behind", code=1)
    except KeyboardInterrupt:
        fail(f"interrupted; sandbox {sandbox_name} was deleted", code=130)
    console.print(
        f"sandbox [bold]{sandbox.name}[/] is ready in {time.monotonic() - started:.1f} s: "
        f"{sandbox.gateway_url}",
        highlight=False,
        soft_wrap=True,
    )
    error_console.print(
        f"  run tests in it: microshop sandbox exec {sandbox.name} -- pytest tests/e2e\n"
        f"  delete it:       microshop sandbox delete {sandbox.name}",
        highlight=False,
        soft_wrap=True,
    )


def read_blueprint(path: Path) -> Blueprint:
    try:
        return Blueprint.model_validate_json(path.read_text())
    except (OSError, ValueError) as error:
        raise SandboxError(f"bad blueprint {path}: {error}") from None


def time_left(directory: SandboxDirectory) -> str:
    reservation = directory.load_reservation()
    return describe_seconds(reservation.seconds_left()) if reservation else "-"


def health_text(sandbox: SandboxStatus) -> str:
    return f"[{HEALTH_COLORS[sandbox.health]}]{sandbox.health}[/]"


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@sandbox_app.command("list")
def list_command() -> None:
    """Every sandbox, with whether it is still healthy."""
    directories = every_sandbox()
    if not directories:
        console.print("no sandboxes")
        return
    table = Table("name", "backend", "status", "gateway", "database", "age", "time left", "problem")
    for column in table.columns[:-1]:
        column.no_wrap = True
    for directory in directories:
        sandbox = lifecycle.status(directory)
        record = directory.load()
        table.add_row(
            sandbox.name,
            sandbox.backend,
            health_text(sandbox),
            sandbox.gateway_url or "",
            str(record.database or "") if record else "",
            age(time.time() - record.created_at) if record else "",
            time_left(directory),
            escape(sandbox.problem or ""),
        )
    console.print(table)


@sandbox_app.command("status")
def status_command(name: str) -> None:
    """One sandbox's services; exits 1 unless every one is ready."""
    try:
        sandbox = lifecycle.status(find(name))
    except SandboxError as error:
        fail(str(error), code=1)
    console.print(
        f"sandbox [bold]{sandbox.name}[/] ({sandbox.backend}) is {health_text(sandbox)}"
        + (f": {escape(sandbox.problem)}" if sandbox.problem else ""),
        highlight=False,
    )
    if sandbox.gateway_url:
        console.print(f"gateway: {sandbox.gateway_url}", highlight=False)
    console.print(f"time left: {time_left(find(name))}", highlight=False)
    if sandbox.services:
        table = Table("service", "status", "pid", "url", "from")
        for service in sandbox.services:
            color = "green" if service.ready else "red"
            table.add_row(
                service.name,
                f"[{color}]{service.detail}[/]",
                str(service.pid or ""),
                service.url or "",
                escape(service.override or "default"),
            )
        console.print(table)
    if sandbox.health is not Health.READY:
        raise typer.Exit(1)


@sandbox_app.command(
    "exec",
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def exec_command(
    name: str,
    command: Annotated[list[str], typer.Argument(help="The command, after `--`.")],
) -> None:
    """Run a command with MICROSHOP_GATEWAY_URL and the other URLs of the sandbox set."""
    if command and command[0] == "--":  # Click keeps it once it stops reading options
        command = command[1:]
    if not command:
        fail("no command given: microshop sandbox exec NAME -- COMMAND...", code=USAGE_ERROR)
    try:
        environment = lifecycle.environment(find(name))
    except SandboxError as error:
        fail(str(error), code=1)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, {**os.environ, **environment})
    except OSError as error:
        fail(f"cannot run {command[0]}: {error.strerror}", code=127)


@sandbox_app.command("logs")
def logs_command(
    name: str,
    service: Annotated[str | None, typer.Argument(help="One service; default: all.")] = None,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines.", min=0)] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
) -> None:
    """What the sandbox's services printed; one service's lines without their prefix."""
    if service is not None and service not in SERVICES:
        fail(f"unknown service {service!r}; choose one of: {', '.join(SERVICES)}", code=USAGE_ERROR)
    try:
        lines = lifecycle.logs(find(name), service, tail, follow)
        with contextlib.suppress(KeyboardInterrupt):
            for line in lines:
                sys.stdout.write(line + "\n")
                if follow:
                    sys.stdout.flush()
    except SandboxError as error:
        fail(str(error), code=1)
    except BrokenPipeError:  # `| head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@sandbox_app.command("delete")
def delete_command(
    name: Annotated[str | None, typer.Argument(help="The sandbox to delete.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Delete every sandbox.")] = False,
    if_exists: Annotated[
        bool, typer.Option("--if-exists", help="No error when there is no such sandbox (CI).")
    ] = False,
) -> None:
    """Stop everything a sandbox runs and forget it; dead or half-created ones too."""
    if (name is None) == (not every):
        fail("name one sandbox, or pass --all", code=USAGE_ERROR)
    try:
        directories = every_sandbox() if every else [find(name or "")]
    except SandboxError as error:
        if not if_exists:
            fail(str(error), code=1)
        console.print(f"no sandbox named {name}", highlight=False)
        return
    failures = 0
    for directory in directories:
        try:
            with error_console.status(f"deleting {directory.name}"):
                warnings = lifecycle.delete(directory)
        except UnknownSandbox as error:
            console.print(str(error), highlight=False)
            continue
        except SandboxError as error:
            failures += 1
            error_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
            continue
        for warning in warnings:
            error_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
        console.print(f"deleted sandbox {directory.name}", highlight=False)
    if every and not directories:
        console.print("no sandboxes")
    if failures:
        raise typer.Exit(1)


@sandbox_app.command("extend")
def extend_command(
    name: str,
    duration: Annotated[str, typer.Argument(help="How much longer: 90s, 30m, 2h.")],
) -> None:
    """Move a sandbox's end time later."""
    try:
        seconds = parse_duration(duration)
    except ValueError as error:
        fail(str(error), code=USAGE_ERROR)
    try:
        reservation = lifecycle.extend(find(name), seconds, longest=None)
    except SandboxError as error:
        fail(str(error), code=1)
    console.print(
        f"sandbox {name} now ends in {describe_seconds(reservation.seconds_left())}",
        highlight=False,
    )


@sandbox_app.command("reap", hidden=True)
def reap_command(name: str) -> None:
    """Started by `create` next to each sandbox: tears it down at its end time."""
    token = os.environ.get(processes.TOKEN_VARIABLE, "")
    try:
        lifecycle.reap(find(name), token)
    except UnknownSandbox:
        return  # deleted before its reaper got going: nothing left to do
    except SandboxError as error:
        fail(str(error), code=1)


TOKEN_VARIABLE = "MICROSHOP_SANDBOX_SERVER_TOKEN"
TOKEN_FILE_NAME = "server-token"


def server_token(token_file: Path | None, state_dir: Path) -> str:
    """The token from the file, the environment, or else a new one kept in the state directory.
    Taken out of the environment, so no sandbox (nor a blueprint's command) ever sees it."""
    from_environment = os.environ.pop(TOKEN_VARIABLE, "").strip()
    if token_file is not None:
        token = token_file.read_text().strip()
        if not token:
            fail(f"{token_file} is empty", code=USAGE_ERROR)
        return token
    if from_environment:
        return from_environment
    kept = state_dir / TOKEN_FILE_NAME
    if not kept.exists():
        descriptor = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(new_token() + "\n")
    error_console.print(f"the API's token is in {kept}", highlight=False)
    return kept.read_text().strip()


@sandbox_app.command("serve")
def serve_command(
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 3100,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the server keeps its sandboxes (its MICROSHOP_HOME); "
            "default: $MICROSHOP_HOME."
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help=f"A file holding the API's bearer token; default: ${TOKEN_VARIABLE}, "
            f"else a new one in STATE_DIR/{TOKEN_FILE_NAME}.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    backend: Annotated[
        list[Backend] | None, typer.Option(help="Backends offered (repeat); default: local.")
    ] = None,
    default_duration: Annotated[
        str, typer.Option(help="How long a sandbox lasts when the request does not say.")
    ] = "1h",
    max_duration: Annotated[
        str, typer.Option(help="The longest a sandbox may last, extensions included.")
    ] = "8h",
    quota: Annotated[int, typer.Option(help="Sandboxes at once.", min=1, max=1000)] = 10,
    timeout: Annotated[
        float, typer.Option(help="Seconds a sandbox may take to be ready.", min=1)
    ] = 120.0,
) -> None:
    """Serve sandboxes through a REST API and a web page (docs/sandboxes.md, "The server")."""
    try:
        default_seconds = parse_duration(default_duration)
        max_seconds = parse_duration(max_duration)
        settings = load_settings(host=host, port=port)
    except (ValueError, ConfigurationError) as error:
        fail(str(error), code=USAGE_ERROR)
    if default_seconds > max_seconds:
        fail("--default-duration is longer than --max-duration", code=USAGE_ERROR)
    directory = (state_dir or home()).expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[HOME_VARIABLE] = str(directory)  # the sandboxes, and their reapers, live there
    config = ServerConfig(
        token=server_token(token_file, directory),
        backends=frozenset(backend or [Backend.LOCAL]),
        default_duration=default_seconds,
        max_duration=max_seconds,
        quota=quota,
        create_timeout=timeout,
    )
    configure_logging(SandboxServer.name, settings.log_format, settings.log_level)
    run(create_app(SandboxServer(settings, config)), settings)
