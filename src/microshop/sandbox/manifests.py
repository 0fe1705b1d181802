"""The Kustomize rendering of the shop, in a sandbox's own namespace.

Kustomize does the moving: a kustomization of the sandbox's own names the overlay as its resource
and the sandbox's namespace as `namespace:`, which sets every object's namespace and renames the
overlay's Namespace object. Nothing else names a namespace (the services reach each other by bare
Service names, resolved in their own namespace), so no string is rewritten.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from microshop.common.settings import Storage
from microshop.sandbox import SandboxError

CONFIG_MAP = "microshop-config"
SANDBOX_LABEL = "microshop/sandbox"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")

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


def write_kustomization(source: Path, namespace: str, directory: Path) -> Path:
    """Writes into `directory` a kustomization that renders `source` into `namespace`, and returns
    the directory (what `kubectl kustomize` takes)."""
    directory.mkdir(parents=True, exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        # Kustomize takes only relative paths to other kustomizations.
        "resources": [os.path.relpath(source.resolve(), directory.resolve())],
    }
    (directory / "kustomization.yaml").write_text(dump([kustomization]))
    return directory


def claim_namespace(documents: list[Document], namespace: str, sandbox: str) -> None:
    """Labels the Namespace object as the sandbox's, adding one first when the manifests declare
    none (the base leaves it to whoever applies it)."""
    declared = [
        document
        for document in documents
        if document.get("kind") == "Namespace"
        and document.get("metadata", {}).get("name") == namespace
    ]
    if not declared:
        declared = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
        documents.insert(0, declared[0])
    declared[0]["metadata"].setdefault("labels", {})[SANDBOX_LABEL] = sandbox


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
