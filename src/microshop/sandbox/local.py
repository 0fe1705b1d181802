"""The local backend: a sandbox is one detached `microshop up` with its own ports, data and logs.

`microshop up` already starts the four services, restarts any that dies, records their pids and
ports in a state file, and stops them all cleanly on SIGTERM; this module only gives each sandbox
free ports and a directory, starts it in its own session (so it outlives the command line) and
watches it from the outside.
"""

import json
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from microshop.common.settings import Storage
from microshop.ports import busy_ports
from microshop.sandbox import (
    CreateOptions,
    Health,
    Reporter,
    SandboxError,
    SandboxStatus,
    ServiceStatus,
    processes,
)
from microshop.sandbox.blueprint import save_launches
from microshop.sandbox.state import (
    Phase,
    SandboxDirectory,
    SandboxRecord,
    every_sandbox,
    exclusive_lock,
    ports_lock,
)
from microshop.services import (
    GATEWAY,
    SERVICES,
    service_ports,
    service_urls,
    wiring_environment,
)
from microshop.supervisor import LOG_TAIL_LINES

SUPERVISOR_STOP_SECONDS = 30.0
"""`microshop up` stops the services one after another, each finishing its requests first."""
PORT_RELEASE_SECONDS = 5.0
DATABASE_URL_VARIABLE = "MICROSHOP_DATABASE_URL"


class LocalBackend:
    def create(
        self,
        directory: SandboxDirectory,
        record: SandboxRecord,
        options: CreateOptions,
        reporter: Reporter,
    ) -> None:
        environment = supervisor_environment(record, options)
        with exclusive_lock(ports_lock()):  # sandboxes created at once choose different ports
            base_port = options.base_port or choose_base_port()
            ports = service_ports(base_port)
            busy = busy_ports(ports.values())
            if busy:
                raise SandboxError(
                    f"port {', '.join(map(str, busy))} is in use; the sandbox needs "
                    f"{', '.join(map(str, ports.values()))} (or leave out --base-port)"
                )
            record.base_port, record.ports = base_port, ports
            directory.save(record)
        if options.blueprint is not None:
            save_launches(options.blueprint, directory.blueprint_file)
        reporter.begin("supervisor")
        with directory.log_file.open("ab") as log:
            supervisor = subprocess.Popen(
                supervisor_command(directory, record),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,  # outlives this command and never gets its Ctrl-C
            )
        record.supervisor_pid = supervisor.pid
        directory.save(record)  # before waiting: from now on `delete` can find it
        reporter.finish("supervisor")
        wait_until_ready(directory, record, supervisor, reporter, options.timeout)
        record.phase = Phase.READY
        directory.save(record)

    def status(self, directory: SandboxDirectory, record: SandboxRecord) -> SandboxStatus:
        urls = service_urls("127.0.0.1", record.ports)
        pids = service_pids(directory)
        services = []
        for name in SERVICES:
            pid = pids.get(name)
            alive = pid is not None and processes.carries_token(pid, record.token)
            ready = alive and name in urls and processes.answers_ready(urls[name], timeout=0.5)
            detail = "ready" if ready else ("not ready" if alive else "not running")
            services.append(
                ServiceStatus(name, ready, urls.get(name), pid if alive else None, detail)
            )
        health, problem = judge(record, services)
        return SandboxStatus(
            record.name, record.backend, health, urls.get(GATEWAY.name), services, problem
        )

    def delete(self, directory: SandboxDirectory, record: SandboxRecord) -> list[str]:
        """Stops the supervisor (which stops the services), then anything else with the token."""
        known = list(service_pids(directory).values())
        if record.supervisor_pid is not None:
            known.insert(0, record.supervisor_pid)
        survivors = processes.stop_all_with_token(record.token, known, SUPERVISOR_STOP_SECONDS)
        if survivors:
            raise SandboxError(
                f"could not stop process {', '.join(map(str, survivors))} of sandbox {record.name}"
            )
        busy = processes.wait_until_free(record.ports.values(), PORT_RELEASE_SECONDS)
        return [f"port {port} is still in use, by another program" for port in busy]

    def environment(self, directory: SandboxDirectory, record: SandboxRecord) -> dict[str, str]:
        urls = service_urls("127.0.0.1", record.ports)
        return {
            "MICROSHOP_GATEWAY_URL": urls[GATEWAY.name],
            **wiring_environment(urls),
        }

    def logs(
        self,
        directory: SandboxDirectory,
        record: SandboxRecord,
        service: str | None,
        tail: int | None,
        follow: bool,
    ) -> Iterator[str]:
        return log_lines(directory.log_file, service, tail, follow)


def supervisor_environment(record: SandboxRecord, options: CreateOptions) -> dict[str, str]:
    """The user's environment, marked with the sandbox's token, and the chosen database."""
    environment = {
        **os.environ,
        **processes.token_environment(record.token),
        "MICROSHOP_SANDBOX": record.name,
        "PYTHONUNBUFFERED": "1",
    }
    database_url = environment.pop(DATABASE_URL_VARIABLE, None)
    if record.database is Storage.POSTGRESQL:
        url = options.database_url or database_url
        if not url:
            raise SandboxError(
                "--database postgresql needs the database's URL: pass "
                "--database-url postgresql://USER:PASSWORD@HOST:5432/NAME "
                f"or set {DATABASE_URL_VARIABLE} (give each sandbox its own database)"
            )
        # In the environment, not on the command line, where `ps` would show its password.
        environment[DATABASE_URL_VARIABLE] = url
    return environment


def supervisor_command(directory: SandboxDirectory, record: SandboxRecord) -> list[str]:
    assert record.base_port is not None
    storage = "memory" if record.database is Storage.MEMORY else "sqlite"
    blueprint = (
        ["--blueprint", str(directory.blueprint_file)] if directory.blueprint_file.exists() else []
    )
    return [
        sys.executable,
        "-m",
        "microshop",
        "up",
        "--base-port",
        str(record.base_port),
        "--data-dir",
        str(directory.data_dir),
        "--state-file",
        str(directory.supervisor_state_file),
        "--storage",
        storage,
        *blueprint,
    ]


def choose_base_port() -> int:
    """Free ports that no other sandbox has claimed (one may be starting and not bound yet)."""
    taken: set[int] = set()
    for other in every_sandbox():
        other_record = other.load()
        if other_record is not None:
            taken.update(other_record.ports.values())
            if other_record.forward_port is not None:
                taken.add(other_record.forward_port)
    offsets = [spec.port_offset for spec in SERVICES.values()]
    return processes.free_port_block(offsets, taken)


def wait_until_ready(
    directory: SandboxDirectory,
    record: SandboxRecord,
    supervisor: "subprocess.Popen[bytes]",
    reporter: Reporter,
    timeout: float,
) -> None:
    """Returns when every service answers /readyz; raises with the failing service's output."""
    urls = service_urls("127.0.0.1", record.ports)
    pending = list(SERVICES)
    for name in pending:
        reporter.begin(name)
    deadline = time.monotonic() + timeout
    while pending:
        code = supervisor.poll()
        if code is not None:
            raise SandboxError(
                f"the sandbox's `microshop up` exited with code {code}. The end of its log:\n"
                + indent(log_tail(directory.log_file, None))
            )
        for name in list(pending):
            if processes.answers_ready(urls[name], timeout=0.5):
                pending.remove(name)
                reporter.finish(name)
        if pending and time.monotonic() > deadline:
            failing = pending[0]
            raise SandboxError(
                f"{failing} is not ready after {timeout:g} s. Its last output:\n"
                + indent(log_tail(directory.log_file, failing))
            )
        if pending:
            time.sleep(0.1)


def judge(record: SandboxRecord, services: list[ServiceStatus]) -> tuple[Health, str | None]:
    creating = record.phase is Phase.CREATING
    creator_alive = creating and processes.is_running(record.creator_pid)
    interrupted = "its `create` was interrupted" if creating and not creator_alive else None
    running = [service for service in services if service.pid is not None]
    if record.supervisor_pid is None:
        if creator_alive:
            return Health.STARTING, None
        return Health.DEAD, "its `create` was interrupted before anything started"
    if not processes.carries_token(record.supervisor_pid, record.token):
        problem = f"its supervisor (pid {record.supervisor_pid}) is gone"
        if running:
            problem += f"; {len(running)} service process(es) still run"
        return Health.DEAD, problem
    if all(service.ready for service in services):
        return Health.READY, interrupted
    if creator_alive:
        return Health.STARTING, None
    not_ready = ", ".join(service.name for service in services if not service.ready)
    return Health.UNHEALTHY, "; ".join(filter(None, [interrupted, f"not ready: {not_ready}"]))


def service_pids(directory: SandboxDirectory) -> dict[str, int]:
    """Each service's pid, as `microshop up` last recorded it (it rewrites it on restarts)."""
    try:
        state = json.loads(directory.supervisor_state_file.read_text())
        return {
            name: int(service["pid"])
            for name, service in state["services"].items()
            if service.get("pid")
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def log_lines(path: Path, service: str | None, tail: int | None, follow: bool) -> Iterator[str]:
    """The log's lines (one service's, or all); with `follow`, new ones as they come, until ^C."""
    try:
        handle = path.open(errors="replace")
    except FileNotFoundError:
        return
    with handle:
        text = handle.read()
        complete, _, pending = text.rpartition("\n") if follow else (text, "", "")
        existing = list(lines_of(service, complete.splitlines()))
        yield from existing if tail is None else last(existing, tail)
        while follow:
            chunk = handle.readline()
            if not chunk:
                time.sleep(0.2)
                continue
            pending += chunk
            if pending.endswith("\n"):
                yield from lines_of(service, [pending.rstrip("\n")])
                pending = ""


def split_prefix(line: str) -> tuple[str | None, str]:
    """`microshop up` writes `<service padded> | <line>`; other lines are its own."""
    name, separator, rest = line.partition(" | ")
    if separator and name.strip() in SERVICES:
        return name.strip(), rest
    return None, line


def lines_of(service: str | None, lines: Iterable[str]) -> Iterator[str]:
    """One service's lines without the prefix, or every line when `service` is None."""
    for line in lines:
        if service is None:
            yield line
            continue
        owner, text = split_prefix(line)
        if owner == service:
            yield text


def log_tail(path: Path, service: str | None) -> list[str]:
    return list(log_lines(path, service, LOG_TAIL_LINES, follow=False))


def last(lines: Iterable[str], count: int) -> list[str]:
    return list(deque(lines, maxlen=count)) if count > 0 else []


def indent(lines: list[str]) -> str:
    return "\n".join(f"  {line}" for line in lines) or "  (nothing)"
