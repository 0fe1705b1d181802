"""The sandbox server: `microshop sandbox serve`, sandboxes through a REST API and a web page.

A thin layer over `lifecycle`, as the command line is: the sandboxes live in the server's state
directory exactly as the command line keeps them (it is the server's MICROSHOP_HOME), so a
restarted server finds them again, and `microshop sandbox list` with that home shows them too.
Creating answers at once (202) while the shop comes up in a worker thread; a reaper per sandbox
ends it on time, and the server's sweep catches what a reaper missed and what a killed server left
half created.
"""

import asyncio
import logging
import shlex
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from microshop.common.app import Service
from microshop.common.errors import ExceptionHandler, Problem, problem_response
from microshop.common.guards import QUIET_PATHS, BearerTokenGuard, Guard
from microshop.common.inputs import read_model, read_query
from microshop.common.openapi import ApiRoute
from microshop.common.responses import PAGE_HEADERS, JSONResponse
from microshop.common.settings import Settings, Storage
from microshop.sandbox import (
    Backend,
    CreateOptions,
    NameTaken,
    SandboxError,
    SandboxStatus,
    SilentReporter,
    UnknownSandbox,
    lifecycle,
)
from microshop.sandbox.blueprint import Blueprint
from microshop.sandbox.reservations import describe_seconds, parse_duration
from microshop.sandbox.state import (
    NAME_PATTERN,
    SandboxDirectory,
    SandboxRecord,
    every_sandbox,
    find,
    new_name,
)
from microshop.services import SERVICES

logger = logging.getLogger("microshop.sandbox.server")

PACKAGE = "microshop.sandbox"
SWEEP_SECONDS = 5.0
MAX_WAIT_SECONDS = 600.0
MAX_LOG_LINES = 10_000
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
OPEN_PATHS = QUIET_PATHS | set(PAGE_FILES) | {"/openapi.json", "/docs"}
"""Without the token: probes, the API's description, and the page (which asks for the token)."""


@dataclass(frozen=True)
class ServerConfig:
    """What `microshop sandbox serve` was told."""

    token: str
    backends: frozenset[Backend]
    default_duration: float
    max_duration: float
    quota: int
    """Sandboxes at once, counting those being created."""
    create_timeout: float = 120.0


def seconds(value: Any) -> Any:
    """A duration as seconds (a number) or text (`30m`); pydantic reports what is wrong."""
    return parse_duration(value) if isinstance(value, str) else value


Duration = Annotated[float, Field(gt=0, description="Seconds, or text like 90s, 30m, 2h.")]


class CreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, pattern=NAME_PATTERN.pattern)
    """Default: sb-<random>."""
    backend: Backend = Backend.LOCAL
    database: Storage | None = None
    """Local default: sqlite. Kubernetes default: what the manifests use."""
    duration: Duration | None = None
    """Default: the server's default duration."""
    owner: str = Field(default="", max_length=200)
    blueprint: Blueprint | None = None

    _duration_text = field_validator("duration", mode="before")(seconds)


class ExtendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration: Duration

    _duration_text = field_validator("duration", mode="before")(seconds)


class CreateQuery(BaseModel):
    wait: Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)] = 0
    """Seconds to wait for the sandbox to be ready before answering (202 if it is not yet)."""


class LogsQuery(BaseModel):
    tail: Annotated[int, Field(ge=0, le=MAX_LOG_LINES)] = 200


class ServiceView(BaseModel):
    name: str
    ready: bool
    detail: str
    url: str | None
    override: str | None
    """Where the service comes from when a blueprint replaced it; null: this installation."""


class SandboxView(BaseModel):
    name: str
    backend: str
    status: str
    owner: str
    database: str | None
    gateway_url: str | None
    created_at: str | None
    ends_at: str | None
    seconds_left: int | None
    time_left: str | None
    services: list[ServiceView]
    overridden: list[str]
    problem: str | None


class SandboxList(BaseModel):
    sandboxes: list[SandboxView]
    quota: int
    backends: list[str]


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def view_of(directory: SandboxDirectory, sandbox: SandboxStatus) -> SandboxView:
    record: SandboxRecord | None = directory.load()
    reservation = directory.load_reservation()
    left = reservation.seconds_left() if reservation else None
    return SandboxView(
        name=sandbox.name,
        backend=sandbox.backend,
        status=sandbox.health,
        owner=record.owner if record else "",
        database=record.database if record and record.database else None,
        gateway_url=sandbox.gateway_url,
        created_at=iso(record.created_at) if record else None,
        ends_at=iso(reservation.ends_at) if reservation else None,
        seconds_left=int(left) if left is not None else None,
        time_left=describe_seconds(left) if left is not None else None,
        services=[
            ServiceView(
                name=service.name,
                ready=service.ready,
                detail=service.detail,
                url=service.url,
                override=service.override,
            )
            for service in sandbox.services
        ],
        overridden=sorted(record.overrides) if record else [],
        problem=sandbox.problem,
    )


def look(directory: SandboxDirectory) -> SandboxView:
    """The sandbox as the API shows it (blocking: it asks every service whether it is ready)."""
    return view_of(directory, lifecycle.status(directory))


def sandbox_named(request: Request) -> SandboxDirectory:
    try:
        return find(request.path_params["name"])
    except SandboxError:  # unknown, or a name no sandbox can have
        raise Problem(404, f"No sandbox is named {request.path_params['name']!r}.") from None


def page_file(name: str) -> bytes:
    return files(PACKAGE).joinpath("static", name).read_bytes()


class SandboxServer(Service):
    name = "sandbox-server"
    public = True

    def __init__(self, settings: Settings, config: ServerConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.workers = ThreadPoolExecutor(config.quota, thread_name_prefix="sandbox-create")
        self.creating: dict[str, Future[SandboxStatus]] = {}
        self.failures: dict[str, str] = {}
        """Why a creation failed, by name, until the name is used again or deleted."""
        self.cancelled: set[str] = set()
        self.sweeper: asyncio.Task[None] | None = None
        self.pages = {path: (page_file(name), kind) for path, (name, kind) in PAGE_FILES.items()}

    def routes(self) -> Sequence[BaseRoute]:
        return [
            *(Route(path, self.page, methods=["GET"]) for path in PAGE_FILES),
            ApiRoute(
                "/sandboxes",
                self.create_sandbox,
                methods=["POST"],
                summary="Create a sandbox: 202 and a Location to poll, or 201 once ready "
                "within ?wait=SECONDS",
                body=CreateRequest,
                query=CreateQuery,
                responses={201: SandboxView, 202: SandboxView, 409: None, 422: None, 429: None},
            ),
            ApiRoute(
                "/sandboxes",
                self.list_sandboxes,
                methods=["GET"],
                summary="Every sandbox with its status and time left",
                responses={200: SandboxList},
            ),
            ApiRoute(
                "/sandboxes/{name}",
                self.get_sandbox,
                methods=["GET"],
                summary="One sandbox: status, URLs, time left, each service's readiness",
                responses={200: SandboxView, 404: None, 410: None},
            ),
            ApiRoute(
                "/sandboxes/{name}",
                self.delete_sandbox,
                methods=["DELETE"],
                summary="Stop everything the sandbox runs and forget it",
                responses={204: None, 404: None},
            ),
            ApiRoute(
                "/sandboxes/{name}/extend",
                self.extend_sandbox,
                methods=["POST"],
                summary="Move the sandbox's end time later",
                body=ExtendRequest,
                responses={200: SandboxView, 404: None, 422: None},
            ),
            ApiRoute(
                "/sandboxes/{name}/logs/{service}",
                self.sandbox_logs,
                methods=["GET"],
                summary="One service's last log lines, as text",
                query=LogsQuery,
                responses={200: None, 404: None},
            ),
            ApiRoute(
                "/sandboxes/{name}/environment",
                self.sandbox_environment,
                methods=["GET"],
                summary="MICROSHOP_GATEWAY_URL and the other URLs, as shell assignments",
                responses={200: None, 404: None, 409: None},
            ),
        ]

    def guards(self) -> Sequence[Guard]:
        return [
            BearerTokenGuard(
                self.config.token,
                open_paths=OPEN_PATHS,
                refusal="Send the sandbox server's token as `Authorization: Bearer <token>`.",
            )
        ]

    def exception_handlers(self) -> Mapping[type[Exception], ExceptionHandler]:
        return {SandboxError: self.sandbox_error}

    async def sandbox_error(self, request: Request, exc: Exception) -> Response:
        """What the sandbox's state does not allow (not ready, nothing to extend...): 409."""
        status = 404 if isinstance(exc, UnknownSandbox) else 409
        return problem_response(Problem(status, str(exc)), request)

    async def start(self) -> None:
        await super().start()
        swept = await asyncio.to_thread(self.sweep)
        logger.info(
            "found %d sandbox(es) in the state directory; removed %d that were over",
            len(every_sandbox()),
            len(swept),
        )
        self.sweeper = asyncio.create_task(self.keep_sweeping())

    async def stop(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
        # Creations under way finish (within their timeout): a restart then finds them ready.
        await asyncio.to_thread(self.workers.shutdown, wait=True)
        await super().stop()

    async def keep_sweeping(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            await asyncio.to_thread(self.sweep)

    def sweep(self) -> list[str]:
        """Deletes the sandboxes whose end has passed and those a killed creator left behind."""
        removed = []
        for directory in every_sandbox():
            if directory.name in self.creating:
                continue
            try:
                if lifecycle.delete_if_over(directory):
                    removed.append(directory.name)
                    logger.info("sandbox %s is over: deleted", directory.name)
            except SandboxError as error:
                logger.warning("could not delete sandbox %s: %s", directory.name, error)
        return removed

    async def page(self, request: Request) -> Response:
        body, kind = self.pages[request.url.path]
        return Response(body, media_type=kind, headers=PAGE_HEADERS)

    async def create_sandbox(self, request: Request) -> Response:
        wait = read_query(request, CreateQuery).wait
        asked = await read_model(request, CreateRequest)
        if asked.backend not in self.config.backends:
            offered = ", ".join(sorted(self.config.backends))
            raise Problem(
                422, f"Backend {asked.backend} is not enabled on this server; it offers {offered}."
            )
        duration = asked.duration or self.config.default_duration
        if duration > self.config.max_duration:
            raise Problem(
                422,
                f"A sandbox may last at most {describe_seconds(self.config.max_duration)} "
                "on this server.",
            )
        if len(every_sandbox()) >= self.config.quota:
            raise Problem(
                429,
                f"This server runs at most {self.config.quota} sandboxes at once; "
                "delete one or try again later.",
                headers={"Retry-After": str(self.seconds_until_one_ends())},
            )
        name = asked.name or new_name()
        database = asked.database
        if asked.backend is Backend.LOCAL and database is None:
            database = Storage.SQLITE
        options = CreateOptions(
            database,
            timeout=self.config.create_timeout,
            duration=duration,
            owner=asked.owner,
            blueprint=asked.blueprint,
        )
        try:
            directory, record = lifecycle.begin(name, asked.backend, options)
        except NameTaken as error:
            raise Problem(409, str(error)) from None
        except SandboxError as error:
            raise Problem(422, f"Bad blueprint: {error}.") from None
        logger.info("creating sandbox %s (%s) for %s", name, asked.backend, asked.owner or "-")
        self.failures.pop(name, None)
        self.cancelled.discard(name)
        building = self.workers.submit(
            lifecycle.build, directory, record, options, SilentReporter()
        )
        self.creating[name] = building
        building.add_done_callback(lambda done: self.created(name, done))
        location = {"Location": f"/sandboxes/{name}"}
        if wait > 0:
            await asyncio.wait([asyncio.wrap_future(building)], timeout=wait)
            if building.done():
                failure = building.exception()
                if isinstance(failure, lifecycle.DeletedWhileCreating):
                    raise Problem(409, str(failure))
                if failure is not None:
                    raise Problem(
                        502, f"Sandbox {name} did not come up: {failure}", title="Sandbox failed"
                    )
                view = await asyncio.to_thread(look, directory)
                return JSONResponse(view.model_dump(), status_code=201, headers=location)
        view = await asyncio.to_thread(look, directory)
        return JSONResponse(view.model_dump(), status_code=202, headers=location)

    def created(self, name: str, building: Future[SandboxStatus]) -> None:
        """Runs in the worker thread once a creation is over, whichever way."""
        self.creating.pop(name, None)
        failure = building.exception()
        if failure is None:
            logger.info("sandbox %s is ready", name)
        elif name in self.cancelled:
            self.cancelled.discard(name)
        else:
            self.failures[name] = str(failure)
            logger.warning("sandbox %s did not come up: %s", name, failure)

    def seconds_until_one_ends(self) -> int:
        ends = [
            reservation.seconds_left()
            for directory in every_sandbox()
            if (reservation := directory.load_reservation()) is not None
        ]
        return max(1, int(min(ends, default=SWEEP_SECONDS)) + 1)

    async def list_sandboxes(self, request: Request) -> Response:
        views = await asyncio.to_thread(lambda: [look(each) for each in every_sandbox()])
        answer = SandboxList(
            sandboxes=views, quota=self.config.quota, backends=sorted(self.config.backends)
        )
        return JSONResponse(answer.model_dump())

    async def get_sandbox(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name in self.failures:
            raise Problem(410, f"Sandbox {name} did not come up: {self.failures[name]}")
        directory = sandbox_named(request)
        view = await asyncio.to_thread(look, directory)
        return JSONResponse(view.model_dump())

    async def delete_sandbox(self, request: Request) -> Response:
        name = request.path_params["name"]
        if self.failures.pop(name, None) is not None:
            return Response(status_code=204)
        directory = sandbox_named(request)
        if name in self.creating:
            self.cancelled.add(name)
        warnings = await asyncio.to_thread(lifecycle.delete, directory)
        for warning in warnings:
            logger.warning("sandbox %s: %s", name, warning)
        logger.info("deleted sandbox %s", name)
        return Response(status_code=204)

    async def extend_sandbox(self, request: Request) -> Response:
        directory = sandbox_named(request)
        asked = await read_model(request, ExtendRequest)
        try:
            await asyncio.to_thread(
                lifecycle.extend, directory, asked.duration, self.config.max_duration
            )
        except UnknownSandbox:
            raise
        except SandboxError as error:
            raise Problem(422, str(error)) from None
        view = await asyncio.to_thread(look, directory)
        return JSONResponse(view.model_dump())

    async def sandbox_logs(self, request: Request) -> Response:
        directory = sandbox_named(request)
        service = request.path_params["service"]
        if service not in SERVICES:
            raise Problem(404, f"No service {service!r}; the services are {', '.join(SERVICES)}.")
        tail = read_query(request, LogsQuery).tail
        lines = await asyncio.to_thread(
            lambda: list(lifecycle.logs(directory, service, tail, follow=False))
        )
        return PlainTextResponse("".join(f"{line}\n" for line in lines))

    async def sandbox_environment(self, request: Request) -> Response:
        directory = sandbox_named(request)
        variables = await asyncio.to_thread(lifecycle.environment, directory)
        return PlainTextResponse(
            "".join(f"{key}={shlex.quote(value)}\n" for key, value in sorted(variables.items()))
        )
