"""Each overlay is rendered once, and the policy scan runs once over all of them, per test run."""

from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import DOCKERFILE, K8S, OVERLAYS, Doc, checkov, render

RENDERED = ("base", *OVERLAYS)


def overlay_directory(name: str) -> Path:
    return K8S / name if name == "base" else K8S / "overlays" / name


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Doc]]:
    """The objects of the base and of every overlay, as `kubectl kustomize` renders them."""
    return {name: render(overlay_directory(name)) for name in RENDERED}


@pytest.fixture(scope="session")
def checkov_failures(
    rendered: dict[str, list[Doc]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[str]]:
    """Failed checks of one checkov run over every rendered overlay and the Dockerfile, by name."""
    directory = tmp_path_factory.mktemp("rendered")
    files = {}
    for name in OVERLAYS:
        files[name] = directory / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump_all(rendered[name], sort_keys=False))
    failures = checkov([*files.values(), DOCKERFILE], frameworks=("kubernetes", "dockerfile"))
    by_name = {name: failures[str(file)] for name, file in files.items()}
    by_name["Dockerfile"] = failures[str(DOCKERFILE)]
    return by_name
