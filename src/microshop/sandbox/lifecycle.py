"""Create, inspect and delete sandboxes, whichever backend runs them.

The rules that hold for both: a sandbox that fails to come up, or whose creation is
interrupted, is deleted before the error reaches the caller, so a failed `create` leaves nothing;
a sandbox with an end time is torn down at that time (microshop.sandbox.reservations); and
tearing down happens under the sandbox's lock, so it never happens twice.
"""

import dataclasses
import os
import time
from collections.abc import Iterator
from typing import Protocol

from microshop.sandbox import (
    Backend,
    CreateOptions,
    Health,
    Reporter,
    SandboxError,
    SandboxStatus,
    UnknownSandbox,
    processes,
    reservations,
)
from microshop.sandbox.kubernetes import KubernetesBackend
from microshop.sandbox.local import LocalBackend
from microshop.sandbox.state import (
    Phase,
    Reservation,
    SandboxDirectory,
    SandboxRecord,
    claim,
    new_token,
)

UNRECORDED_GRACE_SECONDS = 60.0
"""A directory without a record is being claimed, unless it is older than this."""


class CleanupError(SandboxError):
    """A sandbox failed to come up, and tearing it down failed as well: something is left."""


class DeletedWhileCreating(SandboxError):
    """Someone (a delete, the reaper at the end time) tore the sandbox down before it was ready."""


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
    return build(*begin(name, backend, options), options, reporter)


def begin(
    name: str, backend: Backend, options: CreateOptions
) -> tuple[SandboxDirectory, SandboxRecord]:
    """Takes the name, writes the record and the end time and starts the reaper: quick, so that a
    server can do it while answering, and from here on the sandbox is listed and ends on time."""
    if options.blueprint is not None:
        options.blueprint.check_for(backend)
    directory = claim(name)
    record = SandboxRecord(
        name=name,
        backend=backend,
        database=options.database,
        token=new_token(),
        creator_pid=os.getpid(),
        owner=options.owner,
        overrides=options.blueprint.descriptions() if options.blueprint else {},
    )
    try:
        directory.save(record)
        if options.duration is not None:
            directory.save_reservation(Reservation(time.time() + options.duration))
            reservations.start_reaper(directory, record)
    except BaseException:
        processes.stop_all_with_token(record.token, [], grace=5.0)
        directory.remove()
        raise
    return directory, record


def build(
    directory: SandboxDirectory, record: SandboxRecord, options: CreateOptions, reporter: Reporter
) -> SandboxStatus:
    """Brings up what `begin` recorded; on any failure (or ^C) deletes it before raising."""
    try:
        BACKENDS[record.backend].create(directory, record, options, reporter)
    except BaseException as failure:
        try:
            torn_down_here = teardown(directory, record)
        except SandboxError as cleanup_failure:
            raise CleanupError(
                f"{failure}\nCleaning up failed too: {cleanup_failure}\n"
                f"`microshop sandbox delete {record.name}` tries again"
            ) from failure
        if not torn_down_here:
            raise DeletedWhileCreating(
                f"sandbox {record.name} was deleted before it was ready "
                "(by a delete, or because it reached its end time)"
            ) from failure
        raise
    return status(directory)


def teardown(directory: SandboxDirectory, record: SandboxRecord) -> bool:
    """Deletes the sandbox `record` describes, unless someone else already did (or is doing
    it, then this waits); whether it was this call that tore it down."""
    with directory.locked() as present:
        current = directory.load()
        if not present or (current is not None and current.token != record.token):
            return False
        BACKENDS[record.backend].delete(directory, record)
        directory.remove()
    return True


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
    sandbox = BACKENDS[record.backend].status(directory, record)
    services = [
        dataclasses.replace(service, override=record.overrides.get(service.name))
        for service in sandbox.services
    ]
    return dataclasses.replace(sandbox, services=services)


def delete(directory: SandboxDirectory) -> list[str]:
    """Stops what runs and removes the directory; raises, keeping it, if something survives.
    UnknownSandbox when another caller (a reaper, a server) deleted it first."""
    with directory.locked() as present:
        if not present:
            raise UnknownSandbox(f"sandbox {directory.name} is already deleted")
        record = directory.load()
        warnings = [] if record is None else BACKENDS[record.backend].delete(directory, record)
        directory.remove()
    return warnings


def delete_if_over(directory: SandboxDirectory) -> bool:
    """Deletes the sandbox if its end time has passed, or its creation was interrupted; whether it
    did. Checked again under the lock, so a sandbox extended meanwhile is kept."""
    with directory.locked() as present:
        if not present or not (expired(directory) or interrupted(directory)):
            return False
        record = directory.load()
        if record is not None:
            BACKENDS[record.backend].delete(directory, record)
        directory.remove()
    return True


def expired(directory: SandboxDirectory) -> bool:
    reservation = directory.load_reservation()
    return reservation is not None and reservation.seconds_left() <= 0


def interrupted(directory: SandboxDirectory) -> bool:
    """Whether the sandbox's `create` died before it finished (a kill, a crash, a lost server)."""
    record = directory.load()
    if record is None:
        try:
            age = time.time() - directory.path.stat().st_mtime
        except OSError:
            return False
        return age > UNRECORDED_GRACE_SECONDS
    return record.phase is Phase.CREATING and not processes.is_running(record.creator_pid)


def extend(directory: SandboxDirectory, seconds: float, longest: float | None) -> Reservation:
    """Moves the end time `seconds` later; at most `longest` seconds from now, when given."""
    with directory.locked() as present:
        reservation = directory.load_reservation() if present else None
        if reservation is None:
            if not present:
                raise UnknownSandbox(f"sandbox {directory.name} is already deleted")
            raise SandboxError(f"sandbox {directory.name} has no end time to extend")
        now = time.time()
        ends_at = max(reservation.ends_at, now) + seconds
        if longest is not None and ends_at - now > longest:
            raise SandboxError(
                f"a sandbox may last at most {reservations.describe_seconds(longest)} from now; "
                f"that would be {reservations.describe_seconds(ends_at - now)}"
            )
        extended = Reservation(ends_at)
        directory.save_reservation(extended)
    return extended


def reap(directory: SandboxDirectory, token: str) -> None:
    """The reaper's whole life: wait for the end time, then tear the sandbox down."""
    reservations.stop_on_signal()
    while reservations.wait_for_end(directory, token):
        if delete_if_over(directory):
            return


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
