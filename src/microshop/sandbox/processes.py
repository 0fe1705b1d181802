"""Processes and ports of a sandbox: find them, check them, stop them, whoever started them.

Every process a sandbox starts carries `MICROSHOP_SANDBOX_TOKEN=<token>` in its environment, and
its children inherit it. A pid from a state file is only signalled when it still carries the
token (pids are reused), and when the command line was killed before it could record a pid, the
token still finds the process (on Linux, through /proc).
"""

import contextlib
import os
import random
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Iterable
from pathlib import Path

from microshop.ports import busy_ports

TOKEN_VARIABLE = "MICROSHOP_SANDBOX_TOKEN"
PROC = Path("/proc")
PORT_RANGE = (20000, 32000)
"""Below Linux's ephemeral ports (32768+), so an outgoing connection rarely holds one."""


def token_environment(token: str) -> dict[str, str]:
    return {TOKEN_VARIABLE: token}


def is_running(pid: int) -> bool:
    """True for a live process; a zombie (dead, not yet reaped) counts as dead."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reaps it if it is our own child that already exited
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return True  # no /proc here: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def carries_token(pid: int, token: str) -> bool:
    """Whether `pid` is a live process of the sandbox with this token."""
    if not is_running(pid):
        return False
    if not PROC.is_dir():
        return True  # cannot tell without /proc; the pid was recorded moments after it started
    try:
        environment = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return f"{TOKEN_VARIABLE}={token}".encode() in environment.split(b"\0")


def processes_with_token(token: str) -> list[int]:
    """Every live process of the sandbox, found by its token (Linux only; elsewhere none)."""
    if not PROC.is_dir():
        return []
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            pid = int(entry.name)
            if carries_token(pid, token):
                found.append(pid)
    return found


def parent_of(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[-1].split()[1])


def stop_all_with_token(token: str, known: Collection[int], grace: float) -> list[int]:
    """Stops the `known` pids and every process carrying the token; returns any that survive.

    Parents go first: a supervisor told to stop stops its services in order, whereas a service
    killed under a running supervisor would only be started again.
    """
    for _ in range(3):
        pids = {pid for pid in known if carries_token(pid, token)}
        pids.update(processes_with_token(token))
        if not pids:
            return []
        roots = [pid for pid in pids if parent_of(pid) not in pids]
        stop(roots, grace)
        stop([pid for pid in pids if is_running(pid)], grace)
    return [pid for pid in {*known, *processes_with_token(token)} if carries_token(pid, token)]


def signal_each(pids: Iterable[int], signal_number: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal_number)


def wait_until_gone(pids: Collection[int], timeout: float) -> list[int]:
    """The pids still running after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if is_running(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if is_running(pid)]
    return alive


def stop(pids: Collection[int], grace: float) -> None:
    """SIGTERM, so services finish what they are doing; SIGKILL whatever is left after `grace`."""
    signal_each(pids, signal.SIGTERM)
    survivors = wait_until_gone(pids, grace)
    if survivors:
        signal_each(survivors, signal.SIGKILL)
        wait_until_gone(survivors, 5.0)


def wait_until_free(ports: Collection[int], timeout: float) -> list[int]:
    """The ports still in use after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    busy = busy_ports(ports)
    while busy and time.monotonic() < deadline:
        time.sleep(0.05)
        busy = busy_ports(busy)
    return busy


def free_port_block(offsets: Collection[int], taken: Collection[int]) -> int:
    """A base port such that base + each offset is free and not `taken` by another sandbox."""
    low, high = PORT_RANGE
    for _ in range(500):
        base = random.randrange(low, high)
        ports = [base + offset for offset in offsets]
        if not set(ports) & set(taken) and not busy_ports(ports):
            return base
    raise RuntimeError(f"no free block of ports found between {low} and {high}")


DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Straight to 127.0.0.1, whatever HTTP_PROXY says."""


def answers_ready(url: str, timeout: float = 1.0) -> bool:
    """GET `url`/readyz answers 200."""
    try:
        with DIRECT.open(f"{url}/readyz", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError, ValueError):
        return False
