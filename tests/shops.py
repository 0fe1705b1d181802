"""Real shops for tests: the four services started by `microshop up`, or one by `microshop serve`,
on 127.0.0.1, as a user and a container start them."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from microshop.ports import busy_ports, free_port
from microshop.services import SERVICES, service_ports

START_TIMEOUT_SECONDS = 40.0


def free_base_port() -> int:
    """A base port whose whole seed layout (+0 .. +4) is free right now, below the kernel's range
    of ephemeral ports: the connections every running service opens take ports from that range,
    and one could take a port of the layout between this check and the service binding it."""
    first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        base = random.randrange(10_000, first_ephemeral - 5)
        if not busy_ports(service_ports(base).values()):
            return base
    raise RuntimeError("no free range of ports found")


@dataclass
class RunningShop:
    """A shop started by `microshop up`, exactly as a user starts it."""

    process: subprocess.Popen[bytes]
    base_port: int
    data_dir: Path
    state_file: Path
    log_file: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return self.url("api-gateway")

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def pid(self, service: str) -> int:
        state = json.loads(self.state_file.read_text())
        pid: int = state["services"][service]["pid"]
        return pid

    def output(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_ready(
        self, service: str = "api-gateway", timeout: float = START_TIMEOUT_SECONDS
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"microshop up exited:\n{self.output()[-4000:]}")
            try:
                if httpx.get(self.url(service) + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{service} not ready after {timeout} s:\n{self.output()[-4000:]}")

    def wait_started(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Until the supervisor has seen every service ready: before that, a service that exits
        ends `microshop up` instead of being restarted."""
        deadline = time.monotonic() + timeout
        while not (self.state_file.exists() and json.loads(self.state_file.read_text())["started"]):
            if self.process.poll() is not None:
                raise RuntimeError(f"microshop up exited:\n{self.output()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"microshop up not started after {timeout} s")
            time.sleep(0.05)

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def up_command(base_port: int, data_dir: Path, *extra_arguments: str) -> list[str]:
    """`microshop up` on `base_port`, keeping its data in `data_dir`, as a user runs it."""
    return [
        sys.executable,
        "-m",
        "microshop",
        "up",
        "--base-port",
        str(base_port),
        "--data-dir",
        str(data_dir),
        *extra_arguments,
    ]


def start_shop(
    directory: Path, *extra_arguments: str, environment: dict[str, str] | None = None
) -> RunningShop:
    base_port = free_base_port()
    data_dir = directory / "data"
    log_file = directory / f"up-{base_port}.log"
    state_file = directory / "state.json"
    command = up_command(base_port, data_dir, "--state-file", str(state_file), *extra_arguments)
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MICROSHOP_LOG_FORMAT": "json", **(environment or {})},
        )
    shop = RunningShop(process, base_port, data_dir, state_file, log_file, service_ports(base_port))
    try:
        for service in SERVICES:
            shop.wait_ready(service)
        shop.wait_started()
    except BaseException:
        shop.stop()
        raise
    return shop


@dataclass
class ServiceProcess:
    """One service started by `microshop serve`, as a container would start it."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def start_service(
    name: str, directory: Path, environment: dict[str, str], *, port: int | None = None
) -> ServiceProcess:
    port = port or free_port()
    log_file = directory / f"{name}-{port}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "microshop", "serve", name],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "MICROSHOP_HOST": "127.0.0.1",
                "MICROSHOP_PORT": str(port),
                "MICROSHOP_LOG_FORMAT": "json",
                "MICROSHOP_DATA_DIR": str(directory / "data"),
                **environment,
            },
        )
    service = ServiceProcess(name, port, process, log_file)
    wait_until_healthy(service)
    return service


def wait_until_healthy(service: ServiceProcess) -> None:
    """Returns once the process answers /healthz; stops it and raises with its output if not."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if service.process.poll() is not None or time.monotonic() > deadline:
            service.stop()
            raise RuntimeError(f"{service.name} did not start:\n{service.output()[-4000:]}")
        try:
            if httpx.get(service.url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
