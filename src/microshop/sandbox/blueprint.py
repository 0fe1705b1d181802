"""Blueprints: a sandbox whose services come, one or more of them, from somewhere else.

That is what CI for one service needs: the service under test built from its branch, the other
three as released. Locally a service can run from another checkout (its `src/` on `PYTHONPATH`,
its `.venv` when it has one) or from any command that serves on `$MICROSHOP_PORT`; on Kubernetes
its Deployment runs another image. Either way extra environment variables may be added.
"""

import json
import re
import sys
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from microshop.sandbox import Backend, SandboxError
from microshop.services import SERVICES
from microshop.supervisor import Launch

ENVIRONMENT_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
Document = dict[str, Any]


class ServiceOverride(BaseModel):
    """Where one service comes from instead: at most one of command, checkout and image."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] | None = Field(default=None, min_length=1, max_length=100)
    """Local: the program and its arguments; it must serve on `$MICROSHOP_PORT`."""
    checkout: str | None = Field(default=None, min_length=1, max_length=4096)
    """Local: a checkout of microshop (a directory with `src/microshop`) to run the service from."""
    image: str | None = Field(default=None, min_length=1, max_length=500)
    """Kubernetes: the image for the service's Deployment."""
    environment: dict[str, str] = Field(default_factory=dict, max_length=100)
    """Extra variables for the service (locally its process, on Kubernetes its containers)."""

    @field_validator("environment")
    @classmethod
    def names_are_variables(cls, environment: dict[str, str]) -> dict[str, str]:
        for name in environment:
            if not ENVIRONMENT_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable's name")
        return environment

    @model_validator(mode="after")
    def one_source(self) -> Self:
        sources = [name for name in ("command", "checkout", "image") if getattr(self, name)]
        if len(sources) > 1:
            raise ValueError(f"give one of command, checkout and image, not {', '.join(sources)}")
        if not sources and not self.environment:
            raise ValueError("give a command, a checkout, an image or environment variables")
        return self

    def describe(self) -> str:
        if self.image:
            return f"image {self.image}"
        if self.checkout:
            return f"checkout {self.checkout}"
        if self.command:
            return "command " + " ".join(self.command)
        return "environment " + " ".join(sorted(self.environment))


class Blueprint(BaseModel):
    """`{"services": {"<service>": {...}}}`: the services not taken from this installation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    services: dict[str, ServiceOverride] = Field(min_length=1)

    @field_validator("services")
    @classmethod
    def known_services(cls, services: dict[str, ServiceOverride]) -> dict[str, ServiceOverride]:
        unknown = sorted(set(services) - set(SERVICES))
        if unknown:
            raise ValueError(
                f"unknown service {', '.join(unknown)}; the services are {', '.join(SERVICES)}"
            )
        return services

    def check_for(self, backend: Backend) -> None:
        """Refuses what the backend cannot do, before anything is started."""
        for name, override in self.services.items():
            if backend is Backend.LOCAL and override.image:
                raise SandboxError(f"{name}: an image is for the kubernetes backend")
            if backend is Backend.KUBERNETES and (override.command or override.checkout):
                raise SandboxError(f"{name}: a command or checkout is for the local backend")
            if override.checkout and not (Path(override.checkout) / "src" / "microshop").is_dir():
                raise SandboxError(
                    f"{name}: {override.checkout} is not a checkout of microshop "
                    "(it has no src/microshop)"
                )

    def descriptions(self) -> dict[str, str]:
        return {name: override.describe() for name, override in self.services.items()}

    def launches(self) -> dict[str, Launch]:
        """The local processes to start instead of this installation's `microshop serve`."""
        return {name: launch_of(name, override) for name, override in self.services.items()}

    def apply_to_manifests(self, documents: list[Document]) -> None:
        """Sets each overridden Deployment's image and extra environment, in place."""
        deployments = {
            document.get("metadata", {}).get("name"): document
            for document in documents
            if document.get("kind") == "Deployment"
        }
        for name, override in self.services.items():
            deployment = deployments.get(name)
            if deployment is None:
                raise SandboxError(f"the manifests have no Deployment named {name}")
            pod = deployment.get("spec", {}).get("template", {}).get("spec", {})
            for container in [*pod.get("containers", []), *pod.get("initContainers", [])]:
                if override.image:
                    container["image"] = override.image
                variables = container.setdefault("env", [])
                for variable, value in override.environment.items():
                    variables[:] = [entry for entry in variables if entry.get("name") != variable]
                    variables.append({"name": variable, "value": value})


def launch_of(name: str, override: ServiceOverride) -> Launch:
    environment = dict(override.environment)
    if override.command:
        return Launch(tuple(override.command), None, environment)
    if override.checkout:
        checkout = Path(override.checkout).resolve()
        own_python = checkout / ".venv" / "bin" / "python"
        python = str(own_python) if own_python.is_file() else sys.executable
        environment["PYTHONPATH"] = str(checkout / "src")
        return Launch((python, "-m", "microshop", "serve", name), checkout, environment)
    return Launch(None, None, environment)


def save_launches(blueprint: Blueprint, path: Path) -> None:
    path.write_text(blueprint.model_dump_json(indent=2))


def load_launches(path: Path) -> dict[str, Launch]:
    """What `microshop up --blueprint FILE` starts instead of the default services."""
    try:
        blueprint = Blueprint.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError) as error:
        raise SandboxError(f"cannot read the blueprint {path}: {error}") from None
    return blueprint.launches()
