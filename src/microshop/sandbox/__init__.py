"""Sandboxes: whole shops created on demand, tested, and torn down.

A sandbox is the four services with their own ports, data and logs (local backend), or their own
namespace (kubernetes backend), so that a change to one service is tested with the rest of the
system around it and nothing leaks between test runs. `microshop sandbox ...` drives them.
"""

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from microshop.common.settings import Storage

if TYPE_CHECKING:
    from microshop.sandbox.blueprint import Blueprint


class SandboxError(Exception):
    """Something a person can act on; the message says what and, when known, what to do."""


class UnknownSandbox(SandboxError):
    """No sandbox has that name (any more)."""


class NameTaken(SandboxError):
    """Another sandbox already has that name."""


class Backend(StrEnum):
    LOCAL = "local"
    KUBERNETES = "kubernetes"


@dataclass(frozen=True)
class CreateOptions:
    """What `sandbox create` was asked for; each backend uses the parts that apply to it."""

    database: Storage | None = None
    """None: sqlite locally, whatever the manifests say on Kubernetes."""
    database_url: str | None = None
    base_port: int | None = None
    """Local: the gateway's port (the others follow); Kubernetes: the port-forward's."""
    manifests: Path | None = None
    timeout: float = 120.0
    duration: float | None = None
    """Seconds until the sandbox is torn down by itself; None: it lasts until deleted."""
    owner: str = ""
    blueprint: "Blueprint | None" = None
    """Services taken from somewhere else than this installation (microshop.sandbox.blueprint)."""


class Health(StrEnum):
    READY = "ready"
    """Every service answers /readyz."""
    STARTING = "starting"
    """`sandbox create` is still bringing it up."""
    UNHEALTHY = "unhealthy"
    """Its processes run, but some service is not ready."""
    DEAD = "dead"
    """Its processes died or its creation was interrupted; `sandbox delete` cleans it up."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    ready: bool
    url: str | None = None
    pid: int | None = None
    detail: str = ""
    override: str | None = None
    """Where the service comes from when a blueprint replaced it, e.g. `image shop:pr-7`."""


@dataclass(frozen=True)
class SandboxStatus:
    name: str
    backend: str
    health: Health
    gateway_url: str | None
    services: list[ServiceStatus] = field(default_factory=list)
    problem: str | None = None


class Reporter(Protocol):
    """Told about each step of a long operation, so the command line can show progress."""

    def begin(self, step: str) -> None: ...

    def finish(self, step: str) -> None: ...


class SilentReporter:
    """For callers that show no progress (the sandbox server, the reaper)."""

    def begin(self, step: str) -> None:
        """Nothing to show."""

    def finish(self, step: str) -> None:
        """Nothing to show."""
