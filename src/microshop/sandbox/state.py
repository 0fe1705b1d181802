"""What the command line remembers about each sandbox: one small directory per sandbox.

`$MICROSHOP_HOME/sandboxes/<name>/` holds `sandbox.json` (this module's record) and whatever the
backend keeps there: logs, the sqlite data, the supervisor's state, the applied manifests. The
directory is created before anything is started and removed last, so a sandbox that was only
half created is still listed, and `sandbox delete` can finish it.
"""

import json
import os
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from microshop.common.settings import Storage, default_data_dir
from microshop.sandbox import Backend, SandboxError

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

    def load(self) -> SandboxRecord | None:
        """The record, or None when creation was interrupted before it was first written."""
        try:
            return SandboxRecord.from_json(json.loads(self.record_file.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, record: SandboxRecord) -> None:
        """Atomically: a reader (or a kill) never sees half a record."""
        temporary = self.record_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(record), indent=2))
        temporary.replace(self.record_file)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def home() -> Path:
    """`MICROSHOP_HOME`, by default the user's data directory (`~/.local/share/microshop`)."""
    configured = os.environ.get(HOME_VARIABLE)
    return Path(configured).expanduser() if configured else default_data_dir()


def sandboxes_root() -> Path:
    return home() / "sandboxes"


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
        raise SandboxError(
            f"sandbox {name!r} already exists (see `microshop sandbox list`)"
        ) from None
    return SandboxDirectory(path)


def find(name: str) -> SandboxDirectory:
    path = sandboxes_root() / check_name(name)
    if not path.is_dir():
        raise SandboxError(f"no sandbox named {name!r} (see `microshop sandbox list`)")
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
