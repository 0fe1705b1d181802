"""The manifests rendered into a sandbox's namespace by kustomize, and the storage chosen."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from microshop.common.settings import Storage
from microshop.sandbox import SandboxError
from microshop.sandbox.manifests import (
    choose_database,
    claim_namespace,
    workloads,
    write_kustomization,
)
from tests.system_tools import missing_system_tool

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def render(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        missing_system_tool("kubectl is not installed")
    output = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=True
    ).stdout
    return [document for document in yaml.safe_load_all(output) if document]


@pytest.mark.parametrize("source", ["base", "overlays/local", "overlays/production"])
def test_kustomize_renders_every_object_into_the_sandbox_namespace(
    source: str, tmp_path: Path
) -> None:
    kustomization = write_kustomization(K8S / source, "shop-test", tmp_path / "kustomization")

    documents = render(kustomization)
    claim_namespace(documents, "shop-test", "test")

    namespaced = [d for d in documents if d["kind"] != "Namespace"]
    assert len(namespaced) == len(render(K8S / source)) - (source != "base")
    assert {d["metadata"].get("namespace") for d in namespaced} == {"shop-test"}
    [namespace] = [d for d in documents if d["kind"] == "Namespace"]
    assert namespace["metadata"]["name"] == "shop-test"
    assert namespace["metadata"]["labels"]["microshop/sandbox"] == "test"
    text = yaml.safe_dump_all(documents)
    assert not re.search(r"\bshop\b(?!-test)", text)  # not as a namespace, not in a URL


def test_a_namespace_declared_by_the_manifests_keeps_its_labels() -> None:
    documents: list[dict[str, Any]] = [
        {"kind": "Namespace", "metadata": {"name": "shop-x", "labels": {"a": "b"}}},
        {"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop-x"}},
    ]

    claim_namespace(documents, "shop-x", "x")

    assert len(documents) == 2
    assert documents[0]["metadata"]["labels"] == {"a": "b", "microshop/sandbox": "x"}


def test_storage_follows_the_manifests_unless_asked_otherwise() -> None:
    local = render(K8S / "overlays" / "local")
    production = render(K8S / "overlays" / "production")

    assert choose_database(local, None, Path("local")) is Storage.SQLITE
    assert choose_database(production, None, Path("production")) is Storage.POSTGRESQL
    with pytest.raises(SandboxError, match="components/postgresql"):
        choose_database(local, Storage.POSTGRESQL, Path("local"))
    with pytest.raises(SandboxError, match="keep orders in PostgreSQL"):
        choose_database(production, Storage.MEMORY, Path("production"))
    assert choose_database(local, Storage.MEMORY, Path("local")) is Storage.MEMORY
    [config] = [d for d in local if d["kind"] == "ConfigMap"]
    assert config["data"]["MICROSHOP_STORAGE"] == "memory"


def test_workloads_are_every_deployment_and_statefulset() -> None:
    production = render(K8S / "overlays" / "production")

    assert sorted(workloads(production)) == [
        "deployment/api-gateway",
        "deployment/db",
        "deployment/order-service",
        "deployment/payment-service",
        "statefulset/postgresql",
    ]
