"""The checks catch broken manifests: each case breaks one thing in a copy of deploy/k8s (or of the
Dockerfile), renders it, and asserts that the check meant for that kind of mistake reports it."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import (
    DOCKERFILE,
    K8S,
    OBSERVABILITY,
    OVERLAY_NAMESPACE,
    Doc,
    RenderError,
    checkov,
    hadolint,
    minimum_version_problems,
    out_of_band_secrets,
    render,
    render_stack,
    schema_problems,
    schema_versions,
    wiring_problems,
)
from tests.deploy.network_policies import network_problems


@dataclass(frozen=True)
class Breakage:
    file: str  # under deploy/k8s
    old: str
    new: str
    check: str  # render, schema, wiring, minimum or network
    expected: str  # part of the problem the check must report
    overlay: str = "overlays/local"
    components: tuple[str, ...] = ()  # added on top of the overlay


BREAKAGES = {
    "field-name-typo": Breakage(
        "base/order-service.yaml", "readinessProbe:", "readinesProbe:", "schema", "readinesProbe"
    ),
    "removed-api-version": Breakage(
        "base/api-gateway.yaml",
        "apiVersion: apps/v1\nkind: Deployment",
        "apiVersion: extensions/v1beta1\nkind: Deployment",
        "schema",
        "Couldn't find schema for kind Deployment",
    ),
    "wrong-value-type": Breakage(
        "overlays/production/autoscaling.yaml",
        "minReplicas: 3",
        "minReplicas: three",
        "schema",
        "'three' is not of type 'integer'",
        overlay="overlays/production",
    ),
    "missing-resource-file": Breakage(
        "overlays/local/kustomization.yaml",
        "  - db-data.yaml\n",
        "  - db-data.yaml\n  - db-backup.yaml\n",
        "render",
        "db-backup.yaml",
    ),
    "service-selector-typo": Breakage(
        "base/db.yaml",
        "  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: db\n",
        "  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: database\n",
        "wiring",
        "Service/db: its selector",
    ),
    "target-port-not-declared": Breakage(
        "base/payment-service.yaml",
        "      targetPort: http",
        "      targetPort: web",
        "wiring",
        "Service/payment-service: port 3001 targets 'web'",
    ),
    "configmap-url-wrong-port": Breakage(
        "base/config.yaml",
        "http://db:3004",
        "http://db:3005",
        "wiring",
        "db:3005 is not a port of Service db",
    ),
    "configmap-url-unknown-service": Breakage(
        "base/config.yaml",
        "http://order-service:3002",
        "http://orders:3002",
        "wiring",
        "orders is not a Service",
    ),
    "configmap-url-names-the-namespace": Breakage(
        "base/config.yaml",
        "http://db:3004",
        "http://db.shop:3004",
        "wiring",
        "db.shop:3004 names namespace shop",
    ),
    "service-account-shared": Breakage(
        "base/order-service.yaml",
        "serviceAccountName: order-service",
        "serviceAccountName: api-gateway",
        "wiring",
        "ServiceAccount/api-gateway is shared by Deployment/api-gateway, Deployment/order-service",
    ),
    "service-account-token-mounted": Breakage(
        "base/db.yaml",
        "      automountServiceAccountToken: false\n      enableServiceLinks",
        "      automountServiceAccountToken: true\n      enableServiceLinks",
        "wiring",
        "Deployment/db: pods mount a ServiceAccount token",
    ),
    "pod-security-unpinned": Breakage(
        "components/namespace/namespace.yaml",
        "enforce-version: v1.30",
        "enforce-version: latest",
        "minimum",
        "Pod Security enforce-version is latest",
    ),
    "http-route-field-typo": Breakage(
        "components/gateway-api/http-route.yaml",
        "backendRefs:",
        "backendRef:",
        "schema",
        "'backendRef' was unexpected",
        components=("gateway-api",),
    ),
    "http-route-backend-without-port": Breakage(
        "components/gateway-api/http-route.yaml",
        "          port: 3000\n",
        "",
        "schema",
        "'port' is a required property",
        components=("gateway-api",),
    ),
    "ingress-to-an-unknown-service": Breakage(
        "components/ingress/ingress.yaml",
        "                name: api-gateway\n",
        "                name: gateway\n",
        "wiring",
        "Ingress/api-gateway: Service gateway does not exist",
        components=("ingress",),
    ),
    "service-monitor-wrong-port": Breakage(
        "components/prometheus-operator/service-monitors.yaml",
        "- port: http",
        "- port: metrics",
        "wiring",
        "ServiceMonitor/db: Service db has no port 'metrics'",
        components=("prometheus-operator",),
    ),
    "scraping-from-the-wrong-namespace": Breakage(
        "components/prometheus-operator/allow-scraping.yaml",
        "kubernetes.io/metadata.name: monitoring",
        "kubernetes.io/metadata.name: prometheus",
        "network",
        "missing ('monitoring/prometheus', 'db')",
        components=("prometheus-operator",),
    ),
    "traces-not-admitted-by-the-tracing-backend": Breakage(
        "components/observability/network-policies.yaml",
        "              app.kubernetes.io/name: db\n"
        "      ports:\n"
        "        - protocol: TCP\n"
        "          port: 4318",
        "              app.kubernetes.io/name: db\n"
        "      ports:\n"
        "        - protocol: TCP\n"
        "          port: 4317",
        "network",
        "missing ('db', 'jaeger')",
        components=("observability",),
    ),
    "load-generator-at-a-wrong-port": Breakage(
        "components/load-generator/load-generator.yaml",
        "http://api-gateway:3000",
        "http://api-gateway:3002",
        "wiring",
        "--url http://api-gateway:3002: Service api-gateway has no port 3002",
        components=("load-generator",),
    ),
    "probe-path-not-served": Breakage(
        "base/order-service.yaml",
        "path: /healthz",
        "path: /health",
        "wiring",
        "asks /health, which order-service does not serve",
    ),
    "listens-elsewhere-than-declared": Breakage(
        "base/db.yaml",
        'name: MICROSHOP_PORT\n              value: "3004"',
        'name: MICROSHOP_PORT\n              value: "3005"',
        "wiring",
        "listens on 3005, which is not a containerPort",
    ),
    "grace-period-shorter-than-shutdown": Breakage(
        "base/api-gateway.yaml",
        "terminationGracePeriodSeconds: 20",
        "terminationGracePeriodSeconds: 12",
        "wiring",
        "terminationGracePeriodSeconds 12 leaves no margin",
    ),
    "writable-root-filesystem": Breakage(
        "base/payment-service.yaml",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
        "wiring",
        "the root filesystem is not read-only",
    ),
    "components-outside-the-namespace": Breakage(
        "overlays/production/kustomization.yaml",
        "namespace: shop\n",
        "",
        "wiring",
        "StatefulSet/postgresql is not in namespace",
        overlay="overlays/production",
    ),
    "secret-key-misspelt": Breakage(
        "components/internal-auth/identity-db.yaml",
        "key: MICROSHOP_CALLER_DIGESTS",
        "key: CALLER_DIGESTS",
        "wiring",
        "Secret microshop-identity-db has no key CALLER_DIGESTS",
    ),
    "a-pod-gets-another-services-token": Breakage(
        "components/internal-auth/identity-payment-service.yaml",
        "name: microshop-identity-payment-service\n                  key: MICROSHOP_SERVICE_TOKEN",
        "name: microshop-identity-order-service\n                  key: MICROSHOP_SERVICE_TOKEN",
        "wiring",
        "payment-service holds the token of order-service",
    ),
    "a-token-renewed-without-its-digest": Breakage(
        "components/internal-auth/secret.yaml",
        "MICROSHOP_SERVICE_TOKEN: local-development-order-service-token-not-for-production",
        "MICROSHOP_SERVICE_TOKEN: local-development-order-service-token-renewed",
        "wiring",
        "db does not know the token of order-service",
    ),
    "policy-drops-a-needed-call": Breakage(
        "components/network-policies/network-policies.yaml",
        "              app.kubernetes.io/name: order-service\n"
        "        - podSelector:\n"
        "            matchLabels:\n"
        "              app.kubernetes.io/name: payment-service\n"
        "      ports:\n"
        "        - protocol: TCP\n"
        "          port: 3004",
        "              app.kubernetes.io/name: payment-service\n"
        "      ports:\n"
        "        - protocol: TCP\n"
        "          port: 3004",
        "network",
        "missing ('order-service', 'db')",
    ),
    "policy-opens-the-database": Breakage(
        "components/network-policies/network-policies.yaml",
        "  ingress:\n"
        "    - from:\n"
        "        - podSelector:\n"
        "            matchLabels:\n"
        "              app.kubernetes.io/name: db\n",
        "  ingress:\n    - from:\n",
        "network",
        "unexpected ('outside', 'postgresql')",
        overlay="overlays/production",
    ),
}


def broken_copy(directory: Path, breakage: Breakage) -> Path:
    """A copy of deploy/k8s, beside a copy of deploy/observability (which components include)."""
    copy = directory / "deploy" / "k8s"
    shutil.copytree(K8S, copy)
    shutil.copytree(OBSERVABILITY, directory / "deploy" / "observability")
    target = copy / breakage.file
    text = target.read_text()
    assert breakage.old in text, f"{breakage.file} changed: update this case"
    target.write_text(text.replace(breakage.old, breakage.new))
    return copy


def render_broken(copy: Path, breakage: Breakage) -> list[Doc]:
    if not breakage.components:
        return render(copy / breakage.overlay)
    components = [copy / "components" / name for name in breakage.components]
    return render_stack(
        copy.parent / "stack", copy / breakage.overlay, components, OVERLAY_NAMESPACE
    )


@pytest.mark.parametrize("case", BREAKAGES)
def test_a_broken_manifest_is_caught(case: str, tmp_path: Path) -> None:
    breakage = BREAKAGES[case]
    copy = broken_copy(tmp_path, breakage)

    if breakage.check == "render":
        with pytest.raises(RenderError, match=breakage.expected):
            render_broken(copy, breakage)
        return
    docs = render_broken(copy, breakage)
    if breakage.check == "schema":
        problems = schema_problems(docs, schema_versions())
    elif breakage.check == "wiring":
        problems = wiring_problems(docs, out_of_band_secrets(breakage.overlay))
    elif breakage.check == "minimum":
        problems = minimum_version_problems(docs)
    else:
        problems = network_problems(docs)

    assert any(breakage.expected in problem for problem in problems), problems


def test_the_policy_scan_catches_a_privileged_container(tmp_path: Path) -> None:
    copy = broken_copy(
        tmp_path,
        Breakage(
            "base/order-service.yaml",
            "allowPrivilegeEscalation: false\n            privileged: false",
            "allowPrivilegeEscalation: true\n            privileged: true",
            "policy",
            "",
        ),
    )
    rendered = tmp_path / "local.yaml"
    rendered.write_text(yaml.safe_dump_all(render(copy / "overlays/local")))

    failures = checkov([rendered])[str(rendered)]

    assert "CKV_K8S_16 Deployment.shop.order-service" in failures  # privileged
    assert "CKV_K8S_20 Deployment.shop.order-service" in failures  # privilege escalation
    assert all("order-service" in failure for failure in failures), failures


def test_hadolint_catches_a_broken_dockerfile(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    text = DOCKERFILE.read_text()
    assert "FROM python:3.12-slim\n" in text
    broken.write_text(
        text.replace(
            "FROM python:3.12-slim\n",
            "FROM python:latest\nRUN apt-get update && apt-get install -y curl\n",
        )
    )

    problems = "\n".join(hadolint(broken))

    assert "DL3007" in problems  # an unpinned base image
    assert "DL3008" in problems  # unpinned apt packages
