"""The Kustomize rendering of the shop, moved from namespace `shop` to a sandbox's own namespace.

Every object's `metadata.namespace`, the Namespace object itself, namespace selectors, and the
kube-dns names the services are wired with (`http://db.shop:3004` in the ConfigMap,
`...@postgresql.shop:5432/...` in a Secret) move together; otherwise a sandbox would quietly call
the services of namespace `shop`.
"""

import base64
import binascii
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from microshop.common.settings import Storage
from microshop.sandbox import SandboxError

BASE_NAMESPACE = "shop"
CONFIG_MAP = "microshop-config"
NAMESPACE_KEYS = ("namespace", "kubernetes.io/metadata.name")
"""Keys whose value is a namespace's name: object metadata, subjects, namespace selectors."""
SANDBOX_LABEL = "microshop/sandbox"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
SERVICE_ADDRESS = re.compile(
    rf"(?<=[a-z0-9])\.{BASE_NAMESPACE}"
    r"(?=(?:\.svc(?:\.cluster\.local)?)?(?::\d+)?(?:[/?\s,;\"']|$))"
)
"""The namespace part of `<service>.shop[.svc[.cluster.local]][:port]` inside a string."""

Document = dict[str, Any]


def default_overlay() -> Path | None:
    """`deploy/k8s/overlays/local` of the checkout we run from: the working directory's, or the
    one this package was installed from in editable mode."""
    relative = Path("deploy/k8s/overlays/local")
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for directory in (start, *start.parents):
            if (directory / relative / "kustomization.yaml").is_file():
                return directory / relative
    return None


def yaml_module() -> Any:
    """PyYAML, imported only here: the shop itself never reads YAML."""
    try:
        import yaml  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise SandboxError("the kubernetes backend needs PyYAML: pip install pyyaml") from None
    return yaml


def parse(text: str) -> list[Document]:
    return [document for document in yaml_module().safe_load_all(text) if document]


def dump(documents: list[Document]) -> str:
    return str(yaml_module().safe_dump_all(documents, sort_keys=False))


def move_to_namespace(documents: list[Document], namespace: str, sandbox: str) -> None:
    """Renames namespace `shop` to `namespace` everywhere in `documents`, in place."""
    for document in documents:
        metadata = document.setdefault("metadata", {})
        if document.get("kind") == "Namespace" and metadata.get("name") == BASE_NAMESPACE:
            metadata["name"] = namespace
            metadata.setdefault("labels", {})[SANDBOX_LABEL] = sandbox
        rename_in(document, namespace)
        if document.get("kind") == "Secret":
            rename_in_secret_data(document.get("data") or {}, namespace)


def rename_in(node: Any, namespace: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in NAMESPACE_KEYS and value == BASE_NAMESPACE:
                node[key] = namespace
            elif isinstance(value, str):
                node[key] = SERVICE_ADDRESS.sub(f".{namespace}", value)
            else:
                rename_in(value, namespace)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, str):
                node[index] = SERVICE_ADDRESS.sub(f".{namespace}", value)
            else:
                rename_in(value, namespace)


def rename_in_secret_data(data: dict[str, Any], namespace: str) -> None:
    """A Secret's `data` is base64: the URLs in it move too."""
    for key, value in data.items():
        try:
            text = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
        data[key] = base64.b64encode(SERVICE_ADDRESS.sub(f".{namespace}", text).encode()).decode()


def containers(document: Document) -> Iterator[Document]:
    spec = document.get("spec", {}).get("template", {}).get("spec", {})
    yield from spec.get("containers", [])
    yield from spec.get("initContainers", [])


def uses_postgresql(documents: list[Document]) -> bool:
    """Whether some workload is given MICROSHOP_DATABASE_URL (components/postgresql does that)."""
    return any(
        variable.get("name") == "MICROSHOP_DATABASE_URL"
        for document in documents
        if document.get("kind") in WORKLOAD_KINDS
        for container in containers(document)
        for variable in container.get("env", [])
    )


def config_map(documents: list[Document]) -> Document | None:
    for document in documents:
        if document.get("kind") == "ConfigMap" and (
            document.get("metadata", {}).get("name") == CONFIG_MAP
        ):
            return document
    return None


def choose_database(documents: list[Document], wanted: Storage | None, source: Path) -> Storage:
    """Sets the storage asked for, where the manifests allow it; returns the one used."""
    postgresql = uses_postgresql(documents)
    if wanted is None:
        return Storage.POSTGRESQL if postgresql else Storage.SQLITE
    if wanted is Storage.POSTGRESQL and not postgresql:
        raise SandboxError(
            f"the manifests in {source} keep orders in sqlite; for PostgreSQL pass --manifests "
            "with an overlay that includes deploy/k8s/components/postgresql"
        )
    if wanted is not Storage.POSTGRESQL and postgresql:
        raise SandboxError(
            f"the manifests in {source} keep orders in PostgreSQL; pass --database postgresql "
            "or --manifests with an overlay without it"
        )
    if wanted is Storage.MEMORY:
        config = config_map(documents)
        if config is None:
            raise SandboxError(f"the manifests in {source} have no ConfigMap {CONFIG_MAP}")
        config.setdefault("data", {})["MICROSHOP_STORAGE"] = Storage.MEMORY.value
    return wanted


def workloads(documents: list[Document]) -> list[str]:
    """`deployment/<name>` and `statefulset/<name>` of each workload, in manifest order."""
    return [
        f"{document['kind'].lower()}/{document['metadata']['name']}"
        for document in documents
        if document.get("kind") in WORKLOAD_KINDS
    ]
