"""What the command line remembers about each sandbox: one small directory per sandbox.

`$MICROSHOP_HOME/sandboxes/<name>/` holds `sandbox.json` (this module's record) and whatever the
backend keeps there: logs, the sqlite data, the supervisor's state, the applied manifests. The
directory is created before anything is started and removed last, so a sandbox that was only
half created is still listed, and `sandbox delete` can finish it.
"""

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from microshop.common.settings import Storage, default_data_dir
from microshop.sandbox import Backend, NameTaken, SandboxError, UnknownSandbox

HOME_VARIABLE = "MICROSHOP_HOME"
NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
"""Lower-case letters, digits and dashes, at most 40: `shop-<name>` stays a valid namespace."""


class Phase(StrEnum):
    CREATING = "creating"
    READY = "ready"


@dataclass
class SandboxRecord:
    """`sandbox.json`. The token marks every process the sandbox starts, so none is ever lost."""

    name: str
    backend: Backend
    database: Storage | None
    token: str
    creator_pid: int
    created_at: float = field(default_factory=time.time)
    phase: Phase = Phase.CREATING
    owner: str = ""
    overrides: dict[str, str] = field(default_factory=dict)
    """Each service a blueprint replaced, and where it comes from instead."""
    # local backend
    base_port: int | None = None
    ports: dict[str, int] = field(default_factory=dict)
    supervisor_pid: int | None = None
    # kubernetes backend
    namespace: str | None = None
    kube_context: str | None = None
    manifests: str | None = None
    forward_port: int | None = None
    forward_pid: int | None = None
    namespace_created: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SandboxRecord":
        database = data.get("database")
        return cls(
            **{
                **data,
                "backend": Backend(data["backend"]),
                "database": Storage(database) if database else None,
                "phase": Phase(data.get("phase", Phase.CREATING)),
            }
        )


@dataclass(frozen=True)
class Reservation:
    """`reservation.json`: when the sandbox ends. Apart from the record, so that extending it
    never races with a `create` that is still saving the record."""

    ends_at: float

    def seconds_left(self) -> float:
        return max(0.0, self.ends_at - time.time())


@dataclass(frozen=True)
class SandboxDirectory:
    """The files of one sandbox, named once here."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def record_file(self) -> Path:
        return self.path / "sandbox.json"

    @property
    def log_file(self) -> Path:
        """Everything the services print, each line prefixed with the service's name."""
        return self.path / "sandbox.log"

    @property
    def supervisor_state_file(self) -> Path:
        """Written by `microshop up --state-file`: each service's pid, port and URL."""
        return self.path / "supervisor.json"

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    @property
    def manifests_file(self) -> Path:
        """The manifests exactly as they were applied."""
        return self.path / "manifests.yaml"

    @property
    def kustomization_directory(self) -> Path:
        """A kustomization that renders the sandbox's manifests into its namespace."""
        return self.path / "kustomization"

    @property
    def forward_log_file(self) -> Path:
        return self.path / "port-forward.log"

    @property
    def reservation_file(self) -> Path:
        return self.path / "reservation.json"

    @property
    def reaper_log_file(self) -> Path:
        """What the process that ends the sandbox on time printed."""
        return self.path / "reaper.log"

    @property
    def blueprint_file(self) -> Path:
        """The local services' launch overrides, read by `microshop up --blueprint`."""
        return self.path / "blueprint.json"

    @property
    def lock_file(self) -> Path:
        return self.path / "lock"

    def load(self) -> SandboxRecord | None:
        """The record, or None when creation was interrupted before it was first written."""
        try:
            return SandboxRecord.from_json(json.loads(self.record_file.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, record: SandboxRecord) -> None:
        write_atomically(self.record_file, asdict(record))

    def load_reservation(self) -> Reservation | None:
        """The end time, or None for a sandbox that lasts until deleted."""
        try:
            return Reservation(float(json.loads(self.reservation_file.read_text())["ends_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save_reservation(self, reservation: Reservation) -> None:
        write_atomically(self.reservation_file, asdict(reservation))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[bool]:
        """Held while the sandbox is torn down or extended, so that nothing tears it down twice;
        yields whether the sandbox still exists once the lock is held."""
        with exclusive_lock(self.lock_file) as held:
            yield held and self.path.is_dir()


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    """A reader (or a kill) never sees half a file."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2))
    temporary.replace(path)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[bool]:
    """An flock on `path`, between threads and processes alike; yields False when the file's
    directory is gone, or the file was removed while waiting (what it guarded is gone)."""
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:
        yield False
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            same_file = os.stat(path).st_ino == os.fstat(handle).st_ino
        except FileNotFoundError:
            same_file = False
        yield same_file
    finally:
        os.close(handle)  # releases the lock


def home() -> Path:
    """`MICROSHOP_HOME`, by default the user's data directory (`~/.local/share/microshop`)."""
    configured = os.environ.get(HOME_VARIABLE)
    return Path(configured).expanduser() if configured else default_data_dir()


def sandboxes_root() -> Path:
    return home() / "sandboxes"


def ports_lock() -> Path:
    """Held while a sandbox chooses its ports and records them, so two never choose the same."""
    return home() / "sandbox-ports.lock"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise SandboxError(
            f"bad sandbox name {name!r}: use at most 40 lower-case letters, digits and dashes, "
            "starting and ending with a letter or digit"
        )
    return name


def new_name() -> str:
    return f"sb-{secrets.token_hex(3)}"


def new_token() -> str:
    return secrets.token_hex(16)


def claim(name: str) -> SandboxDirectory:
    """Creates the sandbox's directory; the name is taken even if two creates race for it."""
    root = sandboxes_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / check_name(name)
    try:
        path.mkdir()
    except FileExistsError:
        raise NameTaken(f"sandbox {name!r} already exists (see `microshop sandbox list`)") from None
    return SandboxDirectory(path)


def find(name: str) -> SandboxDirectory:
    path = sandboxes_root() / check_name(name)
    if not path.is_dir():
        raise UnknownSandbox(f"no sandbox named {name!r} (see `microshop sandbox list`)")
    return SandboxDirectory(path)


def every_sandbox() -> list[SandboxDirectory]:
    root = sandboxes_root()
    if not root.is_dir():
        return []
    return [
        SandboxDirectory(path)
        for path in sorted(root.iterdir())
        if path.is_dir() and NAME_PATTERN.fullmatch(path.name)
    ]
