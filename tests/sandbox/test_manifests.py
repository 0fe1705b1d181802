"""Moving the rendered manifests from namespace `shop` to a sandbox's namespace, in process."""

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from microshop.common.settings import Storage
from microshop.sandbox import SandboxError
from microshop.sandbox.manifests import choose_database, move_to_namespace, workloads
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
def test_no_trace_of_namespace_shop_is_left_in_any_rendering(source: str) -> None:
    documents = render(K8S / source)
    count = len(documents)

    move_to_namespace(documents, "shop-test", "test")

    text = yaml.safe_dump_all(documents)
    assert len(documents) == count
    assert not re.search(r"(namespace|name): shop\n|\.shop\b(?!-test)", text)
    assert {d["metadata"].get("namespace") for d in documents if d["kind"] != "Namespace"} == {
        "shop-test"
    }


def test_every_way_of_naming_the_namespace_moves() -> None:
    url = "postgresql://u:p@postgresql.shop:5432/shop"
    documents: list[dict[str, Any]] = [
        {"kind": "Namespace", "metadata": {"name": "shop"}},
        {
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "shop"},
            "data": {
                "A": "http://db.shop:3004",
                "B": "http://db.shop.svc.cluster.local:3004/x",
                "C": "--peer=order-service.shop.svc --other",
                "D": "www.shopping.example, microshop, shop",
            },
        },
        {
            "kind": "NetworkPolicy",
            "metadata": {"name": "n", "namespace": "shop"},
            "spec": {
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "shop"}
                                }
                            }
                        ]
                    }
                ]
            },
        },
        {
            "kind": "Secret",
            "metadata": {"name": "s", "namespace": "shop"},
            "data": {"URL": base64.b64encode(url.encode()).decode()},
        },
    ]

    move_to_namespace(documents, "shop-x", "x")

    namespace, config, policy, secret = documents
    assert namespace["metadata"] == {"name": "shop-x", "labels": {"microshop/sandbox": "x"}}
    assert config["data"] == {
        "A": "http://db.shop-x:3004",
        "B": "http://db.shop-x.svc.cluster.local:3004/x",
        "C": "--peer=order-service.shop-x.svc --other",
        "D": "www.shopping.example, microshop, shop",  # not names of the namespace
    }
    selector = policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]
    assert selector == {"kubernetes.io/metadata.name": "shop-x"}
    decoded = base64.b64decode(secret["data"]["URL"]).decode()
    assert decoded == "postgresql://u:p@postgresql.shop-x:5432/shop"  # the database keeps its name


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
