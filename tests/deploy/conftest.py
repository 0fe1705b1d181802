"""Each overlay is rendered once, every component combination once, and the policy scan runs once
over the overlays, per test run."""

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import DOCKERFILE, K8S, OVERLAYS, Doc, checkov, render, render_stack

RENDERED = ("base", *OVERLAYS)
COMPONENTS = (
    "namespace",
    "internal-auth",
    "postgresql",
    "network-policies",
    "prometheus-operator",  # after network-policies: it adds a rule to their policies
    "observability",  # after network-policies, likewise
    "load-generator",
    "ingress",
    "gateway-api",
)
"""Every component, in the order an overlay lists them."""
ELSEWHERE = "elsewhere"
"""A namespace other than the overlays' own."""


def overlay_directory(name: str) -> Path:
    return K8S / name if name == "base" else K8S / "overlays" / name


def kustomization(name: str) -> Doc:
    text = (overlay_directory(name) / "kustomization.yaml").read_text()
    loaded: Doc = yaml.safe_load(text)
    return loaded


def included_components(name: str) -> tuple[str, ...]:
    """The components an overlay already lists (the base lists none)."""
    return tuple(Path(path).name for path in kustomization(name).get("components", []))


@dataclass(frozen=True)
class Combination:
    """Components added on top of the base or an overlay, as Online Boutique's kustomize/tests do:
    each component alone and every pair, of those the overlay does not list already."""

    overlay: str
    components: tuple[str, ...]

    @property
    def namespace(self) -> str | None:
        """Added to an overlay, the components join its namespace, as they would when listed in it.
        The base names none; components/namespace is used with one, as its README says."""
        if self.overlay != "base":
            namespace: str = kustomization(self.overlay)["namespace"]
            return namespace
        return ELSEWHERE if "namespace" in self.components else None

    def __str__(self) -> str:
        return f"{self.overlay}+{'+'.join(self.components)}"


def addable_components(overlay: str) -> tuple[str, ...]:
    return tuple(name for name in COMPONENTS if name not in included_components(overlay))


def combinations() -> list[Combination]:
    found = []
    for overlay in RENDERED:
        for size in (1, 2):
            found += [
                Combination(overlay, pair)
                for pair in itertools.combinations(addable_components(overlay), size)
            ]
    return found


COMBINATIONS = combinations()
FULL_STACKS = tuple(Combination(overlay, addable_components(overlay)) for overlay in OVERLAYS)
"""Each overlay with every other component at once: what the policy scan sees besides them."""
SCANNED = (*OVERLAYS, *(str(stack) for stack in FULL_STACKS))


def render_combination(directory: Path, combination: Combination) -> list[Doc]:
    return render_stack(
        directory / str(combination),
        overlay_directory(combination.overlay),
        [K8S / "components" / name for name in combination.components],
        combination.namespace,
    )


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Doc]]:
    """The objects of the base and of every overlay, as `kubectl kustomize` renders them."""
    return {name: render(overlay_directory(name)) for name in RENDERED}


@pytest.fixture(scope="session")
def rendered_combinations(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[Combination, list[Doc]]:
    """Every combination rendered once, a few at a time (each render is one kubectl process)."""
    directory = tmp_path_factory.mktemp("combinations")
    with ThreadPoolExecutor(max_workers=4) as pool:
        renders = pool.map(
            lambda combination: render_combination(directory, combination), COMBINATIONS
        )
        return dict(zip(COMBINATIONS, renders, strict=True))


@pytest.fixture(scope="session")
def checkov_failures(
    rendered: dict[str, list[Doc]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[str]]:
    """Failed checks of one checkov run over every rendered overlay, each overlay with all other
    components, and the Dockerfile, by name."""
    directory = tmp_path_factory.mktemp("rendered")
    scanned = {name: rendered[name] for name in OVERLAYS}
    scanned |= {str(stack): render_combination(directory, stack) for stack in FULL_STACKS}
    files = {}
    for name, docs in scanned.items():
        files[name] = directory / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump_all(docs, sort_keys=False))
    failures = checkov([*files.values(), DOCKERFILE], frameworks=("kubernetes", "dockerfile"))
    by_name = {name: failures[str(file)] for name, file in files.items()}
    by_name["Dockerfile"] = failures[str(DOCKERFILE)]
    return by_name
