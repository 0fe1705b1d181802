"""Runs rendered manifests as local processes: each Deployment's container command and environment,
with every Service mapped to a port on 127.0.0.1 and every volume to a directory.

Not a cluster: there is no scheduling, no probes run by a kubelet, no NetworkPolicy and no read-only
root filesystem. What it proves is the configuration: the command each container runs, the
environment built from its ConfigMaps and Secrets, the kube-dns addresses in it, the ports, and
where files are written, together run the shop.
"""

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from microshop.ports import free_port
from tests.deploy.manifests import (
    SERVICE_ADDRESS,
    WORKLOAD_KINDS,
    Doc,
    Image,
    configuration,
    container_environment,
    find,
    of_kind,
    pod_labels,
    pod_spec,
    read_image,
    resolve_port,
    selects,
    served_service,
)

START_TIMEOUT_SECONDS = 40.0
POSTGRESQL_BINARIES = ("initdb", "postgres", "pg_isready", "psql")


@dataclass
class LocalPod:
    """One workload's container, running as a process on 127.0.0.1."""

    name: str
    process: subprocess.Popen[bytes]
    log_file: Path
    ports: dict[int, int]  # containerPort -> port on 127.0.0.1
    grace_seconds: float
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{next(iter(self.ports.values()))}"

    def output(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]


@dataclass
class LocalCluster:
    docs: list[Doc]
    directory: Path
    external: dict[str, dict[str, str]]
    image: Image = field(default_factory=read_image)
    pods: dict[str, LocalPod] = field(default_factory=dict)
    addresses: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Every (workload, containerPort) gets a free port; Services resolve to those ports."""
        self.local_ports: dict[tuple[str, int], int] = {}
        for workload in of_kind(self.docs, *WORKLOAD_KINDS):
            for container in pod_spec(workload)["containers"]:
                for port in container.get("ports", []):
                    key = (workload["metadata"]["name"], port["containerPort"])
                    self.local_ports[key] = free_port()
        for service in of_kind(self.docs, "Service"):
            selector = service["spec"]["selector"]
            (workload,) = [
                w for w in of_kind(self.docs, *WORKLOAD_KINDS) if selects(selector, pod_labels(w))
            ]
            for port in service["spec"]["ports"]:
                target = resolve_port(workload, port.get("targetPort", port["port"]))
                assert target is not None, f"{service['metadata']['name']}: no target port"
                local = self.local_ports[(workload["metadata"]["name"], target)]
                self.addresses[(service["metadata"]["name"], port["port"])] = local

    def localize(self, value: str, mounts: dict[str, Path]) -> str:
        """kube-dns addresses become 127.0.0.1:<port>, mount paths become local directories."""

        def address(match: re.Match[str]) -> str:
            port = int(match["port"]) if match["port"] else 80
            return f"127.0.0.1:{self.addresses[(match['service'], port)]}"

        value = SERVICE_ADDRESS.sub(address, value)
        for mount_path, local in mounts.items():
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                value = str(local) + value[len(mount_path.rstrip("/")) :]
        return value

    def start_microshop(self, workload: Doc) -> LocalPod:
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        (container,) = spec["containers"]
        service = served_service(container, self.image)
        assert service is not None, f"{name} does not run `microshop serve`"
        environment, missing = container_environment(
            container, self.docs, self.external, self.image
        )
        assert not missing, missing
        mounts = {}
        for mount in container.get("volumeMounts", []):
            mounts[mount["mountPath"]] = self.directory / name / mount["name"]
            mounts[mount["mountPath"]].mkdir(parents=True, exist_ok=True)
        environment = {key: self.localize(value, mounts) for key, value in environment.items()}
        ports = {
            number: self.local_ports[(name, number)]
            for number in (p["containerPort"] for p in container.get("ports", []))
        }
        # The container listens on the port its manifest says; here that port is a local one.
        environment["MICROSHOP_PORT"] = str(ports[int(environment["MICROSHOP_PORT"])])
        environment["MICROSHOP_HOST"] = "127.0.0.1"
        environment["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        words = [*container.get("command", self.image.entrypoint)]
        words += container.get("args", self.image.command if "command" not in container else [])
        assert words[0] == "microshop", words
        command = [sys.executable, "-m", "microshop", *words[1:]]
        log_file = self.directory / f"{name}.log"
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=self.directory,
            )
        grace = float(spec.get("terminationGracePeriodSeconds", 30))
        pod = LocalPod(name, process, log_file, ports, grace, environment)
        self.pods[name] = pod
        return pod

    def start(self, name: str) -> LocalPod:
        """Starts (or, once its old process is gone, starts again) the pod of Deployment `name`,
        on the same local ports: its Service's address stays the same, as in a cluster."""
        workload = find(self.docs, "Deployment", name)
        assert workload is not None, f"no Deployment {name}"
        return self.start_microshop(workload)

    def wait_ready(self, pod: LocalPod, timeout: float = START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pod.process.poll() is not None:
                raise RuntimeError(f"{pod.name} exited:\n{pod.output()}")
            try:
                if httpx.get(pod.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{pod.name} not ready after {timeout} s:\n{pod.output()}")

    def stop(self, pods: list[LocalPod]) -> dict[str, int]:
        """SIGTERM to every pod at once, as the kubelet sends it after the preStop pause; each must
        be gone before the rest of its grace period runs out. Exit codes by pod."""
        for pod in pods:
            if pod.process.poll() is None:
                pod.process.send_signal(signal.SIGTERM)
        codes = {}
        for pod in pods:
            try:
                codes[pod.name] = pod.process.wait(timeout=pod.grace_seconds)
            except subprocess.TimeoutExpired:
                codes[pod.name] = -1
        return codes

    def secret_for(self, workload: Doc) -> dict[str, str]:
        """The Secret the PostgreSQL pod reads its credentials from (a mounted secret volume)."""
        (volume,) = [v for v in pod_spec(workload).get("volumes", []) if "secret" in v]
        name = volume["secret"]["secretName"]
        data = configuration(self.docs).get(("Secret", name)) or self.external.get(name)
        assert data is not None, f"Secret {name} does not exist"
        return data


def postgresql_binaries() -> dict[str, str] | None:
    """initdb, postgres, pg_isready and psql from PATH or a Debian install, or None."""
    directories = [None, *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
    for directory in directories:
        found = {}
        for binary in POSTGRESQL_BINARIES:
            path = shutil.which(binary) if directory is None else str(directory / binary)
            if path and os.access(path, os.X_OK):
                found[binary] = path
        if len(found) == len(POSTGRESQL_BINARIES):
            return found
    return None


def unprivileged() -> tuple[list[str], int, int]:
    """initdb and postgres refuse to run as root: as root, run them as postgres (or nobody)."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    for user in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            continue
        prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
        return prefix, entry.pw_uid, entry.pw_gid
    raise RuntimeError("no unprivileged user to run PostgreSQL as")


@contextmanager
def local_postgresql(
    binaries: dict[str, str], user: str, password: str, database: str, port: int
) -> Iterator[None]:
    """A throw-away PostgreSQL server on 127.0.0.1:port, set up as the postgres image sets itself
    up from POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB."""
    prefix, uid, gid = unprivileged()
    with tempfile.TemporaryDirectory(prefix="microshop-postgresql-") as name:
        directory = Path(name)
        os.chown(directory, uid, gid)
        password_file = directory / "password"
        password_file.write_text(password + "\n")
        os.chown(password_file, uid, gid)
        data = directory / "data"
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
        subprocess.run(
            [
                *prefix,
                binaries["initdb"],
                f"--pgdata={data}",
                f"--username={user}",
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=60,
            env=environment,
        )
        log_file = directory / "postgresql.log"
        with log_file.open("wb") as log:
            server = subprocess.Popen(
                [
                    *prefix,
                    binaries["postgres"],
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={directory}",
                    "-c",
                    "fsync=off",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            ready = [binaries["pg_isready"], "--host=127.0.0.1", f"--port={port}"]
            while subprocess.run(ready, capture_output=True, timeout=10).returncode != 0:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start:\n{log_file.read_text()}")
                time.sleep(0.1)
            url = f"postgresql://{user}:{password}@127.0.0.1:{port}/postgres"
            subprocess.run(
                [binaries["psql"], url, "--quiet", "--command", f'CREATE DATABASE "{database}"'],
                check=True,
                capture_output=True,
                timeout=30,
            )
            yield
        finally:
            server.terminate()  # smart shutdown; the clients are gone by now
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)


@contextmanager
def run_locally(
    docs: list[Doc], directory: Path, external: dict[str, dict[str, str]]
) -> Iterator[LocalCluster]:
    """Starts the rendered workloads (PostgreSQL, then the four services) and stops them, checking
    that each service stops cleanly within its grace period."""
    cluster = LocalCluster(docs, directory, external)
    with ExitStack() as stack:
        for statefulset in of_kind(docs, "StatefulSet"):
            assert statefulset["metadata"]["name"] == "postgresql", "unknown StatefulSet"
            binaries = postgresql_binaries()
            assert binaries is not None, "PostgreSQL is not installed"
            secret = cluster.secret_for(statefulset)
            port = cluster.local_ports[("postgresql", 5432)]
            stack.enter_context(
                local_postgresql(
                    binaries,
                    secret["POSTGRES_USER"],
                    secret["POSTGRES_PASSWORD"],
                    secret["POSTGRES_DB"],
                    port,
                )
            )
        started: list[LocalPod] = []
        try:
            for name in ("db", "payment-service", "order-service", "api-gateway"):
                started.append(cluster.start(name))
            for pod in started:
                cluster.wait_ready(pod)
            yield cluster
            # The pods running now: a test may have stopped one, or started it again.
            running = [pod for pod in cluster.pods.values() if pod.process.poll() is None]
            codes = cluster.stop(running)
            for pod in running:
                assert codes[pod.name] == 0, f"{pod.name} did not stop cleanly:\n{pod.output()}"
        finally:
            for pod in [*started, *cluster.pods.values()]:
                if pod.process.poll() is None:
                    pod.process.kill()
                    pod.process.wait(timeout=10)
