"""Create, inspect and delete sandboxes, whichever backend runs them.

The one rule that holds for both: a sandbox that fails to come up, or whose creation is
interrupted, is deleted before the error reaches the caller, so a failed `create` leaves nothing.
"""

import os
from collections.abc import Iterator
from typing import Protocol

from microshop.sandbox import (
    Backend,
    CreateOptions,
    Health,
    Reporter,
    SandboxError,
    SandboxStatus,
)
from microshop.sandbox.kubernetes import KubernetesBackend
from microshop.sandbox.local import LocalBackend
from microshop.sandbox.state import SandboxDirectory, SandboxRecord, claim, new_token


class CleanupError(SandboxError):
    """A sandbox failed to come up, and tearing it down failed as well: something is left."""


class SandboxBackend(Protocol):
    def create(
        self,
        directory: SandboxDirectory,
        record: SandboxRecord,
        options: CreateOptions,
        reporter: Reporter,
    ) -> None: ...

    def status(self, directory: SandboxDirectory, record: SandboxRecord) -> SandboxStatus: ...

    def delete(self, directory: SandboxDirectory, record: SandboxRecord) -> list[str]:
        """Stops everything; returns warnings about what it could not check."""
        ...

    def environment(self, directory: SandboxDirectory, record: SandboxRecord) -> dict[str, str]: ...

    def logs(
        self,
        directory: SandboxDirectory,
        record: SandboxRecord,
        service: str | None,
        tail: int | None,
        follow: bool,
    ) -> Iterator[str]: ...


BACKENDS: dict[Backend, SandboxBackend] = {
    Backend.LOCAL: LocalBackend(),
    Backend.KUBERNETES: KubernetesBackend(),
}


def create(
    name: str, backend: Backend, options: CreateOptions, reporter: Reporter
) -> SandboxStatus:
    directory = claim(name)
    record = SandboxRecord(
        name=name,
        backend=backend,
        database=options.database,
        token=new_token(),
        creator_pid=os.getpid(),
    )
    try:
        directory.save(record)
        BACKENDS[backend].create(directory, record, options, reporter)
    except BaseException as failure:
        # Whatever failed (or ^C), take down what was started before saying so.
        try:
            BACKENDS[backend].delete(directory, record)
        except SandboxError as cleanup_failure:
            raise CleanupError(
                f"{failure}\nCleaning up failed too: {cleanup_failure}\n"
                f"`microshop sandbox delete {name}` tries again"
            ) from failure
        directory.remove()
        raise
    return BACKENDS[backend].status(directory, record)


def load(directory: SandboxDirectory) -> SandboxRecord:
    record = directory.load()
    if record is None:
        raise SandboxError(
            f"sandbox {directory.name} was interrupted while being created; "
            f"`microshop sandbox delete {directory.name}` removes it"
        )
    return record


def status(directory: SandboxDirectory) -> SandboxStatus:
    record = directory.load()
    if record is None:
        return SandboxStatus(
            directory.name, "?", Health.DEAD, None, [], "interrupted before it was recorded"
        )
    return BACKENDS[record.backend].status(directory, record)


def delete(directory: SandboxDirectory) -> list[str]:
    """Stops what runs and removes the directory; raises, keeping it, if something survives."""
    record = directory.load()
    warnings = [] if record is None else BACKENDS[record.backend].delete(directory, record)
    directory.remove()
    return warnings


def environment(directory: SandboxDirectory) -> dict[str, str]:
    """What `sandbox exec` adds to a command's environment; refuses a sandbox that is not ready."""
    record = load(directory)
    backend = BACKENDS[record.backend]
    urls = backend.environment(directory, record)  # on Kubernetes, revives a dead port-forward
    sandbox = backend.status(directory, record)
    if sandbox.health is not Health.READY:
        problem = f": {sandbox.problem}" if sandbox.problem else ""
        raise SandboxError(f"sandbox {record.name} is {sandbox.health}{problem}")
    return {"MICROSHOP_SANDBOX": record.name, **urls}


def logs(
    directory: SandboxDirectory, service: str | None, tail: int | None, follow: bool
) -> Iterator[str]:
    record = load(directory)
    return BACKENDS[record.backend].logs(directory, record, service, tail, follow)
