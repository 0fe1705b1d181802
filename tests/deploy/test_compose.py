"""compose.yaml: every profile parses, the shop runs from it, and the observability profile's
configuration (Prometheus, Grafana, Jaeger) points at what exists.

The shop's profile runs for real (deploy/verify/compose.sh, with podman-compose and the image built
offline). The observability and load profiles need images from Docker Hub, which this machine
cannot reach: their configuration is checked offline only.
"""

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from microshop.services import SERVICES, wiring_environment
from tests.deploy.manifests import (
    DOCKERFILE,
    K8S,
    OBSERVABILITY,
    ROOT,
    find,
    read_image,
    render,
    require_tool,
    run_tool,
)
from tests.deploy.verify_scripts import (
    SCRIPT_TIMEOUT_SECONDS,
    output_of,
    require_container_tools,
    run_script,
)

COMPOSE_FILE = ROOT / "compose.yaml"
SHOP = frozenset(SERVICES)
PROFILES: dict[tuple[str, ...], frozenset[str]] = {
    (): SHOP,
    ("observability",): SHOP | {"prometheus", "grafana", "jaeger"},
    ("load",): SHOP | {"load-generator"},
    ("observability", "load"): SHOP | {"prometheus", "grafana", "jaeger", "load-generator"},
}
"""The services each set of profiles runs."""
GRAFANA = OBSERVABILITY / "grafana"
DASHBOARD = OBSERVABILITY / "dashboard" / "microshop-dashboard.json"

Compose = dict[str, Any]


def compose_config(*profiles: str) -> Compose:
    """`podman-compose config` with these profiles: the file as compose resolves it."""
    command = [require_tool("podman-compose"), "--file", str(COMPOSE_FILE)]
    for profile in profiles:
        command += ["--profile", profile]
    result = run_tool([*command, "config"], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    config: Compose = yaml.safe_load(result.stdout)
    return config


@pytest.fixture(scope="module")
def configs() -> dict[tuple[str, ...], Compose]:
    return {profiles: compose_config(*profiles) for profiles in PROFILES}


@pytest.fixture(scope="module")
def full(configs: dict[tuple[str, ...], Compose]) -> Compose:
    return configs[("observability", "load")]


def test_every_profile_parses_and_runs_its_services(
    configs: dict[tuple[str, ...], Compose],
) -> None:
    for profiles, services in PROFILES.items():
        assert set(configs[profiles]["services"]) == services, profiles


def suggested_image() -> str:
    """The tag the Dockerfile's header builds: `docker build -t microshop:local .`."""
    match = re.search(r"docker build -t (\S+) \.", DOCKERFILE.read_text())
    assert match, "the Dockerfile's header shows no `docker build -t NAME .`"
    return match[1]


def test_the_shop_runs_from_the_one_image_wired_by_service_names(full: Compose) -> None:
    urls = {name: f"http://{name}:{spec.default_port}" for name, spec in SERVICES.items()}
    data_dir = read_image().environment["MICROSHOP_DATA_DIR"]
    for name, spec in SERVICES.items():
        service = full["services"][name]
        assert service["image"] == suggested_image(), name
        assert Path(service["build"]["context"]).resolve() == ROOT, name
        assert service["command"] == ["serve", name]
        environment = service["environment"]
        assert environment["MICROSHOP_PORT"] == str(spec.default_port)
        assert wiring_environment(urls).items() <= environment.items(), name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "/readyz" in " ".join(service["healthcheck"]["test"]), name
        assert "MICROSHOP_PORT" in " ".join(service["healthcheck"]["test"]), name
    assert "db-data:" + data_dir in full["services"]["db"]["volumes"]
    assert "db-data" in full["volumes"]
    assert full["services"]["api-gateway"]["ports"] == ["3000:3000"]


def test_the_load_generator_runs_microshop_load_against_the_gateway(full: Compose) -> None:
    service = full["services"]["load-generator"]
    assert service["image"] == suggested_image()
    assert service["command"] == ["load", "--url", "http://api-gateway:3000", "--rate", "5"]
    assert service["depends_on"].keys() == {"api-gateway"}


def published_container_ports(service: Compose) -> set[int]:
    return {int(str(port).rsplit(":", 1)[-1]) for port in service.get("ports", [])}


def scrape_targets(prometheus_yml: Path) -> list[Compose]:
    (job,) = yaml.safe_load(prometheus_yml.read_text())["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets: list[Compose] = job.get("static_configs") or job["dns_sd_configs"]
    return targets


def test_compose_prometheus_scrapes_the_four_services_by_name() -> None:
    targets = scrape_targets(ROOT / "deploy" / "compose" / "prometheus.yml")
    found = {
        target["labels"]["app_kubernetes_io_name"]: (target["targets"], target["labels"]["job"])
        for target in targets
    }
    assert found == {
        name: ([f"{name}:{spec.default_port}"], name) for name, spec in SERVICES.items()
    }


def test_kubernetes_prometheus_scrapes_every_pod_of_the_four_services() -> None:
    """components/observability: each DNS name is a headless Service of one service's pods, on the
    port the service listens on."""
    directory = K8S / "components" / "observability"
    targets = scrape_targets(directory / "prometheus.yml")
    names = {target["names"][0]: target["port"] for target in targets}
    assert names == {f"{name}-metrics": spec.default_port for name, spec in SERVICES.items()}
    docs = render(K8S / "base")
    component = yaml.safe_load_all((directory / "scrape-targets.yaml").read_text())
    for service in component:
        name = service["metadata"]["name"].removesuffix("-metrics")
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["selector"] == find(docs, "Service", name)["spec"]["selector"]
        assert service["spec"]["ports"][0]["port"] == names[service["metadata"]["name"]]


def test_grafana_provisions_both_data_sources_and_the_one_dashboard(full: Compose) -> None:
    sources = yaml.safe_load((GRAFANA / "datasources.yaml").read_text())["datasources"]
    urls = {source["type"]: source["url"] for source in sources}
    assert urls == {"prometheus": "http://prometheus:9090", "jaeger": "http://jaeger:16686"}
    assert [source["type"] for source in sources if source.get("isDefault")] == ["prometheus"]
    assert 9090 in published_container_ports(full["services"]["prometheus"])
    assert 16686 in published_container_ports(full["services"]["jaeger"])

    (provider,) = yaml.safe_load((GRAFANA / "dashboards.yaml").read_text())["providers"]
    folder = provider["options"]["path"]
    grafana = full["services"]["grafana"]
    mounts = {
        volume["target"]: Path(volume["source"]).resolve()
        for volume in grafana["volumes"]
        if isinstance(volume, dict)
    }
    assert mounts[f"{folder}/{DASHBOARD.name}"] == DASHBOARD
    assert mounts["/etc/grafana/provisioning/datasources/datasources.yaml"] == (
        GRAFANA / "datasources.yaml"
    )
    assert mounts["/etc/grafana/provisioning/dashboards/dashboards.yaml"] == (
        GRAFANA / "dashboards.yaml"
    )
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{folder}/{DASHBOARD.name}"
    assert json.loads(DASHBOARD.read_text())["uid"] == "microshop"
    copies = [
        path
        for path in ROOT.rglob("*.json")
        if ".venv" not in path.parts and '"uid": "microshop"' in path.read_text()
    ]
    assert copies == [DASHBOARD]


def test_kubernetes_runs_the_same_grafana_as_compose(full: Compose) -> None:
    manifest = K8S / "components" / "observability" / "grafana.yaml"
    grafana = yaml.safe_load_all(manifest.read_text())
    deployment = next(doc for doc in grafana if doc["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    compose_environment = full["services"]["grafana"]["environment"]
    assert {variable["name"]: variable["value"] for variable in container["env"]} == (
        compose_environment
    )
    assert container["image"] == full["services"]["grafana"]["image"]


@pytest.mark.integration
@pytest.mark.timeout(SCRIPT_TIMEOUT_SECONDS + 120)
def test_the_shop_runs_from_compose_and_an_order_is_paid() -> None:
    require_container_tools()
    require_tool("podman-compose")
    result: subprocess.CompletedProcess[str] = run_script("compose.sh")
    assert result.returncode == 0, output_of(result)[-6000:]
    output = output_of(result)
    assert '"status":"paid"' in output
    assert "stopped cleanly" in output
