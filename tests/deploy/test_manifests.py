"""The manifests render, match the Kubernetes schemas, pass the policy scan and are wired right."""

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import (
    COMBINATIONS,
    COMPONENTS,
    ELSEWHERE,
    FULL_STACKS,
    RENDERED,
    SCANNED,
    Combination,
    overlay_directory,
)
from tests.deploy.manifests import (
    DOCKERFILE,
    EXAMPLE_PRODUCTION_SECRETS,
    K8S,
    MINIMUM_KUBERNETES,
    OVERLAY_NAMESPACE,
    OVERLAYS,
    ROOT,
    Doc,
    find,
    hadolint,
    minimum_version_problems,
    namespace_of,
    of_kind,
    out_of_band_secrets,
    pod_spec,
    render_stack,
    require_tool,
    required_release,
    schema_problems,
    schema_versions,
    wiring_problems,
)
from tests.deploy.network_policies import network_problems

MICROSHOP_DEPLOYMENTS = ("api-gateway", "order-service", "payment-service", "db")


@pytest.mark.parametrize("name", RENDERED)
def test_renders_objects_that_match_the_kubernetes_schemas(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    assert rendered[name], "nothing rendered"
    assert schema_problems(rendered[name], schema_versions()) == []


@pytest.mark.parametrize("name", SCANNED)
def test_overlay_passes_the_policy_scan(checkov_failures: dict[str, list[str]], name: str) -> None:
    assert checkov_failures[name] == []


def test_dockerfile_passes_hadolint_and_the_policy_scan(
    checkov_failures: dict[str, list[str]],
) -> None:
    assert hadolint(DOCKERFILE) == []
    assert checkov_failures["Dockerfile"] == []


@pytest.mark.parametrize("name", RENDERED)
def test_services_ports_addresses_probes_and_pods_are_wired(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    assert wiring_problems(rendered[name], out_of_band_secrets(name)) == []


def public_services(docs: list[Doc]) -> set[str]:
    types = {s["metadata"]["name"]: s["spec"].get("type") for s in of_kind(docs, "Service")}
    assert set(types.values()) <= {"LoadBalancer", "ClusterIP"}
    return {service for service, kind in types.items() if kind == "LoadBalancer"}


def test_every_service_has_a_deployment_and_only_the_gateway_is_public(
    rendered: dict[str, list[Doc]],
) -> None:
    for name in RENDERED:
        docs = rendered[name]
        for service in MICROSHOP_DEPLOYMENTS:
            assert find(docs, "Deployment", service) is not None, (name, service)
        assert public_services(docs) == {"api-gateway"}, name


def test_the_overlays_name_their_namespace_and_the_base_names_none(
    rendered: dict[str, list[Doc]],
) -> None:
    assert namespace_of(rendered["base"]) is None  # `kubectl apply -k base -n NAME` works
    assert of_kind(rendered["base"], "Namespace") == []
    for name in OVERLAYS:
        assert namespace_of(rendered[name]) == OVERLAY_NAMESPACE
        assert find(rendered[name], "Namespace", OVERLAY_NAMESPACE) is not None


@pytest.mark.parametrize(
    "stack", [*(Combination(name, ()) for name in RENDERED), *FULL_STACKS], ids=str
)
def test_rendered_into_another_namespace_nothing_names_the_overlays_namespace(
    stack: Combination, tmp_path: Path
) -> None:
    """`kustomize edit set namespace` (here: a kustomization of its own) moves everything, every
    component's objects too: no object, selector or URL is left pointing at namespace shop."""
    components = [K8S / "components" / name for name in stack.components]
    docs = render_stack(tmp_path, overlay_directory(stack.overlay), components, ELSEWHERE)

    text = yaml.safe_dump_all(docs)
    word = rf"\b{OVERLAY_NAMESPACE}\b"
    assert not re.search(word, text), re.findall(rf".*{word}.*", text)
    assert namespace_of(docs) == ELSEWHERE
    assert [n["metadata"]["name"] for n in of_kind(docs, "Namespace")] in ([], [ELSEWHERE])
    assert wiring_problems(docs, out_of_band_secrets(stack.overlay)) == []


def test_local_overlay_runs_one_replica_of_the_local_image_with_sqlite_on_a_claim(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["local"]
    for deployment in of_kind(docs, "Deployment"):
        assert deployment["spec"]["replicas"] == 1
        (container,) = pod_spec(deployment)["containers"]
        assert container["image"] == "microshop:local"
        assert container["imagePullPolicy"] == "IfNotPresent"
    db = find(docs, "Deployment", "db")
    assert db is not None
    assert db["spec"]["strategy"]["type"] == "Recreate"
    (data,) = [v for v in pod_spec(db)["volumes"] if v["name"] == "data"]
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": "db-data"}}
    assert find(docs, "ConfigMap", "microshop-config")["data"]["MICROSHOP_STORAGE"] == "sqlite"


def test_production_overlay_scales_spreads_and_protects_every_service(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["production"]
    for service in MICROSHOP_DEPLOYMENTS:
        deployment = find(docs, "Deployment", service)
        assert deployment is not None
        # The autoscaler owns the replica count; a count in the manifest would reset it on apply.
        assert "replicas" not in deployment["spec"]
        autoscaler = find(docs, "HorizontalPodAutoscaler", service)
        assert autoscaler is not None and autoscaler["spec"]["minReplicas"] >= 3
        assert autoscaler["spec"]["maxReplicas"] > autoscaler["spec"]["minReplicas"]
        budget = find(docs, "PodDisruptionBudget", service)
        assert budget is not None and budget["spec"]["maxUnavailable"] == 1
        spread = pod_spec(deployment)["topologySpreadConstraints"]
        keys = {constraint["topologyKey"] for constraint in spread}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    db = find(docs, "Deployment", "db")
    environment = {variable["name"]: variable for variable in pod_spec(db)["containers"][0]["env"]}
    assert environment["MICROSHOP_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "microshop-database",
        "key": "MICROSHOP_DATABASE_URL",
    }
    postgresql = find(docs, "StatefulSet", "postgresql")
    assert postgresql is not None and postgresql["spec"]["replicas"] == 1


def test_production_keeps_no_credentials_in_the_repository(
    rendered: dict[str, list[Doc]],
) -> None:
    assert of_kind(rendered["production"], "Secret") == []
    referenced = {
        reference["secretKeyRef"]["name"]
        for workload in of_kind(rendered["production"], "Deployment")
        for container in pod_spec(workload)["containers"]
        for variable in container.get("env", [])
        if "secretKeyRef" in (reference := variable.get("valueFrom", {}))
    }
    assert referenced == set(EXAMPLE_PRODUCTION_SECRETS)


def test_base_is_the_seed_compatible_shop_without_internal_authentication(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["base"]
    assert of_kind(docs, "Secret") == []
    assert of_kind(docs, "NetworkPolicy") == []
    for deployment in of_kind(docs, "Deployment"):
        for container in pod_spec(deployment)["containers"]:
            names = {variable["name"] for variable in container.get("env", [])}
            assert not names & {
                "MICROSHOP_INTERNAL_TOKEN",
                "MICROSHOP_SERVICE_TOKEN",
                "MICROSHOP_CALLER_DIGESTS",
            }


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_deployment_gets_its_own_identity_and_no_other(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    for deployment in of_kind(rendered[name], "Deployment"):
        own = f"microshop-identity-{deployment['metadata']['name']}"
        identities = {
            variable["name"]: reference["secretKeyRef"]["name"]
            for container in pod_spec(deployment)["containers"]
            for variable in container.get("env", [])
            if "secretKeyRef" in (reference := variable.get("valueFrom", {}))
            and reference["secretKeyRef"]["name"].startswith("microshop-identity-")
        }
        assert identities, deployment["metadata"]["name"]
        assert set(identities.values()) == {own}


@pytest.mark.parametrize("name", OVERLAYS)
def test_network_policies_allow_exactly_the_shops_calls_and_dns(
    rendered: dict[str, list[Doc]], name: str
) -> None:
    assert network_problems(rendered[name]) == []


def test_a_missing_tool_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-tool is not installed"):
        require_tool("no-such-tool")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no-such-tool is not installed"):
        require_tool("no-such-tool")


def test_every_component_is_combined() -> None:
    assert sorted(COMPONENTS) == sorted(path.name for path in (K8S / "components").iterdir())
    for component in COMPONENTS:
        assert (K8S / "components" / component / "README.md").is_file(), component


@pytest.mark.parametrize("combination", COMBINATIONS, ids=str)
def test_component_combination_renders_validates_and_keeps_the_invariants(
    rendered_combinations: dict[Combination, list[Doc]], combination: Combination
) -> None:
    """Schemas of the oldest and newest Kubernetes; probes, limits, securityContext, labels,
    ServiceAccounts and addresses (wiring); the NetworkPolicies, where there are some."""
    docs = rendered_combinations[combination]

    assert schema_problems(docs, schema_versions()) == []
    assert wiring_problems(docs, out_of_band_secrets(combination.overlay)) == []
    assert minimum_version_problems(docs) == []
    if find(docs, "NetworkPolicy", "default-deny-all"):  # components/network-policies
        assert network_problems(docs) == []
    behind_a_route = {"ingress", "gateway-api"} & set(combination.components)
    assert public_services(docs) == (set() if behind_a_route else {"api-gateway"})


def test_the_stated_minimum_kubernetes_is_what_the_manifests_need(
    rendered: dict[str, list[Doc]],
) -> None:
    """Not lower (a feature would be missing) and not higher (production uses a feature of it),
    and docs/kubernetes.md says it."""
    assert required_release(rendered["production"]) == MINIMUM_KUBERNETES
    for name in RENDERED:
        assert minimum_version_problems(rendered[name]) == []
    assert f"Kubernetes {MINIMUM_KUBERNETES}" in (ROOT / "docs" / "kubernetes.md").read_text()


def test_every_workload_runs_as_its_own_service_account_without_a_token(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["production"]
    accounts = {
        pod_spec(w)["serviceAccountName"] for w in of_kind(docs, "Deployment", "StatefulSet")
    }
    assert accounts == {*MICROSHOP_DEPLOYMENTS, "postgresql"}
    for account in of_kind(docs, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False
