"""Checks that Podman applied each Deployment's securityContext and limits to its running container.

  check_pods.py PLAYED_MANIFEST < <(podman inspect CONTAINER...)

Compares what the manifest asks for (user and group, read-only root filesystem, dropped
capabilities, no privilege escalation, memory and CPU limits) with what `podman inspect` reports,
prints one line per container and exits 1 if anything differs or a Deployment has no container.
"""

import json
import sys
from decimal import Decimal
from typing import Any

import yaml

MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}


def memory_bytes(quantity: str) -> int:
    for suffix, factor in MEMORY_UNITS.items():
        if quantity.endswith(suffix):
            return int(Decimal(quantity.removesuffix(suffix)) * factor)
    return int(quantity)


def nano_cpus(quantity: str) -> int:
    if quantity.endswith("m"):
        return int(Decimal(quantity.removesuffix("m")) * 10**6)
    return int(Decimal(quantity) * 10**9)


SETTINGS = (
    "user",
    "read-only root",
    "capabilities",
    "no-new-privileges",
    "memory limit",
    "cpu limit",
)


def expected(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """What the manifest asks for; a setting it leaves out is None (and fails the check: every
    container of the shop must set them all)."""
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    limits = container.get("resources", {}).get("limits", {})
    wanted: dict[str, Any] = dict.fromkeys(SETTINGS)
    if "runAsUser" in context:
        wanted["user"] = f"{context['runAsUser']}:{context.get('runAsGroup', context['runAsUser'])}"
    if context.get("readOnlyRootFilesystem"):
        wanted["read-only root"] = True
    if "ALL" in context.get("capabilities", {}).get("drop", []):
        wanted["capabilities"] = []
    if context.get("allowPrivilegeEscalation") is False:
        wanted["no-new-privileges"] = True
    if "memory" in limits:
        wanted["memory limit"] = memory_bytes(str(limits["memory"]))
    if "cpu" in limits:
        wanted["cpu limit"] = nano_cpus(str(limits["cpu"]))
    return wanted


def actual(inspected: dict[str, Any]) -> dict[str, Any]:
    host = inspected["HostConfig"]
    return {
        "user": inspected["Config"]["User"],
        "read-only root": host["ReadonlyRootfs"],
        # The bounding set: a non-root process has no effective capabilities whatever was dropped.
        "capabilities": inspected.get("BoundingCaps") or [],
        "no-new-privileges": "no-new-privileges" in (host.get("SecurityOpt") or []),
        "memory limit": host["Memory"],
        "cpu limit": host["NanoCpus"] or host["CpuQuota"] * 10**9 // (host["CpuPeriod"] or 100_000),
    }


def podman_name(
    deployment: dict[str, Any], container: dict[str, Any], inspected: dict[str, Any]
) -> str | None:
    """Podman names a Deployment's container `<deployment>-pod[-0]-<container>`."""
    prefix, suffix = f"{deployment['metadata']['name']}-pod", f"-{container['name']}"
    names = [name for name in inspected if name.startswith(prefix) and name.endswith(suffix)]
    return names[0] if len(names) == 1 else None


def main() -> int:
    with open(sys.argv[1]) as manifest:
        deployments = [
            document
            for document in yaml.safe_load_all(manifest)
            if document and document["kind"] == "Deployment"
        ]
    inspected = {each["Name"]: each for each in json.load(sys.stdin)}
    failures = 0
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            name = podman_name(deployment, container, inspected)
            if name is None:
                print(f"FAIL {deployment['metadata']['name']}/{container['name']}: no container")
                failures += 1
                continue
            found = actual(inspected[name])
            for key, value in expected(pod, container).items():
                verdict = "ok  " if value is not None and found[key] == value else "FAIL"
                failures += verdict == "FAIL"
                print(f"{verdict} {name}: {key} = {found[key]!r} (manifest: {value!r})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
