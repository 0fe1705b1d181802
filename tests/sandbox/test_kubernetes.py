"""Kubernetes sandboxes against a fake `kubectl` (tests/sandbox/fake_kubectl.py) first on PATH.

No cluster exists here, so these tests check what a cluster would be told: the exact command
lines, and the manifests given to `kubectl apply`. The fake's port-forward leads to a real shop
on 127.0.0.1, so what `sandbox exec` reaches is a real gateway.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.sandbox.conftest import SandboxCli, accepts_connections, alive, start_sandbox_server
from tests.shops import RunningShop
from tests.system_tools import missing_system_tool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAKE_KUBECTL = Path(__file__).with_name("fake_kubectl.py")
REPOSITORY = Path(__file__).resolve().parents[2]
LOCAL_OVERLAY = REPOSITORY / "deploy" / "k8s" / "overlays" / "local"
CONTEXT = ["--context", "kind-sandbox-tests"]
DEPLOYMENTS = ["api-gateway", "db", "order-service", "payment-service"]


@dataclass
class FakeKubectl:
    directory: Path

    def calls(self) -> list[dict[str, Any]]:
        log = self.directory / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def command_lines(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]

    def applied(self) -> list[dict[str, Any]]:
        [stdin] = [call["stdin"] for call in self.calls() if "apply" in call["argv"]]
        return [document for document in yaml.safe_load_all(stdin) if document]


@pytest.fixture
def kubectl(tmp_path: Path, shop: RunningShop, sandbox_cli: SandboxCli) -> Iterator[FakeKubectl]:
    real = shutil.which("kubectl")
    if real is None:
        missing_system_tool(
            "kubectl is not installed: the fake renders with the real `kubectl kustomize`"
        )
    directory = tmp_path / "kubectl"
    (directory / "bin").mkdir(parents=True)
    wrapper = directory / "bin" / "kubectl"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_KUBECTL}" "$@"\n')
    wrapper.chmod(0o755)
    sandbox_cli.environment.update(
        PATH=f"{directory / 'bin'}{os.pathsep}{os.environ['PATH']}",
        FAKE_KUBECTL_DIR=str(directory),
        FAKE_KUBECTL_REAL=real,
        FAKE_KUBECTL_UPSTREAM=f"127.0.0.1:{shop.ports['api-gateway']}",
    )
    yield FakeKubectl(directory)


def create(cli: SandboxCli, name: str, *options: str, **environment: str) -> Any:
    return cli.run("create", name, "--backend", "kubernetes", *options, **environment)


def test_create_applies_the_overlay_in_its_own_namespace_and_forwards_to_the_gateway(
    sandbox_cli: SandboxCli, kubectl: FakeKubectl
) -> None:
    result = create(sandbox_cli, "k1")

    assert result.returncode == 0, result.stderr
    record = sandbox_cli.record("k1")
    port = record["forward_port"]
    kustomization = sandbox_cli.directory("k1") / "kustomization"
    assert kubectl.command_lines() == [
        ["config", "current-context"],
        ["kustomize", str(kustomization)],  # the overlay, into namespace shop-k1
        [*CONTEXT, "get", "namespace", "shop-k1", "--ignore-not-found", "-o", "name"],
        [*CONTEXT, "apply", "-f", "-"],
        *(
            [*CONTEXT, "rollout", "status", f"deployment/{name}", "-n", "shop-k1", timeout]
            for name, timeout in zip(DEPLOYMENTS, timeouts(kubectl), strict=True)
        ),
        [*CONTEXT, "port-forward", "-n", "shop-k1", "service/api-gateway", f"{port}:3000"],
        [*CONTEXT, "get", "deployments", "-n", "shop-k1", "-o", "json"],  # the final check
    ]
    assert f"http://127.0.0.1:{port}" in result.stdout
    written = yaml.safe_load((kustomization / "kustomization.yaml").read_text())
    assert written["namespace"] == "shop-k1"
    assert (kustomization / written["resources"][0]).resolve() == LOCAL_OVERLAY.resolve()


def timeouts(kubectl: FakeKubectl) -> list[str]:
    """The --timeout of each rollout: whatever remained of create's budget, in seconds."""
    found = [argv[-1] for argv in kubectl.command_lines() if "rollout" in argv]
    assert all(re.fullmatch(r"--timeout=\d+s", timeout) for timeout in found)
    return found


def test_the_applied_manifests_live_in_the_sandboxs_namespace_only(
    sandbox_cli: SandboxCli, kubectl: FakeKubectl
) -> None:
    assert create(sandbox_cli, "k2").returncode == 0
    applied = kubectl.applied()
    rendered = kubectl_kustomize(LOCAL_OVERLAY)

    assert [(d["kind"], d["metadata"]["name"]) for d in applied] == [
        (d["kind"], d["metadata"]["name"] if d["kind"] != "Namespace" else "shop-k2")
        for d in rendered
    ]
    [namespace] = [d for d in applied if d["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["microshop/sandbox"] == "k2"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"].get("namespace") for d in applied if d["kind"] != "Namespace"} == {
        "shop-k2"
    }
    [config] = [d for d in applied if d["kind"] == "ConfigMap"]
    assert config["data"]["MICROSHOP_ORDER_SERVICE_URL"] == "http://order-service:3002"
    assert config["data"]["MICROSHOP_PAYMENT_SERVICE_URL"] == "http://payment-service:3001"
    assert config["data"]["MICROSHOP_DB_SERVICE_URL"] == "http://db:3004"
    text = yaml.safe_dump_all(applied)
    assert not re.search(r"\bshop\b(?!-k2)", text)
    saved = (sandbox_cli.directory("k2") / "manifests.yaml").read_text()
    assert list(yaml.safe_load_all(saved)) == applied


def kubectl_kustomize(directory: Path) -> list[dict[str, Any]]:
    real = shutil.which("kubectl")
    assert real is not None
    output = subprocess.run(
        [real, "kustomize", str(directory)], capture_output=True, text=True, check=True
    ).stdout
    return [document for document in yaml.safe_load_all(output) if document]


def test_exec_status_logs_and_delete_go_through_kubectl(
    sandbox_cli: SandboxCli, kubectl: FakeKubectl, shop: RunningShop
) -> None:
    assert create(sandbox_cli, "k3").returncode == 0
    record = sandbox_cli.record("k3")
    forward = record["forward_pid"]
    probe = "import os, httpx; print(httpx.get(os.environ['MICROSHOP_GATEWAY_URL'] + '/orders'))"

    executed = sandbox_cli.run("exec", "k3", "--", sys.executable, "-c", probe)
    status = sandbox_cli.run("status", "k3")
    logs = sandbox_cli.run("logs", "k3", "db", "--tail", "5")

    assert executed.returncode == 0, executed.stderr
    assert "200 OK" in executed.stdout  # the shop behind the port-forward answered
    assert status.returncode == 0
    for name in DEPLOYMENTS:
        assert re.search(rf"{name}\s+│ 1/1 ready", status.stdout)
    assert logs.stdout.splitlines()[0] == "fake log line 0 of app.kubernetes.io/name=db"
    assert [*CONTEXT, "logs", "-n", "shop-k3", "-l", "app.kubernetes.io/name=db", "--prefix"] == (
        kubectl.command_lines()[-1][:8]
    )

    deleted = sandbox_cli.run("delete", "k3")

    assert deleted.returncode == 0, deleted.stderr
    assert kubectl.command_lines()[-1] == [
        *CONTEXT,
        "delete",
        "namespace",
        "shop-k3",
        "--wait=false",
        "--ignore-not-found",
    ]
    assert not alive(forward)
    assert not accepts_connections(record["forward_port"])
    assert sandbox_cli.sandboxes() == []
    assert httpx.get(shop.gateway_url + "/readyz").status_code == 200  # only the forward went


def test_exec_starts_a_dead_port_forward_again(
    sandbox_cli: SandboxCli, kubectl: FakeKubectl
) -> None:
    assert create(sandbox_cli, "k4").returncode == 0
    first = sandbox_cli.record("k4")["forward_pid"]
    os.kill(first, 9)

    broken = sandbox_cli.run("status", "k4")
    executed = sandbox_cli.run("exec", "k4", "--", "true")

    assert broken.returncode == 1
    assert "port-forward" in broken.stdout
    assert executed.returncode == 0, executed.stderr
    assert sandbox_cli.record("k4")["forward_pid"] != first
    assert sandbox_cli.run("status", "k4").returncode == 0


def test_a_failed_rollout_shows_the_logs_and_deletes_the_namespace(
    sandbox_cli: SandboxCli, kubectl: FakeKubectl
) -> None:
    result = create(sandbox_cli, "k5", FAKE_KUBECTL_FAIL_ROLLOUT="deployment/order-service")

    assert result.returncode == 1
    assert "deployment/order-service did not roll out" in result.stderr
    assert "fake log line 2 of deployment/order-service" in result.stderr
    lines = kubectl.command_lines()
    assert [*CONTEXT, "logs", "-n", "shop-k5", "deployment/order-service"] == lines[-2][:6]
    assert lines[-1] == [
        *CONTEXT,
        "delete",
        "namespace",
        "shop-k5",
        "--wait=false",
        "--ignore-not-found",
    ]
    assert not any("port-forward" in argv for argv in lines)
    sandbox_cli.assert_nothing_left()


def test_an_existing_namespace_is_never_touched(
    sandbox_cli: SandboxCli, kubectl: FakeKubectl
) -> None:
    result = create(sandbox_cli, "k6", FAKE_KUBECTL_EXISTING="shop-k6")

    assert result.returncode == 1
    assert "namespace shop-k6 already exists" in result.stderr
    assert not any("apply" in argv or "delete" in argv for argv in kubectl.command_lines())
    sandbox_cli.assert_nothing_left()


def test_memory_storage_is_set_in_the_config_map(
    sandbox_cli: SandboxCli, kubectl: FakeKubectl
) -> None:
    assert create(sandbox_cli, "k7", "--database", "memory").returncode == 0

    [config] = [d for d in kubectl.applied() if d["kind"] == "ConfigMap"]
    assert config["data"]["MICROSHOP_STORAGE"] == "memory"
    assert sandbox_cli.record("k7")["database"] == "memory"


def test_postgresql_needs_manifests_that_provide_it(
    sandbox_cli: SandboxCli, kubectl: FakeKubectl, tmp_path: Path
) -> None:
    refused = create(sandbox_cli, "k8", "--database", "postgresql")
    assert refused.returncode == 1
    assert "components/postgresql" in refused.stderr
    assert not any("apply" in argv for argv in kubectl.command_lines())

    overlay = tmp_path / "with-postgresql"
    overlay.mkdir()
    postgresql = REPOSITORY / "deploy" / "k8s" / "components" / "postgresql"
    (overlay / "kustomization.yaml").write_text(  # kustomize wants relative paths
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{os.path.relpath(LOCAL_OVERLAY, overlay)}]\n"
        f"components: [{os.path.relpath(postgresql, overlay)}]\n"
    )
    accepted = create(sandbox_cli, "k9", "--manifests", str(overlay))

    assert accepted.returncode == 0, accepted.stderr
    assert sandbox_cli.record("k9")["database"] == "postgresql"
    [secret] = [
        d
        for d in kubectl.applied()
        if d["kind"] == "Secret" and d["metadata"]["name"] == "microshop-database"
    ]
    assert "@postgresql:5432/" in secret["stringData"]["MICROSHOP_DATABASE_URL"]
    assert {
        d["metadata"].get("namespace") for d in kubectl.applied() if d["kind"] != "Namespace"
    } == {"shop-k9"}


def test_a_blueprint_gives_one_deployment_another_image(
    sandbox_cli: SandboxCli, kubectl: FakeKubectl, tmp_path: Path
) -> None:
    blueprint = tmp_path / "blueprint.json"
    blueprint.write_text(
        json.dumps(
            {
                "services": {
                    "order-service": {
                        "image": "registry.example/microshop:pr-7",
                        "environment": {"MICROSHOP_LOG_LEVEL": "DEBUG"},
                    }
                }
            }
        )
    )
    local_only = tmp_path / "local-only.json"
    local_only.write_text('{"services": {"db": {"command": ["true"]}}}')

    refused = create(sandbox_cli, "k10", "--blueprint", str(local_only))
    assert refused.returncode == 1 and "for the local backend" in refused.stderr
    assert create(sandbox_cli, "k11", "--blueprint", str(blueprint)).returncode == 0

    deployments = {d["metadata"]["name"]: d for d in kubectl.applied() if d["kind"] == "Deployment"}
    images = {
        name: {c["image"] for c in d["spec"]["template"]["spec"]["containers"]}
        for name, d in deployments.items()
    }
    assert images.pop("order-service") == {"registry.example/microshop:pr-7"}
    assert {image for each in images.values() for image in each} == {"microshop:local"}
    [server] = deployments["order-service"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "MICROSHOP_LOG_LEVEL", "value": "DEBUG"} in server["env"]
    status = sandbox_cli.run("status", "k11", COLUMNS="200")
    assert "image registry.example/microshop:pr-7" in " ".join(status.stdout.split())


def test_the_sandbox_server_creates_and_deletes_kubernetes_sandboxes(
    sandbox_cli: SandboxCli, kubectl: FakeKubectl
) -> None:
    server = start_sandbox_server(
        sandbox_cli.home, "--backend", "kubernetes", **sandbox_cli.environment
    )
    image = {"services": {"api-gateway": {"image": "microshop:pr-9"}}}
    try:
        with server.client() as client:
            local = client.post("/sandboxes", json={"name": "k12"})
            assert local.status_code == 422 and "offers kubernetes" in local.json()["detail"]
            created = client.post(
                "/sandboxes",
                params={"wait": 100},
                json={"name": "k12", "backend": "kubernetes", "blueprint": image},
            )
            assert created.status_code == 201, created.text
            sandbox = created.json()

            assert sandbox["status"] == "ready" and sandbox["backend"] == "kubernetes"
            assert httpx.get(sandbox["gateway_url"] + "/readyz").status_code == 200
            overrides = {service["name"]: service["override"] for service in sandbox["services"]}
            assert overrides == {
                "api-gateway": "image microshop:pr-9",
                "db": None,
                "order-service": None,
                "payment-service": None,
            }
            environment = client.get("/sandboxes/k12/environment").text
            assert "MICROSHOP_NAMESPACE=shop-k12\n" in environment

            assert client.delete("/sandboxes/k12").status_code == 204
        assert [*CONTEXT, "delete", "namespace", "shop-k12"] == kubectl.command_lines()[-1][:5]
    finally:
        assert server.stop() == 0
