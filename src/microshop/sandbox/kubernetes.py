"""The Kubernetes backend: a sandbox is namespace `shop-<name>`, reached through a port-forward.

Create renders the Kustomize overlay into the sandbox's namespace, applies it, waits for
every rollout and starts `kubectl port-forward` to the gateway in the background; delete stops the
port-forward and deletes the namespace, which takes everything in it along. Everything goes
through the `kubectl` on PATH, with the context that was current at creation.
"""

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from microshop.ports import free_port, port_is_free
from microshop.sandbox import (
    CreateOptions,
    Health,
    Reporter,
    SandboxError,
    SandboxStatus,
    ServiceStatus,
    manifests,
    processes,
)
from microshop.sandbox.state import Phase, SandboxDirectory, SandboxRecord
from microshop.services import GATEWAY
from microshop.supervisor import LOG_TAIL_LINES

KUBECTL_TIMEOUT_SECONDS = 120.0
FORWARD_READY_SECONDS = 30.0
FORWARD_STOP_SECONDS = 5.0
NAMESPACE_PREFIX = "shop-"


@dataclass(frozen=True)
class Kubectl:
    """`kubectl`, always against the same cluster."""

    executable: str
    context: str | None = None

    @classmethod
    def find(cls, context: str | None = None) -> "Kubectl":
        executable = shutil.which("kubectl")
        if executable is None:
            raise SandboxError("kubectl is not on PATH; the kubernetes backend needs it")
        return cls(executable, context)

    def command(self, *arguments: str) -> list[str]:
        context = ["--context", self.context] if self.context else []
        return [self.executable, *context, *arguments]

    def run(
        self, *arguments: str, stdin: str | None = None, timeout: float = KUBECTL_TIMEOUT_SECONDS
    ) -> str:
        """kubectl's output; a failure raises with what kubectl said."""
        try:
            result = subprocess.run(
                self.command(*arguments),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SandboxError(f"kubectl {' '.join(arguments)} took over {timeout:g} s") from None
        if result.returncode != 0:
            said = (result.stderr or result.stdout).strip()[-3000:]
            raise SandboxError(f"kubectl {' '.join(arguments[:2])} failed: {said}")
        return result.stdout

    def current_context(self) -> str | None:
        try:
            return self.run("config", "current-context", timeout=30).strip() or None
        except SandboxError:
            return None


def kubectl_for(record: SandboxRecord) -> Kubectl:
    return Kubectl.find(record.kube_context)


class KubernetesBackend:
    def create(
        self,
        directory: SandboxDirectory,
        record: SandboxRecord,
        options: CreateOptions,
        reporter: Reporter,
    ) -> None:
        deadline = time.monotonic() + options.timeout
        found = Kubectl.find()
        kubectl = Kubectl(found.executable, found.current_context())  # pinned for the sandbox
        source = options.manifests or manifests.default_overlay()
        if source is None:
            raise SandboxError(
                "deploy/k8s/overlays/local not found here; run from a checkout or pass --manifests"
            )
        namespace = NAMESPACE_PREFIX + record.name
        record.namespace, record.kube_context = namespace, kubectl.context
        record.manifests = str(source)
        directory.save(record)

        reporter.begin("render")
        kustomization = manifests.write_kustomization(
            source, namespace, directory.kustomization_directory
        )
        rendering = found.run("kustomize", str(kustomization))  # no cluster involved
        documents = manifests.parse(rendering)
        record.database = manifests.choose_database(documents, record.database, source)
        manifests.claim_namespace(documents, namespace, record.name)
        if options.blueprint is not None:
            options.blueprint.apply_to_manifests(documents)
        rendered = manifests.dump(documents)
        directory.manifests_file.write_text(rendered)
        reporter.finish("render")

        reporter.begin("apply")
        if kubectl.run("get", "namespace", namespace, "--ignore-not-found", "-o", "name").strip():
            raise SandboxError(f"namespace {namespace} already exists; choose another name")
        record.namespace_created = True  # before applying: a kill during apply leaves it behind
        directory.save(record)
        kubectl.run("apply", "-f", "-", stdin=rendered)
        reporter.finish("apply")

        for workload in manifests.workloads(documents):
            reporter.begin(workload)
            wait_for_rollout(kubectl, namespace, workload, deadline)
            reporter.finish(workload)

        reporter.begin("port-forward")
        record.forward_port = options.base_port or free_port()
        start_forward(directory, record, kubectl)
        reporter.finish("port-forward")
        record.phase = Phase.READY
        directory.save(record)

    def status(self, directory: SandboxDirectory, record: SandboxRecord) -> SandboxStatus:
        gateway_url = forward_url(record)
        if record.namespace is None or not record.namespace_created:
            return self.creating_or_dead(record, gateway_url)
        try:
            deployments = json.loads(
                kubectl_for(record).run(
                    "get", "deployments", "-n", record.namespace, "-o", "json", timeout=30
                )
            )["items"]
        except (SandboxError, ValueError, KeyError) as error:
            return SandboxStatus(
                record.name, record.backend, Health.DEAD, gateway_url, [], str(error)
            )
        services = [rollout_status(deployment) for deployment in deployments]
        forwarding = forward_alive(record)
        gateway_ready = (
            forwarding and gateway_url is not None and processes.answers_ready(gateway_url)
        )
        creating = record.phase is Phase.CREATING and processes.is_running(record.creator_pid)
        if not services:
            return SandboxStatus(
                record.name, record.backend, Health.DEAD, gateway_url, [], "no deployments"
            )
        if all(service.ready for service in services) and gateway_ready:
            health, problem = Health.READY, None
        elif creating:
            health, problem = Health.STARTING, None
        elif all(service.ready for service in services):
            health = Health.UNHEALTHY
            problem = "the port-forward to the gateway is gone; `sandbox exec` starts it again"
        else:
            health = Health.UNHEALTHY
            problem = "not ready: " + ", ".join(s.name for s in services if not s.ready)
        return SandboxStatus(record.name, record.backend, health, gateway_url, services, problem)

    def creating_or_dead(self, record: SandboxRecord, gateway_url: str | None) -> SandboxStatus:
        if record.phase is Phase.CREATING and processes.is_running(record.creator_pid):
            return SandboxStatus(record.name, record.backend, Health.STARTING, gateway_url)
        return SandboxStatus(
            record.name,
            record.backend,
            Health.DEAD,
            gateway_url,
            [],
            "its creation was interrupted before anything was applied",
        )

    def delete(self, directory: SandboxDirectory, record: SandboxRecord) -> list[str]:
        """Stops the port-forward, then deletes the namespace without waiting for it to go."""
        known = [record.forward_pid] if record.forward_pid is not None else []
        survivors = processes.stop_all_with_token(record.token, known, FORWARD_STOP_SECONDS)
        if survivors:
            raise SandboxError(f"could not stop the port-forward (pid {survivors[0]})")
        if record.namespace is not None and record.namespace_created:
            kubectl_for(record).run(
                "delete", "namespace", record.namespace, "--wait=false", "--ignore-not-found"
            )
        return []

    def environment(self, directory: SandboxDirectory, record: SandboxRecord) -> dict[str, str]:
        """The gateway through the port-forward, started again if it died (pods restart)."""
        if record.namespace is None or record.forward_port is None:
            raise SandboxError(f"sandbox {record.name} was never fully created; delete it")
        if not forward_alive(record):
            start_forward(directory, record, kubectl_for(record))
            directory.save(record)
        return {
            "MICROSHOP_GATEWAY_URL": f"http://127.0.0.1:{record.forward_port}",
            "MICROSHOP_NAMESPACE": record.namespace,
        }

    def logs(
        self,
        directory: SandboxDirectory,
        record: SandboxRecord,
        service: str | None,
        tail: int | None,
        follow: bool,
    ) -> Iterator[str]:
        """`kubectl logs` of one service or of all, each line prefixed with its pod."""
        assert record.namespace is not None
        selector = (
            f"app.kubernetes.io/name={service}"
            if service
            else "app.kubernetes.io/part-of=microshop"
        )
        arguments = ["logs", "-n", record.namespace, "-l", selector, "--prefix"]
        arguments += [f"--tail={tail if tail is not None else -1}", "--max-log-requests=20"]
        if follow:
            arguments.append("--follow")
        with subprocess.Popen(
            kubectl_for(record).command(*arguments), stdout=subprocess.PIPE, text=True
        ) as kubectl:
            assert kubectl.stdout is not None
            for line in kubectl.stdout:
                yield line.rstrip("\n")


def wait_for_rollout(kubectl: Kubectl, namespace: str, workload: str, deadline: float) -> None:
    """Returns once the rollout is complete; otherwise raises with the workload's last logs."""
    remaining = max(1, int(deadline - time.monotonic()))
    try:
        kubectl.run(
            "rollout",
            "status",
            workload,
            "-n",
            namespace,
            f"--timeout={remaining}s",
            timeout=remaining + 30,
        )
    except SandboxError as error:
        try:
            logs = kubectl.run(
                "logs", "-n", namespace, workload, f"--tail={LOG_TAIL_LINES}", "--all-containers"
            )
        except SandboxError as logs_error:
            logs = str(logs_error)
        tail = "\n".join(f"  {line}" for line in logs.splitlines()) or "  (nothing)"
        raise SandboxError(
            f"{workload} did not roll out: {error}\nIts last output:\n{tail}"
        ) from None


def forward_url(record: SandboxRecord) -> str | None:
    return f"http://127.0.0.1:{record.forward_port}" if record.forward_port else None


def forward_alive(record: SandboxRecord) -> bool:
    return record.forward_pid is not None and processes.carries_token(
        record.forward_pid, record.token
    )


def start_forward(directory: SandboxDirectory, record: SandboxRecord, kubectl: Kubectl) -> None:
    """`kubectl port-forward` to the gateway's Service, detached; returns once it answers."""
    assert record.namespace is not None and record.forward_port is not None
    if not port_is_free(record.forward_port):
        record.forward_port = free_port()
    command = kubectl.command(
        "port-forward",
        "-n",
        record.namespace,
        f"service/{GATEWAY.name}",
        f"{record.forward_port}:{GATEWAY.default_port}",
    )
    with directory.forward_log_file.open("ab") as log:
        forward = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=forward_environment(record),
            start_new_session=True,
        )
    record.forward_pid = forward.pid
    directory.save(record)
    url = forward_url(record)
    assert url is not None
    ready_by = time.monotonic() + FORWARD_READY_SECONDS
    while not processes.answers_ready(url):
        if forward.poll() is not None or time.monotonic() > ready_by:
            said = tail_of(directory.forward_log_file)
            raise SandboxError(f"the port-forward to {GATEWAY.name} did not work:\n{said}")
        time.sleep(0.2)


def forward_environment(record: SandboxRecord) -> dict[str, str]:
    return {**os.environ, **processes.token_environment(record.token)}


def rollout_status(deployment: dict[str, object]) -> ServiceStatus:
    metadata = deployment.get("metadata")
    spec = deployment.get("spec")
    status = deployment.get("status")
    name = str(metadata.get("name")) if isinstance(metadata, dict) else "?"
    wanted = int(spec.get("replicas", 1)) if isinstance(spec, dict) else 1
    ready = int(status.get("readyReplicas", 0) or 0) if isinstance(status, dict) else 0
    return ServiceStatus(name, ready >= wanted, detail=f"{ready}/{wanted} ready")


def tail_of(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        lines = []
    return "\n".join(f"  {line}" for line in lines) or "  (nothing)"
