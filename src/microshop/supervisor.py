"""The local supervisor behind `microshop up`: four OS processes kept alive like a Deployment would.

Each service runs as `python -m microshop serve <name>` on 127.0.0.1; every output line is
prefixed with the service's name; a process that dies is started again after a growing pause; on
SIGINT or SIGTERM the services are stopped gateway first, so in-flight requests can finish.
"""

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import RequestError

from microshop.ports import port_holder, port_is_free
from microshop.services import (
    SERVICES,
    ServiceSpec,
    service_ports,
    service_urls,
    wiring_environment,
)

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
FIRST_RESTART_DELAY_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 10.0
STABLE_AFTER_SECONDS = 30.0
LOG_TAIL_LINES = 40

OutputSink = Callable[[str, list[str]], None]
"""Receives a service's name and the lines it printed."""
OUTPUT_CHUNK_BYTES = 64 * 1024


class StartError(Exception):
    """A service did not become ready; the message carries the end of its output."""


@dataclass(frozen=True)
class Launch:
    """How one service's process starts; by default `python -m microshop serve <name>` of this
    installation. A sandbox's blueprint replaces it with another command or checkout."""

    command: tuple[str, ...] | None = None
    directory: Path | None = None
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ManagedProcess:
    spec: ServiceSpec
    port: int
    environment: dict[str, str]
    launch: Launch = field(default_factory=Launch)
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    output_tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))
    pump: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Supervisor:
    def __init__(
        self,
        base_port: int,
        settings_environment: Mapping[str, str],
        output: OutputSink,
        state_file: Path | None = None,
        launches: Mapping[str, Launch] | None = None,
    ) -> None:
        ports = service_ports(base_port)
        urls = service_urls("127.0.0.1", ports)
        shared = {
            **os.environ,
            **settings_environment,
            **wiring_environment(urls),
            "MICROSHOP_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
        launches = launches or {}
        self.processes = {
            name: ManagedProcess(
                spec,
                ports[name],
                {**shared, "MICROSHOP_PORT": str(ports[name]), **launch.environment},
                launch,
            )
            for name, spec in SERVICES.items()
            for launch in [launches.get(name, Launch())]
        }
        self.output = output
        self.state_file = state_file
        self.started = False
        """Every service was ready once: from now on a service that exits is restarted."""
        self.stopping = asyncio.Event()

    @property
    def gateway_url(self) -> str:
        return self.processes["api-gateway"].url

    async def spawn(self, managed: ManagedProcess) -> None:
        command = managed.launch.command or (
            sys.executable,
            "-m",
            "microshop",
            "serve",
            managed.spec.name,
        )
        managed.process = await asyncio.create_subprocess_exec(
            *command,
            cwd=managed.launch.directory,
            env=managed.environment,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only the supervisor, which stops them in order
        )
        managed.started_at = time.monotonic()
        managed.pump = asyncio.create_task(self.pump_output(managed, managed.process))
        self.write_state()

    async def pump_output(
        self, managed: ManagedProcess, process: asyncio.subprocess.Process
    ) -> None:
        """Relays a service's lines as they come, a chunk at a time (a busy shop logs thousands)."""
        assert process.stdout is not None
        partial = b""
        while chunk := await process.stdout.read(OUTPUT_CHUNK_BYTES):
            *complete, partial = (partial + chunk).split(b"\n")
            lines = [line.decode(errors="replace").rstrip() for line in complete]
            managed.output_tail.extend(lines)
            self.output(managed.spec.name, lines)
        if partial:
            line = partial.decode(errors="replace")
            managed.output_tail.append(line)
            self.output(managed.spec.name, [line])

    async def wait_until(self, managed: ManagedProcess, client: Client, path: str) -> None:
        """Until the service answers `path` with 200; a StartError if it exits or takes too long."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.stopping.is_set():  # Ctrl-C while starting: stop waiting
                return
            process = managed.process
            if process is None or process.returncode is not None:
                if managed.pump is not None:
                    await managed.pump
                raise StartError(self.failure_report(managed, "exited during start-up"))
            with contextlib.suppress(RequestError, TimeoutError):
                async with asyncio.timeout(1):
                    response = await client.get(managed.url + path).build().send()
                if response.status == 200:
                    return
            await asyncio.sleep(0.05)
        raise StartError(
            self.failure_report(managed, f"not ready after {READY_TIMEOUT_SECONDS:g} s")
        )

    def failure_report(self, managed: ManagedProcess, what: str) -> str:
        tail = "\n".join(f"  {line}" for line in managed.output_tail)
        return f"{managed.spec.name} {what}. Its last output:\n{tail}"

    async def start(self) -> None:
        """Starts every service and returns once all are ready; stops them all if one is not."""
        self._check_ports_are_free()
        try:
            async with ClientBuilder().build() as client:
                # Each after the services it calls are up, so that none starts by failing to
                # reach another.
                for managed in self.processes.values():
                    await self.spawn(managed)
                    await self.wait_until(managed, client, "/healthz")
                for managed in self.processes.values():
                    await self.wait_until(managed, client, "/readyz")
            self.started = True
            self.write_state()
        except BaseException:
            await self.stop()
            raise

    def _check_ports_are_free(self) -> None:
        """Before anything starts, so that a second `microshop up` (or any other program on one
        of the ports) is a short clear error rather than four services failing to start."""
        taken = [
            f"port {managed.port} ({name}) is in use by "
            + (port_holder(managed.port) or "another program")
            for name, managed in self.processes.items()
            if not port_is_free(managed.port)
        ]
        if taken:
            raise StartError(
                "\n".join(
                    [
                        *taken,
                        "Stop what holds them (another `microshop up`?), or start on other ports "
                        "with --base-port.",
                    ]
                )
            )

    async def watch(self) -> None:
        """Restarts any service that dies, until `stopping` is set."""
        waiters = {
            name: asyncio.create_task(self.keep_alive(managed))
            for name, managed in self.processes.items()
        }
        await self.stopping.wait()
        for task in waiters.values():
            task.cancel()
        await asyncio.gather(*waiters.values(), return_exceptions=True)

    async def keep_alive(self, managed: ManagedProcess) -> None:
        delay = FIRST_RESTART_DELAY_SECONDS
        while not self.stopping.is_set():
            assert managed.process is not None
            code = await managed.process.wait()
            if self.stopping.is_set():
                return
            if time.monotonic() - managed.started_at > STABLE_AFTER_SECONDS:
                delay = FIRST_RESTART_DELAY_SECONDS
            self.output(managed.spec.name, [f"exited with code {code}; restarting in {delay:g} s"])
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY_SECONDS)
            managed.restarts += 1
            await self.spawn(managed)

    async def stop(self) -> None:
        """SIGTERM to each service, callers first, so no request is cut off half-way."""
        self.stopping.set()
        for managed in reversed(list(self.processes.values())):
            await self.stop_one(managed)
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)

    async def stop_one(self, managed: ManagedProcess) -> None:
        process = managed.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            self.output(managed.spec.name, ["did not stop in time; killing it"])
            process.kill()
            await process.wait()
        if managed.pump is not None:
            await managed.pump

    def write_state(self) -> None:
        """Where each service runs, for tools and tests that need to find or signal one."""
        if self.state_file is None:
            return
        state = {
            "supervisor_pid": os.getpid(),
            "started": self.started,
            "gateway_url": self.gateway_url,
            "services": {
                name: {
                    "pid": managed.process.pid if managed.process else None,
                    "port": managed.port,
                    "url": managed.url,
                    "restarts": managed.restarts,
                }
                for name, managed in self.processes.items()
            },
        }
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2))
        temporary.replace(self.state_file)


async def run_until_signalled(supervisor: Supervisor, on_ready: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, supervisor.stopping.set)
    await supervisor.start()
    if not supervisor.stopping.is_set():
        on_ready()
    await supervisor.watch()
    await supervisor.stop()
