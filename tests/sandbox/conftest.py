"""The sandbox command line, run as a user runs it, with a MICROSHOP_HOME of its own per test.

What is left behind is checked without the code under test: every process the command line
starts inherits this test's MICROSHOP_HOME, so /proc tells which of them still run, and a port
is in use when something accepts connections on it.
"""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from microshop.ports import free_port
from microshop.services import service_ports
from tests.shops import ServiceProcess, free_base_port, wait_until_healthy
from tests.system_tools import missing_system_tool

CLI_TIMEOUT_SECONDS = 120.0
PROC = Path("/proc")


@dataclass
class SandboxCli:
    home: Path
    environment: dict[str, str] = field(default_factory=dict)

    def command(self, *arguments: str) -> list[str]:
        return [sys.executable, "-m", "microshop", "sandbox", *arguments]

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "MICROSHOP_HOME": str(self.home), **self.environment, **extra}

    def run(
        self, *arguments: str, timeout: float = CLI_TIMEOUT_SECONDS, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*arguments),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(**extra),
            check=False,
        )

    def start(self, *arguments: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*arguments),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env(**extra),
        )

    def create(self, name: str, *options: str, **extra: str) -> dict[str, Any]:
        result = self.run("create", name, *options, **extra)
        assert result.returncode == 0, result.stderr
        return self.record(name)

    def directory(self, name: str) -> Path:
        return self.home / "sandboxes" / name

    def record(self, name: str) -> dict[str, Any]:
        record: dict[str, Any] = json.loads((self.directory(name) / "sandbox.json").read_text())
        return record

    def service_pids(self, name: str) -> dict[str, int]:
        state = json.loads((self.directory(name) / "supervisor.json").read_text())
        return {service: info["pid"] for service, info in state["services"].items()}

    def sandboxes(self) -> list[str]:
        root = self.home / "sandboxes"
        return sorted(path.name for path in root.iterdir()) if root.exists() else []

    def processes(self) -> list[int]:
        """Every live process started from this home: the sandboxes' and their children."""
        return processes_with_environment(f"MICROSHOP_HOME={self.home}")

    def assert_nothing_left(self, ports: list[int] | None = None) -> None:
        assert self.sandboxes() == []
        assert self.processes() == []
        assert [port for port in ports or [] if accepts_connections(port)] == []


def processes_with_environment(entry: str) -> list[int]:
    found = []
    for path in PROC.glob("[0-9]*"):
        try:
            environment = (path / "environ").read_bytes().split(b"\0")
            state = (path / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if entry.encode() in environment and state != "Z":
            found.append(int(path.name))
    return found


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met after {timeout} s")
        time.sleep(0.02)


def layout(base_port: int) -> list[int]:
    return list(service_ports(base_port).values())


@pytest.fixture
def sandbox_cli(tmp_path: Path) -> Iterator[SandboxCli]:
    if not PROC.is_dir():
        missing_system_tool("these tests find leftover processes through /proc (Linux only)")
    cli = SandboxCli(tmp_path / "home")
    yield cli
    cli.run("delete", "--all")  # whatever the test did, no shop outlives it


@pytest.fixture
def base_port() -> int:
    return free_base_port()


SERVER_TOKEN = "test-token-8f1c2e"


@dataclass
class SandboxServer(ServiceProcess):
    """`microshop sandbox serve`, started as a person starts it, its state in the CLI's home."""

    home: Path = Path()
    token: str = SERVER_TOKEN

    def client(self, timeout: float = 150.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=timeout,
        )

    def stop(self, timeout: float = 150.0) -> int:
        """Longer than a service's: the server first finishes the creations under way."""
        return super().stop(timeout)

    def sandbox_processes(self) -> list[int]:
        """The live processes of the server's sandboxes (the server itself left out)."""
        entry = f"MICROSHOP_HOME={self.home}"
        return [pid for pid in processes_with_environment(entry) if pid != self.process.pid]


def start_sandbox_server(home: Path, *options: str, **environment: str) -> SandboxServer:
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    token_file = home.parent / "server-token.txt"
    token_file.write_text(SERVER_TOKEN + "\n")
    log_file = home.parent / f"server-{port}.log"
    command = [sys.executable, "-m", "microshop", "sandbox", "serve", "--port", str(port)]
    command += ["--state-dir", str(home), "--token-file", str(token_file), *options]
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "MICROSHOP_HOME": str(home),
                "MICROSHOP_LOG_FORMAT": "json",
                **environment,
            },
        )
    server = SandboxServer("sandbox-server", port, process, log_file, home)
    wait_until_healthy(server)
    return server


def wait_until_ready(client: httpx.Client, name: str, timeout: float = 120.0) -> dict[str, Any]:
    """Polls GET /sandboxes/NAME as a CI job would, until the sandbox is no longer starting."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(f"/sandboxes/{name}")
        assert answer.status_code == 200, answer.text
        sandbox: dict[str, Any] = answer.json()
        if sandbox["status"] != "starting":
            return sandbox
        if time.monotonic() > deadline:
            raise TimeoutError(f"sandbox {name} still starting after {timeout} s")
        time.sleep(0.2)


@pytest.fixture
def sandbox_server(sandbox_cli: SandboxCli) -> Iterator[SandboxServer]:
    """A server with a small quota, on the CLI's home (so the CLI's clean-up covers it too)."""
    server = start_sandbox_server(sandbox_cli.home, "--quota", "5", "--max-duration", "2h")
    yield server
    assert server.stop() == 0, server.output()[-4000:]
