"""Turns rendered manifests into what `podman kube play --network host` can run as pods.

Reads multi-document YAML (`kubectl kustomize` output) on stdin and writes into the directory given
as the only argument:
  shop.yaml       the pods to play
  images          the images they run, one per line
  hosts           /etc/hosts for every container: the Services' kube-dns names on 127.0.0.1
  secrets/<name>  each Secret's data, for `podman secret create <name> secrets/<name>`

Only what a single host without a cluster forces is changed; commands, arguments, environment from
ConfigMaps and Secrets, securityContext, resources and volumes go through as written:
  - only Deployments, ConfigMaps and PersistentVolumeClaims are played: Podman ignores Services and
    namespaces, nothing here enforces NetworkPolicies, and Secrets are made separately (Podman 4.3
    reads a secretKeyRef from a Podman secret holding the data as a JSON object);
  - every pod shares the host's network: containerPorts are dropped, each server listens on
    127.0.0.1 only (MICROSHOP_HOST) and the hosts file stands in for kube-dns and Service routing;
  - probes and the preStop pause are dropped: without a kubelet nothing runs them (pods.sh asks
    /healthz and /readyz itself), and without a load balancer there is nothing to wait for.
"""

import base64
import json
import sys
from pathlib import Path
from typing import Any

import yaml

PLAYED_KINDS = {"Deployment", "ConfigMap", "PersistentVolumeClaim"}
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
HOSTS_VOLUME = "kube-dns-stand-in"


def hosts_file(documents: list[dict[str, Any]]) -> str:
    names = ["localhost"]
    for document in documents:
        if document.get("kind") == "Service":
            name = document["metadata"]["name"]
            namespace = document["metadata"].get("namespace", "default")
            domain = f"{name}.{namespace}"
            names += [name, domain, f"{domain}.svc", f"{domain}.svc.cluster.local"]
    return "127.0.0.1\t" + " ".join(names) + "\n"


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    """The Secret's values, base64-encoded, as Podman decodes them into bytes."""
    data = dict(secret.get("data", {}))
    for key, value in secret.get("stringData", {}).items():
        data[key] = base64.b64encode(value.encode()).decode()
    return data


def on_the_host_network(pod: dict[str, Any], hosts_path: Path) -> None:
    pod["volumes"] = [
        *pod.get("volumes", []),
        {"name": HOSTS_VOLUME, "hostPath": {"path": str(hosts_path), "type": "File"}},
    ]
    for container in pod.get("initContainers", []) + pod["containers"]:
        container.pop("ports", None)
        for probe in PROBES:
            container.pop(probe, None)
        container.pop("lifecycle", None)
        listen_on_loopback = {"name": "MICROSHOP_HOST", "value": "127.0.0.1"}
        container["env"] = [*container.get("env", []), listen_on_loopback]
        container["volumeMounts"] = [
            *container.get("volumeMounts", []),
            {"name": HOSTS_VOLUME, "mountPath": "/etc/hosts", "readOnly": True},
        ]


def main() -> None:
    directory = Path(sys.argv[1]).resolve()
    (directory / "secrets").mkdir(parents=True, exist_ok=True)
    documents = [document for document in yaml.safe_load_all(sys.stdin) if document]
    (directory / "hosts").write_text(hosts_file(documents))
    for secret in (document for document in documents if document.get("kind") == "Secret"):
        path = directory / "secrets" / secret["metadata"]["name"]
        path.write_text(json.dumps(secret_data(secret)))
    played = [document for document in documents if document.get("kind") in PLAYED_KINDS]
    images = set()
    for deployment in (document for document in played if document["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        on_the_host_network(pod, directory / "hosts")
        images |= {
            container["image"] for container in pod.get("initContainers", []) + pod["containers"]
        }
    (directory / "images").write_text("".join(f"{image}\n" for image in sorted(images)))
    with (directory / "shop.yaml").open("w") as output:
        yaml.safe_dump_all(played, output, sort_keys=False)


if __name__ == "__main__":
    main()
