"""Local ports: whether one is free and, on Linux, which process holds it."""

import socket
from collections.abc import Iterable
from pathlib import Path

LISTEN = "0A"
"""A socket's state in /proc/net/tcp while it listens."""


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:`port` (connections closing in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """Any free port, chosen by the kernel."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def busy_ports(ports: Iterable[int]) -> list[int]:
    return [port for port in ports if not port_is_free(port)]


def port_holder(port: int) -> str | None:
    """The process listening on `port`, as `pid N (command line)`; None where it cannot be told
    (not Linux, or the process belongs to another user)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    sockets = {f"socket:[{inode}]" for inode in inodes}
    for process in Path("/proc").glob("[0-9]*"):
        try:
            holds = any(
                descriptor.readlink().as_posix() in sockets
                for descriptor in (process / "fd").iterdir()
            )
            if holds:
                command = (process / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                return f"pid {process.name} ({command.decode(errors='replace')})"
        except OSError:  # gone meanwhile, or not ours to look into
            continue
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == LISTEN:
                inodes.add(fields[9])
    return inodes
