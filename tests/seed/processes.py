"""Starting the seed's services for a test: the stand-ins, or the real original when
MICROSHOP_SEED_DIR names a copy of it (its npm dependencies installed), started as its run.sh
does. The original listens on the fixed ports 3000-3004, so whoever starts it holds
FIXED_PORTS_LOCK meanwhile."""

import fcntl
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from microshop.ports import free_port
from tests.seed import SEED_PORTS
from tests.shops import START_TIMEOUT_SECONDS, ServiceProcess

REPOSITORY = Path(__file__).resolve().parents[2]
FIXED_PORTS_LOCK = Path("/tmp/microshop-fixed-ports.lock")


def original_directory() -> Path | None:
    """The real original's folder, from MICROSHOP_SEED_DIR; None means the stand-ins."""
    configured = os.environ.get("MICROSHOP_SEED_DIR")
    return Path(configured) if configured else None


@contextmanager
def fixed_ports_lock() -> Iterator[None]:
    """Holds the machine-wide lock on ports 3000-3004 (the lock `flock(1)` takes too)."""
    with FIXED_PORTS_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def someone_listens(port: int) -> bool:
    """Whether a server holds the port (connections of a server just gone may linger)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def wait_for_http(service: ServiceProcess, timeout: float = START_TIMEOUT_SECONDS) -> None:
    """Until the service answers anything over HTTP: the seed has no health endpoint."""
    deadline = time.monotonic() + timeout
    while True:
        if service.process.poll() is not None or time.monotonic() > deadline:
            service.stop()
            raise RuntimeError(f"{service.name} did not start:\n{service.output()[-4000:]}")
        try:
            httpx.get(service.url + "/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)


def launch(name: str, port: int, command: list[str], cwd: Path, logs: Path) -> ServiceProcess:
    log_file = logs / f"seed-{name}-{port}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    service = ServiceProcess(name, port, process, log_file)
    wait_for_http(service)
    return service


def start_stand_in(
    name: str, logs: Path, peers: Sequence[str], port: int | None = None
) -> ServiceProcess:
    """A stand-in of one seed service on `port` (or a free one), told its peers' `host:port`."""
    port = port or free_port()
    command = [sys.executable, "-m", "tests.seed", name, "--port", str(port), *peers]
    return launch(name, port, command, REPOSITORY, logs)


def start_original(name: str, original: Path, logs: Path, peers: Sequence[str]) -> ServiceProcess:
    """The original's service, as run.sh starts it: `node app.js <peers>` on its fixed port."""
    port = SEED_PORTS[name]
    if someone_listens(port):
        raise RuntimeError(f"port {port} of the original's {name} is taken")
    return launch(name, port, ["node", "app.js", *peers], original / name, logs)


def seed_port(name: str) -> int:
    """Where `start_seed` will put the service: the original's fixed port, or a free one."""
    return SEED_PORTS[name] if original_directory() is not None else free_port()


def start_seed(
    name: str, logs: Path, peers: Sequence[str], port: int | None = None
) -> ServiceProcess:
    """The original when MICROSHOP_SEED_DIR names it (on its fixed port), else a stand-in (on
    `port`, or a free one)."""
    original = original_directory()
    if original is None:
        return start_stand_in(name, logs, peers, port)
    return start_original(name, original, logs, peers)
