"""Offline checks of the Kubernetes manifests and the Dockerfile, shared by this folder's tests.

Each check returns the problems it finds as sentences (an empty list means none), so the same
function can assert that the real manifests are clean and that a deliberately broken copy is caught.
"""

import base64
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from starlette.routing import BaseRoute, Match, Mount

from microshop.common.identities import (
    CALLER_DIGESTS_VARIABLE,
    SERVICE_TOKEN_VARIABLE,
    calling_services,
    identity_environments,
    token_digest,
)
from microshop.common.settings import load_settings
from microshop.server import build_app
from microshop.services import callers_of, resolve
from tests.system_tools import missing_system_tool

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OBSERVABILITY = ROOT / "deploy" / "observability"
"""Files of the observability and prometheus-operator components shared with compose.yaml."""
DOCKERFILE = ROOT / "Dockerfile"
CHECKOV_CONFIG = K8S / "checkov.yaml"
CUSTOM_RESOURCE_SCHEMAS = Path(__file__).resolve().parent / "schemas"
OVERLAYS = ("local", "production")
OVERLAY_NAMESPACE = "shop"
"""Where the overlays put the shop; the base names no namespace at all."""
MINIMUM_KUBERNETES = "1.30"
"""The oldest Kubernetes release the manifests support (docs/kubernetes.md): see FEATURES."""
TOOL_TIMEOUT_SECONDS = 120

Doc = dict[str, Any]
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it: ten times faster on the many renders."""

EXAMPLE_PRODUCTION_SECRETS = {
    # overlays/production renders no Secret: these are created in the cluster before the first
    # apply (docs/kubernetes.md). The values are examples for the offline checks.
    **{
        f"microshop-identity-{name}": environment
        for name, environment in identity_environments(
            {name: f"example-token-of-{name}-for-offline-checks" for name in calling_services()}
        ).items()
    },
    "microshop-database": {
        "POSTGRES_USER": "microshop",
        "POSTGRES_PASSWORD": "example-password",
        "POSTGRES_DB": "microshop",
        "MICROSHOP_DATABASE_URL": (
            "postgresql://microshop:example-password@postgresql:5432/microshop"
        ),
    },
}


def out_of_band_secrets(overlay: str) -> dict[str, dict[str, str]]:
    """The Secrets an overlay expects to find in the cluster rather than in its own output."""
    return EXAMPLE_PRODUCTION_SECRETS if overlay.endswith("production") else {}


WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet"})
CLUSTER_SCOPED_KINDS = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding"})
# host[:port] of a kube-dns name in a URL, bare or with a namespace: http://db:3004,
# postgresql://u:p@postgresql:5432/db, http://db.other.svc.cluster.local:3004
SERVICE_ADDRESS = re.compile(
    r"(?:(?<=//)|(?<=@))(?P<service>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r"(?:\.(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)(?:\.svc(?:\.cluster\.local)?)?)?"
    r"(?::(?P<port>\d+))?(?=[/?]|$)"
)


# --- tools ---------------------------------------------------------------------------------------


def require_tool(name: str, *candidates: Path) -> str:
    """A command-line tool's path. Without it the test fails under CI, and is skipped elsewhere."""
    for candidate in (Path(sys.executable).parent / name, *candidates):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    missing_system_tool(
        f"{name} is not installed (see pyproject.toml's dev extras and docs/kubernetes.md)"
    )


def kubectl() -> str:
    return require_tool("kubectl", Path("/usr/bin/kubectl"), Path("/usr/local/bin/kubectl"))


def run_tool(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS, cwd=cwd, check=False
    )


# --- rendering ------------------------------------------------------------------------------------


class RenderError(Exception):
    pass


def render(directory: Path) -> list[Doc]:
    """`kubectl kustomize DIRECTORY`, parsed: the objects `kubectl apply -k` would send."""
    result = run_tool([kubectl(), "kustomize", str(directory)])
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory} failed:\n{result.stderr[-3000:]}")
    return [doc for doc in yaml.load_all(result.stdout, Loader=YAML_LOADER) if doc]


def render_stack(
    directory: Path,
    resource: Path,
    components: Iterable[Path] = (),
    namespace: str | None = None,
) -> list[Doc]:
    """Renders `resource` (the base or an overlay) with more components on top and, if given, in
    another namespace, through a kustomization in `directory`, as a user's own overlay would."""
    directory.mkdir(parents=True, exist_ok=True)
    kustomization: Doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(resource, directory)],
    }
    if components:
        kustomization["components"] = [os.path.relpath(path, directory) for path in components]
    if namespace is not None:
        kustomization["namespace"] = namespace
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return render(directory)


def name_of(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def of_kind(docs: Iterable[Doc], *kinds: str) -> list[Doc]:
    return [doc for doc in docs if doc.get("kind") in kinds]


def find(docs: Iterable[Doc], kind: str, name: str) -> Doc | None:
    for doc in docs:
        if doc.get("kind") == kind and doc["metadata"].get("name") == name:
            return doc
    return None


# --- schemas --------------------------------------------------------------------------------------


def schema_versions() -> tuple[str, ...]:
    """The oldest release the manifests support and the newest release the validator knows."""
    utils = kubernetes_validate_utils()
    return tuple(dict.fromkeys((f"{MINIMUM_KUBERNETES}.0", utils.latest_version())))


@functools.cache
def kubernetes_validate_utils() -> Any:
    """kubernetes-validate's module, reading each schema file once per run.

    Its `validate` reads and parses two files on every call, one of them the several-megabyte
    definitions of a whole release; the component combinations validate thousands of objects. The
    files are read-only data, so their parsed contents are kept (eight times faster).
    """
    try:
        from kubernetes_validate import utils
    except ImportError:
        require_tool("kubernetes-validate")  # fails under CI, skips elsewhere
        raise
    utils.schema_contents = functools.cache(utils.schema_contents)
    return utils


def schema_problems(docs: Iterable[Doc], versions: Iterable[str]) -> list[str]:
    """Every object against the strict JSON schemas of each Kubernetes version; an unknown kind or
    apiVersion (a removed API, a typo) is a problem too, not a warning. The custom resources of the
    components (see CUSTOM_RESOURCE_SCHEMAS) are checked against their schemas instead."""
    problems = []
    for version in versions:
        for doc in docs:
            problem = _document_problem(json.dumps(doc, sort_keys=True), version)
            if problem is not None:
                problems.append(problem)
    return problems


@functools.cache
def _document_problem(document: str, version: str) -> str | None:
    """One object's problem against one version's schema, or None. Cached: the component
    combinations render the same objects many times, and each validation reads the schema anew."""
    doc = json.loads(document)
    custom = _custom_resource_schema(doc.get("apiVersion", ""), doc.get("kind", ""))
    if custom is not None:
        errors = sorted(custom.iter_errors(doc), key=lambda error: list(error.path))
        if not errors:
            return None
        where = ".".join(str(part) for part in errors[0].path)
        return f"{name_of(doc)} (custom resource schema) at {where}: {errors[0].message}"
    utils = kubernetes_validate_utils()
    try:
        utils.validate(doc, version, strict=True)
    except utils.SchemaNotFoundError as error:
        return f"{name_of(doc)}: {error.message}"
    except utils.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        return f"{name_of(doc)} (Kubernetes {version}) at {where}: {error.message}"
    return None


@functools.cache
def _custom_resource_schema(api_version: str, kind: str) -> Any:
    """A validator for a custom resource the components use (a ServiceMonitor, an HTTPRoute), from
    tests/deploy/schemas/<kind>-<group>-<version>.json, or None for any other object.

    Their CRDs are not installed here and cannot be fetched, so these schemas are written for this
    repository: strict (no unknown field) for every part the components use, with the types,
    enumerations and limits of the CRDs' documented API; other parts of those APIs are refused.
    """
    group, _, version = api_version.rpartition("/")
    path = CUSTOM_RESOURCE_SCHEMAS / f"{kind.lower()}-{group.split('.')[0]}-{version}.json"
    if not group or not path.is_file():
        return None
    jsonschema = kubernetes_validate_utils().jsonschema  # the validator's own dependency
    return jsonschema.Draft202012Validator(json.loads(path.read_text()))


# --- the Dockerfile ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """What the Dockerfile's final stage gives a container: entrypoint, command, environment."""

    entrypoint: list[str]
    command: list[str]
    environment: dict[str, str]


def dockerfile_instructions(text: str) -> Iterator[tuple[str, str]]:
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, rest = logical.partition(" ")
        yield keyword.upper(), rest.strip()
        logical = ""


def read_image(dockerfile: Path = DOCKERFILE) -> Image:
    entrypoint: list[str] = []
    command: list[str] = []
    environment: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions(dockerfile.read_text()):
        if keyword == "FROM":  # a new stage: only the last one makes the image
            entrypoint, command, environment = [], [], {}
        elif keyword == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif keyword == "CMD":
            command = json.loads(rest)
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                environment[key] = value
    return Image(entrypoint, command, environment)


# --- wiring ---------------------------------------------------------------------------------------


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Doc) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels/matchExpressions, or a Service's plain map) against labels."""
    if selector is None:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def container_ports(workload: Doc) -> list[Doc]:
    return [port for c in pod_spec(workload)["containers"] for port in c.get("ports", [])]


def resolve_port(workload: Doc, port: int | str) -> int | None:
    """A containerPort named or numbered `port` in the workload's pods, or None."""
    for declared in container_ports(workload):
        if port in (declared.get("name"), declared["containerPort"]):
            number: int = declared["containerPort"]
            return number
    return None


def runs_microshop(container: Doc) -> bool:
    """Whether the container's image is microshop's (whatever the registry, tag or digest)."""
    reference: str = container["image"].split("@")[0]
    return reference.rsplit("/", 1)[-1].split(":")[0] == "microshop"


def container_words(container: Doc, image: Image) -> list[str]:
    """A container's command and arguments, the image's ENTRYPOINT and CMD filling in what the
    container does not set (as Kubernetes does)."""
    command = container.get("command", image.entrypoint)
    arguments = container.get("args", image.command if "command" not in container else [])
    return [*command, *arguments]


def served_service(container: Doc, image: Image) -> str | None:
    """Which microshop service a container runs: `serve <name>` in its command and arguments."""
    if not runs_microshop(container):
        return None
    words = container_words(container, image)
    if words[:2] == ["microshop", "serve"] and len(words) == 3:
        return words[2]
    return None


@functools.cache
def app_routes(service: str) -> tuple[BaseRoute, ...]:
    return tuple(build_app(resolve(service), load_settings(storage="memory")).routes)


def route_exists(service: str, path: str) -> bool:
    """Whether the app of `service` answers GET `path` with one of its routes."""
    scope = {"type": "http", "path": path, "method": "GET"}
    for route in app_routes(service):
        if isinstance(route, Mount):
            continue
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return True
    return False


def configuration(docs: list[Doc]) -> dict[tuple[str, str], dict[str, str]]:
    """The data of every ConfigMap and Secret, by (kind, name), as text."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for doc in of_kind(docs, "ConfigMap", "Secret"):
        data = dict(doc.get("data") or {})
        if doc["kind"] == "Secret":
            data = {key: base64.b64decode(value).decode() for key, value in data.items()}
            data.update(doc.get("stringData") or {})
        found[(doc["kind"], doc["metadata"]["name"])] = data
    return found


def container_environment(
    container: Doc,
    docs: list[Doc],
    external: dict[str, dict[str, str]] | None = None,
    image: Image | None = None,
) -> tuple[dict[str, str], list[str]]:
    """A container's environment as Kubernetes builds it (image ENV, then envFrom, then env), and
    the references that point at nothing. `external` holds Secrets created outside the manifests."""
    config = configuration(docs)
    for name, data in (external or {}).items():
        config.setdefault(("Secret", name), data)
    environment = dict(image.environment) if image else {}
    problems = []

    def source(kind: str, name: str, key: str | None, optional: bool) -> str | None:
        data = config.get((kind, name))
        if data is None:
            if not optional:
                problems.append(f"{kind} {name} does not exist")
            return None
        if key is not None and key not in data:
            if not optional:
                problems.append(f"{kind} {name} has no key {key}")
            return None
        return data[key] if key is not None else None

    for entry in container.get("envFrom", []):
        prefix = entry.get("prefix", "")
        for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if field in entry:
                name, optional = entry[field]["name"], entry[field].get("optional", False)
                source(kind, name, None, optional)
                for key, value in config.get((kind, name), {}).items():
                    environment[prefix + key] = value
    for variable in container.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = str(variable["value"])
            continue
        reference = variable.get("valueFrom", {})
        for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            if field in reference:
                ref = reference[field]
                value = source(kind, ref["name"], ref["key"], ref.get("optional", False))
                if value is not None:
                    environment[variable["name"]] = value
        if not reference.keys() & {"configMapKeyRef", "secretKeyRef"}:
            environment[variable["name"]] = ""  # fieldRef and friends: not needed by microshop
    return environment, problems


def workload_problems(
    docs: list[Doc], external: dict[str, dict[str, str]] | None = None
) -> list[str]:
    """Pods: labels, security, volumes, probe ports; for microshop's containers, more below."""
    image = read_image()
    problems = []
    for workload in of_kind(docs, *WORKLOAD_KINDS):
        name = name_of(workload)
        labels = pod_labels(workload)
        if not selects(workload["spec"]["selector"], labels):
            problems.append(f"{name}: its selector does not match its own pod template")
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/part-of"):
            if key not in labels:
                problems.append(f"{name}: pod template lacks the label {key}")
        spec = pod_spec(workload)
        pod_security = spec.get("securityContext", {})
        if pod_security.get("runAsNonRoot") is not True:
            problems.append(f"{name}: pods do not set runAsNonRoot: true")
        if pod_security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: pods do not use the RuntimeDefault seccomp profile")
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        claim_templates = {
            claim["metadata"]["name"] for claim in workload["spec"].get("volumeClaimTemplates", [])
        }
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if find(docs, "PersistentVolumeClaim", claim) is None:
                    problems.append(f"{name}: PersistentVolumeClaim {claim} does not exist")
        for container in spec["containers"]:
            where = f"{name} container {container['name']}"
            problems += container_security_problems(where, container)
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes and mount["name"] not in claim_templates:
                    problems.append(
                        f"{where}: mounts volume {mount['name']}, which is not declared"
                    )
            for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe_name not in container:
                    # A container that listens nowhere (the load generator) has nothing to probe.
                    if container.get("ports"):
                        problems.append(f"{where}: no {probe_name}")
                    continue
                probe = container[probe_name]
                for field in ("httpGet", "tcpSocket", "grpc"):
                    if field in probe and resolve_port(workload, probe[field]["port"]) is None:
                        problems.append(
                            f"{where}: {probe_name} port {probe[field]['port']} is not a "
                            "containerPort"
                        )
            if runs_microshop(container):
                problems += microshop_problems(where, workload, container, docs, external, image)
    return problems


def microshop_problems(
    where: str,
    workload: Doc,
    container: Doc,
    docs: list[Doc],
    external: dict[str, dict[str, str]] | None,
    image: Image,
) -> list[str]:
    """A microshop container: the service it runs, its probes and metrics on paths that service
    serves, the port it listens on, where sqlite writes, and its shutdown timing."""
    name = name_of(workload)
    if container_words(container, image)[:2] == ["microshop", "load"]:
        return load_generator_problems(where, container, docs, image)
    service = served_service(container, image)
    if service is None:
        return [f"{where}: does not run `microshop serve <service>` or `microshop load`"]
    try:
        resolve(service)
    except KeyError:
        return [f"{where}: runs `serve {service}`, which is not a service"]
    problems = []
    for probe_name, path in {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}.items():
        http = container.get(probe_name, {}).get("httpGet")
        if http is None or http.get("path") != path:
            problems.append(f"{where}: {probe_name} should ask GET {path}")
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        http = container.get(probe_name, {}).get("httpGet")
        if http and not route_exists(service, http["path"]):
            problems.append(
                f"{where}: {probe_name} asks {http['path']}, which {service} does not serve"
            )
    environment, missing = container_environment(container, docs, external, image)
    problems += [f"{where}: {text}" for text in missing]
    listen = environment.get("MICROSHOP_PORT", str(resolve(service).default_port))
    if not listen.isdigit() or resolve_port(workload, int(listen)) is None:
        problems.append(f"{where}: listens on {listen}, which is not a containerPort")
    mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
    data_dir = environment.get("MICROSHOP_DATA_DIR")
    if (
        service == "db"
        and "MICROSHOP_DATABASE_URL" not in environment
        and environment.get("MICROSHOP_STORAGE", "sqlite") == "sqlite"
        and data_dir not in mounts
    ):
        problems.append(f"{where}: sqlite's MICROSHOP_DATA_DIR {data_dir} is not a volume")
    annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/scrape") != "true":
        problems.append(f"{name}: pods lack the annotation prometheus.io/scrape: 'true'")
    if annotations.get("prometheus.io/port") != listen:
        problems.append(f"{name}: prometheus.io/port is not the port it listens on")
    metrics_path = annotations.get("prometheus.io/path", "")
    if not route_exists(service, metrics_path):
        problems.append(f"{name}: prometheus.io/path {metrics_path!r} is not served")
    problems += shutdown_problems(where, pod_spec(workload), container, environment)
    return problems


def load_generator_problems(where: str, container: Doc, docs: list[Doc], image: Image) -> list[str]:
    """`microshop load --url URL ...`: URL is the gateway's Service, by its bare name and port."""
    words = container_words(container, image)
    if "--url" not in words[:-1]:
        return [f"{where}: `microshop load` without --url"]
    url = words[words.index("--url") + 1]
    match = SERVICE_ADDRESS.search(url)
    if match is None or match["namespace"] is not None or match["port"] is None:
        return [f"{where}: --url {url} is not http://<Service>:<port>"]
    problem = service_port(docs, match["service"], int(match["port"]))
    return [f"{where}: --url {url}: {problem}"] if problem else []


def container_security_problems(where: str, container: Doc) -> list[str]:
    problems = []
    security = container.get("securityContext", {})
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if security.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: the root filesystem is not read-only")
    if security.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append(f"{where}: does not drop all capabilities")
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(kind, {}):
                problems.append(f"{where}: no {resource} {kind[:-1]}")
    return problems


def shutdown_problems(
    where: str, spec: Doc, container: Doc, environment: dict[str, str]
) -> list[str]:
    """Kubernetes kills a pod terminationGracePeriodSeconds after it starts stopping it: the
    preStop pause, the app's draining and its in-flight requests must all fit in that time."""
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    pause = pre_stop.get("sleep", {}).get("seconds", 0)
    if not pause:
        return [f"{where}: no preStop pause (endpoints would still send traffic after SIGTERM)"]
    shutdown = float(environment.get("MICROSHOP_SHUTDOWN_TIMEOUT", 10))
    drain = float(environment.get("MICROSHOP_DRAIN_SECONDS", 0))
    needed = pause + drain + shutdown
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= needed:
        return [
            f"{where}: terminationGracePeriodSeconds {grace} leaves no margin after the preStop "
            f"pause ({pause} s), draining ({drain:g} s) and in-flight requests ({shutdown:g} s)"
        ]
    return []


def service_problems(docs: list[Doc]) -> list[str]:
    """Each Service selects the pods of one workload and sends to ports they declare."""
    workloads = of_kind(docs, *WORKLOAD_KINDS)
    problems = []
    for service in of_kind(docs, "Service"):
        name = name_of(service)
        selector = service["spec"].get("selector")
        targets = [w for w in workloads if selector and selects(selector, pod_labels(w))]
        if len(targets) != 1:
            found = ", ".join(name_of(w) for w in targets) or "nothing"
            problems.append(f"{name}: its selector {selector} matches {found}")
            continue
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if resolve_port(targets[0], target) is None:
                problems.append(
                    f"{name}: port {port['port']} targets {target!r}, not a containerPort of "
                    f"{name_of(targets[0])}"
                )
    return problems


def address_problems(
    docs: list[Doc], external: dict[str, dict[str, str]] | None = None
) -> list[str]:
    """Every kube-dns address in the configuration is a bare Service name (resolved in the pod's
    own namespace, whichever that is) with one of that existing Service's ports."""
    problems = []
    values = [
        (f"{kind} {name} {key}", value)
        for (kind, name), data in configuration(docs).items()
        for key, value in data.items()
    ]
    values += [
        (f"Secret {name} {key} (created outside the manifests)", value)
        for name, data in (external or {}).items()
        for key, value in data.items()
    ]
    for where, value in values:
        for match in SERVICE_ADDRESS.finditer(value):
            if match["namespace"] is not None:
                problems.append(
                    f"{where}: {match[0]} names namespace {match['namespace']}; the bare Service "
                    "name works in any namespace"
                )
            service = find(docs, "Service", match["service"])
            if service is None:
                problems.append(f"{where}: {match['service']} is not a Service")
                continue
            ports = {port["port"] for port in service["spec"]["ports"]}
            if match["port"] is None or int(match["port"]) not in ports:
                problems.append(
                    f"{where}: {match[0]} is not a port of Service {match['service']} "
                    f"{sorted(ports)}"
                )
    return problems


def namespace_of(docs: list[Doc]) -> str | None:
    """The namespace the rendered objects name (None: they leave it to `kubectl apply -n`)."""
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED_KINDS:
            namespace: str | None = doc["metadata"].get("namespace")
            return namespace
    return None


def reference_problems(docs: list[Doc]) -> list[str]:
    """Autoscalers and disruption budgets point at workloads that exist; every namespaced object is
    in the same namespace, and in the rendered Namespace when there is one."""
    problems = []
    namespaced = [doc for doc in docs if doc["kind"] not in CLUSTER_SCOPED_KINDS]
    expected = [doc["metadata"]["name"] for doc in of_kind(docs, "Namespace")]
    if len(expected) > 1:
        problems.append(f"more than one Namespace: {expected}")
    namespace = expected[0] if expected else namespace_of(docs)
    for doc in namespaced:
        if doc["metadata"].get("namespace") != namespace:
            problems.append(f"{name_of(doc)} is not in namespace {namespace}")
    for autoscaler in of_kind(docs, "HorizontalPodAutoscaler"):
        target = autoscaler["spec"]["scaleTargetRef"]
        if find(docs, target["kind"], target["name"]) is None:
            problems.append(
                f"{name_of(autoscaler)} scales {target['kind']}/{target['name']}: absent"
            )
    for budget in of_kind(docs, "PodDisruptionBudget"):
        selector = budget["spec"]["selector"]
        if not any(selects(selector, pod_labels(w)) for w in of_kind(docs, *WORKLOAD_KINDS)):
            problems.append(f"{name_of(budget)} selects no pods")
    return problems


def service_account_problems(docs: list[Doc]) -> list[str]:
    """Each workload runs as a ServiceAccount of its own, which exists and mounts no token."""
    problems = []
    users: dict[str, list[str]] = {}
    for workload in of_kind(docs, *WORKLOAD_KINDS):
        spec = pod_spec(workload)
        account = spec.get("serviceAccountName")
        if account is None:
            problems.append(f"{name_of(workload)}: runs as the namespace's default ServiceAccount")
            continue
        users.setdefault(account, []).append(name_of(workload))
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{name_of(workload)}: pods mount a ServiceAccount token")
        declared = find(docs, "ServiceAccount", account)
        if declared is None:
            problems.append(f"{name_of(workload)}: ServiceAccount {account} does not exist")
        elif declared.get("automountServiceAccountToken") is not False:
            problems.append(f"ServiceAccount/{account}: does not set automountServiceAccountToken")
    for account, workloads in users.items():
        if len(workloads) > 1:
            problems.append(f"ServiceAccount/{account} is shared by {', '.join(workloads)}")
    return problems


def label_problems(docs: list[Doc]) -> list[str]:
    """Every object carries app.kubernetes.io/part-of and instance; each workload's pods and each
    Service also name their service and component, as app.kubernetes.io recommends."""
    problems = []
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/part-of", "app.kubernetes.io/instance"):
            if key not in labels:
                problems.append(f"{name_of(doc)}: no label {key}")
    named = [(name_of(w), pod_labels(w)) for w in of_kind(docs, *WORKLOAD_KINDS)]
    named += [(name_of(s), s["metadata"].get("labels", {})) for s in of_kind(docs, "Service")]
    for name, labels in named:
        for key in ("name", "component", "part-of", "instance"):
            if f"app.kubernetes.io/{key}" not in labels:
                problems.append(f"{name}: lacks the label app.kubernetes.io/{key}")
    return problems


def service_port(docs: list[Doc], name: str, port: int | str) -> str | None:
    """A problem when Service `name` is absent or has no port numbered or named `port`."""
    service = find(docs, "Service", name)
    if service is None:
        return f"Service {name} does not exist"
    if not any(port in (p["port"], p.get("name")) for p in service["spec"]["ports"]):
        return f"Service {name} has no port {port!r}"
    return None


def route_problems(docs: list[Doc]) -> list[str]:
    """Ingresses, HTTPRoutes and ServiceMonitors send to (or scrape) Services and ports that exist,
    and the gateway's Service is ClusterIP behind them: a load balancer would be a second way in."""
    problems = []
    for ingress in of_kind(docs, "Ingress"):
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                port = backend["port"].get("name", backend["port"].get("number"))
                problem = service_port(docs, backend["name"], port)
                if problem:
                    problems.append(f"{name_of(ingress)}: {problem}")
    for route in of_kind(docs, "HTTPRoute"):
        for rule in route["spec"].get("rules", []):
            for reference in rule.get("backendRefs", []):
                problem = service_port(docs, reference["name"], reference["port"])
                if problem:
                    problems.append(f"{name_of(route)}: {problem}")
    for monitor in of_kind(docs, "ServiceMonitor"):
        selector = monitor["spec"]["selector"]
        services = [
            service
            for service in of_kind(docs, "Service")
            if selects(selector, service["metadata"].get("labels", {}))
        ]
        if len(services) != 1:
            problems.append(f"{name_of(monitor)}: selects {len(services)} Services, not one")
            continue
        for endpoint in monitor["spec"]["endpoints"]:
            problem = service_port(docs, services[0]["metadata"]["name"], endpoint["port"])
            if problem:
                problems.append(f"{name_of(monitor)}: {problem}")
    gateway = find(docs, "Service", "api-gateway")
    if of_kind(docs, "Ingress", "HTTPRoute") and gateway and gateway["spec"]["type"] != "ClusterIP":
        problems.append("Service/api-gateway: not ClusterIP behind an Ingress or HTTPRoute")
    return problems


def identity_problems(
    docs: list[Doc], external: dict[str, dict[str, str]] | None = None
) -> list[str]:
    """Per-service identities: each calling service has a token that no other pod holds, and every
    service it calls knows that token's digest."""
    image = read_image()
    environments: dict[str, dict[str, str]] = {}
    for workload in of_kind(docs, "Deployment"):
        for container in pod_spec(workload)["containers"]:
            service = served_service(container, image)
            if service is not None:
                environments[service] = container_environment(container, docs, external, image)[0]
    if not any(
        {SERVICE_TOKEN_VARIABLE, CALLER_DIGESTS_VARIABLE} & environment.keys()
        for environment in environments.values()
    ):
        return []
    problems = []
    for caller in calling_services():
        token = environments.get(caller, {}).get(SERVICE_TOKEN_VARIABLE)
        if token is None:
            problems.append(f"{caller} has no {SERVICE_TOKEN_VARIABLE}")
            continue
        expected = f"{caller}={token_digest(token.encode()).hex()}"
        for service, environment in environments.items():
            if service != caller and token in environment.values():
                problems.append(f"{service} holds the token of {caller}")
            digests = environment.get(CALLER_DIGESTS_VARIABLE, "").split(",")
            if caller in callers_of(service) and expected not in digests:
                problems.append(
                    f"{service} does not know the token of {caller} ({CALLER_DIGESTS_VARIABLE})"
                )
    return problems


def wiring_problems(
    docs: list[Doc], external: dict[str, dict[str, str]] | None = None
) -> list[str]:
    return [
        *identity_problems(docs, external),
        *reference_problems(docs),
        *service_problems(docs),
        *address_problems(docs, external),
        *workload_problems(docs, external),
        *service_account_problems(docs),
        *label_problems(docs),
        *route_problems(docs),
    ]


# --- the oldest Kubernetes supported -------------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    """Something the manifests use that older Kubernetes releases lack, or ignore by default."""

    description: str
    since: str  # the first release where it is on by default
    used_by: Callable[[Doc], bool]


def _containers(doc: Doc) -> list[Doc]:
    if doc["kind"] not in WORKLOAD_KINDS:
        return []
    spec = pod_spec(doc)
    return [*spec.get("initContainers", []), *spec["containers"]]


FEATURES = (
    Feature(
        "the preStop `sleep` action (PodLifecycleSleepAction, beta in 1.30)",
        "1.30",
        lambda doc: any(
            "sleep" in c.get("lifecycle", {}).get("preStop", {}) for c in _containers(doc)
        ),
    ),
    Feature(
        "`matchLabelKeys` in topology spread constraints (beta in 1.27)",
        "1.27",
        lambda doc: (
            doc["kind"] in WORKLOAD_KINDS
            and any(
                "matchLabelKeys" in c for c in pod_spec(doc).get("topologySpreadConstraints", [])
            )
        ),
    ),
    Feature(
        "`unhealthyPodEvictionPolicy` of disruption budgets (beta in 1.27)",
        "1.27",
        lambda doc: (
            doc["kind"] == "PodDisruptionBudget" and "unhealthyPodEvictionPolicy" in doc["spec"]
        ),
    ),
    Feature(
        "Pod Security admission labels on the namespace (stable in 1.25)",
        "1.25",
        lambda doc: (
            doc["kind"] == "Namespace"
            and any(
                key.startswith("pod-security.kubernetes.io/")
                for key in doc["metadata"].get("labels", {})
            )
        ),
    ),
)


def release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.removeprefix("v").split("."))


def required_release(docs: list[Doc]) -> str | None:
    """The newest of the releases the features used by `docs` need, or None if they use none."""
    needed = [feature.since for feature in FEATURES if any(feature.used_by(doc) for doc in docs)]
    return max(needed, key=release) if needed else None


def minimum_version_problems(docs: list[Doc]) -> list[str]:
    """No feature needs a release newer than MINIMUM_KUBERNETES, and the namespace's Pod Security
    Standard is pinned to that release (not `latest`, which changes under a cluster upgrade)."""
    problems = [
        f"{name_of(doc)} uses {feature.description}: Kubernetes {feature.since}, newer than "
        f"the stated minimum {MINIMUM_KUBERNETES}"
        for feature in FEATURES
        if release(feature.since) > release(MINIMUM_KUBERNETES)
        for doc in docs
        if feature.used_by(doc)
    ]
    for namespace in of_kind(docs, "Namespace"):
        pinned = (
            namespace["metadata"]
            .get("labels", {})
            .get("pod-security.kubernetes.io/enforce-version")
        )
        if pinned != f"v{MINIMUM_KUBERNETES}":
            problems.append(
                f"{name_of(namespace)}: Pod Security enforce-version is {pinned}, not "
                f"v{MINIMUM_KUBERNETES}"
            )
    return problems


# --- policy scan and Dockerfile lint --------------------------------------------------------------


def checkov(
    files: list[Path], frameworks: tuple[str, ...] = ("kubernetes",)
) -> dict[str, list[str]]:
    """One checkov run over `files`: the failed checks by file (`CKV_K8S_20 Deployment.shop.db`)."""
    command = [
        require_tool("checkov"),
        "--config-file",
        str(CHECKOV_CONFIG),
        "--framework",
        *frameworks,
        "--skip-download",
        "--quiet",
        "--compact",
        "--output",
        "json",
    ]
    for file in files:
        command += ["--file", str(file)]
    result = run_tool(command, cwd=ROOT)
    if result.returncode not in (0, 1) or not result.stdout.strip().startswith(("{", "[")):
        raise RuntimeError(
            f"checkov did not run:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    reports = json.loads(result.stdout)
    failures: dict[str, list[str]] = {str(file): [] for file in files}
    for report in reports if isinstance(reports, list) else [reports]:
        if report.get("summary", {}).get("parsing_errors"):
            raise RuntimeError(f"checkov could not parse a file: {report['summary']}")
        for check in report.get("results", {}).get("failed_checks", []):
            file = next((str(f) for f in files if check["file_path"].endswith(f.name)), "?")
            failures.setdefault(file, []).append(f"{check['check_id']} {check['resource']}")
    if result.returncode == 1 and not any(failures.values()):
        raise RuntimeError(f"checkov failed without failed checks:\n{result.stdout[-2000:]}")
    return failures


def hadolint(dockerfile: Path) -> list[str]:
    result = run_tool([require_tool("hadolint"), "--no-color", str(dockerfile)])
    if result.returncode == 0:
        return []
    return (result.stdout + result.stderr).strip().splitlines() or [f"exit {result.returncode}"]
