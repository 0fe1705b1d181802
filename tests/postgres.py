"""A throwaway PostgreSQL server for the tests, from the machine's own binaries."""

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from microshop.ports import free_port
from tests.system_tools import missing_system_tool

BINARY_DIRECTORIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
START_TIMEOUT_SECONDS = 30.0


def as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root; CI runs as root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class PostgresServer:
    binaries: Path
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def run(self, tool: str, *arguments: str) -> None:
        subprocess.run(
            [*as_postgres_user(), str(self.binaries / tool), *arguments],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        log = (self.directory / "server.log").open("ab")
        self.process = subprocess.Popen(
            [
                *as_postgres_user(),
                str(self.binaries / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-k",
                str(self.directory),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                self.run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres")
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError((self.directory / "server.log").read_text()) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """A fast shutdown, as an operator's restart or a failover would do it."""
        if self.process is not None and self.process.poll() is None:
            self.run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")
            self.process.wait(30)
        self.process = None

    def create_database(self) -> str:
        """A new empty database; its URL as a user would configure it."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if not BINARY_DIRECTORIES:
        missing_system_tool("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
    directory = Path(tempfile.mkdtemp(prefix="microshop-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    server = PostgresServer(Path(BINARY_DIRECTORIES[-1]), directory, free_port())
    server.run(
        "initdb",
        "-D",
        str(server.data_dir),
        "-U",
        "postgres",
        "-A",
        "trust",
        "--no-sync",
        "-E",
        "UTF8",
    )
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)
